"""What the node keeps of one received instance: its index attributes, and its patient and study.

Read from a decoded data set or straight from the encoded header
(:class:`scpnode.network.header_scan.PlainHeader`), single-frame CT and
multi-frame Enhanced CT alike; stored as rows by :mod:`scpnode.storage.index`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from scpnode.network.header_scan import PlainHeader


@dataclass(frozen=True)
class InstanceMeta:
    """The attributes of one instance that indexing and selection need.

    Geometry is per frame (``positions``) so that single-frame CT and
    multi-frame Enhanced CT are judged alike.
    """

    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    modality: str = ""
    image_type: tuple[str, ...] = ()
    instance_number: int | None = None
    series_description: str = ""
    study_description: str = ""
    protocol_name: str = ""
    body_part_examined: str = ""
    slice_thickness: float | None = None
    pixel_spacing: tuple[float, float] | None = None
    orientation: tuple[float, ...] | None = None
    """Image Orientation (Patient): row then column direction cosines."""
    positions: tuple[tuple[float, float, float], ...] = ()
    """Image Position (Patient) of each frame, in mm."""
    gantry_tilt: float | None = None
    contrast_agent: str = ""
    rows: int | None = None
    columns: int | None = None
    convolution_kernel: str = ""
    """Values of Convolution Kernel joined by a backslash (empty when not sent)."""

    @classmethod
    def from_dataset(cls, ds: Dataset | PlainHeader) -> "InstanceMeta":
        """Read the attributes from a data set (Enhanced CT: from its functional groups)."""
        shared = _first_item(ds, "SharedFunctionalGroupsSequence")
        per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
        measures = _first_item(shared, "PixelMeasuresSequence") or _first_item(
            per_frame[0] if per_frame else None, "PixelMeasuresSequence")
        plane = _first_item(shared, "PlaneOrientationSequence") or _first_item(
            per_frame[0] if per_frame else None, "PlaneOrientationSequence")
        if per_frame:
            positions = tuple(
                _floats(_first_item(frame, "PlanePositionSequence"), "ImagePositionPatient", 3)
                for frame in per_frame)
            positions = tuple(p for p in positions if p is not None)
        else:
            position = _floats(ds, "ImagePositionPatient", 3)
            positions = (position,) if position is not None else ()
        pixel_spacing = _floats(ds, "PixelSpacing", 2) or _floats(measures, "PixelSpacing", 2)
        return cls(
            sop_instance_uid=str(ds.get("SOPInstanceUID", "") or ""),
            sop_class_uid=str(ds.get("SOPClassUID", "") or ""),
            study_instance_uid=str(ds.get("StudyInstanceUID", "") or ""),
            series_instance_uid=str(ds.get("SeriesInstanceUID", "") or ""),
            modality=str(ds.get("Modality", "") or ""),
            image_type=tuple(str(v).upper() for v in _multi(ds.get("ImageType"))),
            instance_number=_int(ds.get("InstanceNumber")),
            series_description=str(ds.get("SeriesDescription", "") or ""),
            study_description=str(ds.get("StudyDescription", "") or ""),
            protocol_name=str(ds.get("ProtocolName", "") or ""),
            body_part_examined=str(ds.get("BodyPartExamined", "") or ""),
            slice_thickness=_float(ds.get("SliceThickness")) or _float(
                measures.get("SliceThickness") if measures else None),
            pixel_spacing=pixel_spacing,
            orientation=_floats(ds, "ImageOrientationPatient", 6) or _floats(plane, "ImageOrientationPatient", 6),
            positions=positions,
            gantry_tilt=_float(ds.get("GantryDetectorTilt")),
            contrast_agent=str(ds.get("ContrastBolusAgent", "") or ""),
            rows=_int(ds.get("Rows")),
            columns=_int(ds.get("Columns")),
            convolution_kernel="\\".join(str(v) for v in _multi(ds.get("ConvolutionKernel")) if v),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> "InstanceMeta":
        """Read the attributes from a DICOM file (pixel data is not loaded)."""
        return cls.from_dataset(pydicom.dcmread(path, stop_before_pixels=True))

    def to_row(self) -> dict[str, Any]:
        row = {name: getattr(self, name) for name in _META_COLUMNS}
        for name in _JSON_COLUMNS:
            row[name] = json.dumps(row[name]) if row[name] is not None else None
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "InstanceMeta":
        values = {name: row[name] for name in _META_COLUMNS}
        for name in _JSON_COLUMNS:
            if values[name] is not None:
                values[name] = _tuples(json.loads(values[name]))
        values["image_type"] = values["image_type"] or ()
        values["positions"] = values["positions"] or ()
        values["convolution_kernel"] = values["convolution_kernel"] or ""
        return cls(**values)


_META_COLUMNS = tuple(f for f in InstanceMeta.__dataclass_fields__)
_JSON_COLUMNS = ("image_type", "pixel_spacing", "orientation", "positions")


@dataclass(frozen=True)
class PatientStudy:
    """Study-level attributes kept in the ``studies`` table (patient data: never log it)."""

    study_instance_uid: str
    patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    accession_number: str = ""
    study_date: str = ""
    study_description: str = ""

    @classmethod
    def from_dataset(cls, ds: Dataset | PlainHeader) -> "PatientStudy":
        return cls(
            study_instance_uid=str(ds.get("StudyInstanceUID", "") or ""),
            patient_id=str(ds.get("PatientID", "") or ""),
            patient_name=str(ds.get("PatientName", "") or ""),
            patient_birth_date=str(ds.get("PatientBirthDate", "") or ""),
            patient_sex=str(ds.get("PatientSex", "") or ""),
            accession_number=str(ds.get("AccessionNumber", "") or ""),
            study_date=str(ds.get("StudyDate", "") or ""),
            study_description=str(ds.get("StudyDescription", "") or ""),
        )


def _first_item(ds: Dataset | PlainHeader | None, keyword: str) -> Dataset | None:
    if ds is None:
        return None
    seq = ds.get(keyword)
    return seq[0] if seq else None


def _multi(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]


def _float(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _floats(ds: Dataset | PlainHeader | None, keyword: str, count: int) -> tuple[float, ...] | None:
    if ds is None:
        return None
    values = [_float(v) for v in _multi(ds.get(keyword))]
    if len(values) != count or any(v is None for v in values):
        return None
    return tuple(values)  # type: ignore[arg-type]


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value
