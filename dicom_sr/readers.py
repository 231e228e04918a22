"""Load and sanity-check DICOM SEG and TID 1500 SR objects written by any tool.

The node reads segmentations and reports written elsewhere (to compare, to
import a reference, to show them). A reader must either load an object or
say clearly which rule of the standard it breaks; it never returns half an
object silently.

- :func:`read_seg`: segment descriptions (PS3.3 C.8.20.2: Segment Number,
  Label, Algorithm Type and the Segmented Property Category and Type code
  sequences are Type 1) and the decoded frames with the segment and source
  instances of each frame. Pixel data in native (either endianness), JPEG
  2000, JPEG-LS, RLE and Deflated Image Frame Compression transfer syntaxes
  (:mod:`dicom_sr.frames`). A Derivation Image functional group may be shared
  or per frame (PS3.3 C.7.6.16.2.6), as the standard allows.
- :func:`read_sr`: an SR document whose root is a TID 1500 Measurement Report,
  parsed by highdicom into its measurement groups, with the report-level
  Derived Imaging Measurements and Qualitative Evaluations (TID 1500 rows 10
  and 12), which highdicom's parser leaves out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    Comprehensive3DSRStorage,
    ComprehensiveSRStorage,
    EnhancedSRStorage,
    SegmentationStorage,
)

LABEL_MAP_SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7"
"""Label Map Segmentation Storage (PS3.4, 2024): pixel values are segment numbers."""

from dicom_sr.errors import NonConformantObjectError
from dicom_sr.frames import FrameDecodeError, decode_frames

MEASUREMENT_REPORT = ("126000", "DCM")
"""Concept name of a TID 1500 root: (126000, DCM, "Imaging Measurement Report")."""
DERIVED_IMAGING_MEASUREMENTS = ("126011", "DCM")
QUALITATIVE_EVALUATIONS = ("C0034375", "UMLS")
TRACKING_UID = ("112040", "DCM")

_SEGMENT_TYPE1 = {
    "SegmentNumber": "(0062,0004) Segment Number",
    "SegmentLabel": "(0062,0005) Segment Label",
    "SegmentAlgorithmType": "(0062,0008) Segment Algorithm Type",
    "SegmentedPropertyCategoryCodeSequence": "(0062,0003) Segmented Property Category Code Sequence",
    "SegmentedPropertyTypeCodeSequence": "(0062,000F) Segmented Property Type Code Sequence",
}
"""Type 1 attributes of a Segment Sequence item (PS3.3 Table C.8.20-4) that a reader needs."""


@dataclass(frozen=True)
class SegmentInfo:
    """One item of the Segment Sequence."""

    number: int
    label: str
    category: hd.sr.CodedConcept
    property_type: hd.sr.CodedConcept
    modifiers: tuple[hd.sr.CodedConcept, ...]
    algorithm_type: str
    algorithm_name: str | None
    tracking_id: str | None
    tracking_uid: str | None


@dataclass
class SegObject:
    """A Segmentation: its dataset, segments and decoded frames."""

    dataset: Dataset
    segments: list[SegmentInfo]
    frames: np.ndarray
    """Frames as stored, (frames, rows, columns); 0/1 for BINARY, 0..MaxFractionalValue for FRACTIONAL."""
    frame_segments: list[int]
    """Segment Number of each frame; 0 for every frame of a label map (its pixels hold the numbers)."""
    frame_sources: list[list[str]]
    """SOP Instance UIDs of the source images of each frame (empty when not recorded)."""

    @property
    def segmentation_type(self) -> str:
        return str(self.dataset.SegmentationType)

    @property
    def is_label_map(self) -> bool:
        return str(self.dataset.SOPClassUID) == LABEL_MAP_SEGMENTATION_STORAGE

    def segment(self, number: int) -> SegmentInfo:
        for info in self.segments:
            if info.number == number:
                return info
        raise KeyError(f"no segment {number}; segments: {[s.number for s in self.segments]}")

    def frames_of(self, number: int) -> np.ndarray:
        """The frames of one segment, in stored order (a label map: where its pixels equal ``number``)."""
        self.segment(number)
        if self.is_label_map:
            return (self.frames == number).astype(np.uint8)
        return self.frames[[i for i, n in enumerate(self.frame_segments) if n == number]]


@dataclass(frozen=True)
class MeasurementInfo:
    name: hd.sr.CodedConcept
    value: float
    unit: hd.sr.CodedConcept
    derivation: hd.sr.CodedConcept | None
    tracking_uid: str | None = None
    """For a measurement outside a group: the Tracking UID of the finding it belongs to, if stated."""
    finding_sites: tuple[hd.sr.CodedConcept, ...] = ()


@dataclass(frozen=True)
class MeasurementGroupInfo:
    """One measurement group of a TID 1500 report (TID 1410, 1411 or 1501)."""

    template: str
    tracking_id: str | None
    tracking_uid: str | None
    finding_type: hd.sr.CodedConcept | None
    finding_sites: tuple[hd.sr.CodedConcept, ...]
    measurements: tuple[MeasurementInfo, ...]
    evaluations: tuple[tuple[hd.sr.CodedConcept, hd.sr.CodedConcept], ...]
    referenced_segment: tuple[str, int] | None
    """(SEG SOP Instance UID, Segment Number) for a TID 1411 group that references a segment."""


@dataclass
class SrObject:
    """A TID 1500 Measurement Report: its measurement groups and report-level results."""

    dataset: Dataset
    document: hd.sr.Comprehensive3DSR | hd.sr.ComprehensiveSR | hd.sr.EnhancedSR
    groups: list[MeasurementGroupInfo]
    derived: tuple[MeasurementInfo, ...] = ()
    """Derived Imaging Measurements (TID 1500 row 10)."""
    evaluations: tuple[tuple[hd.sr.CodedConcept, hd.sr.CodedConcept], ...] = ()
    """(concept, value) of the coded Qualitative Evaluations (TID 1500 row 12)."""

    def derived_value(self, meaning: str, *, derivation: str | None = None, tracking_uid: str | None = None) -> float:
        """The value of a derived measurement, by concept meaning (and derivation, finding)."""
        for m in self.derived:
            if (m.name.meaning == meaning and m.tracking_uid == tracking_uid
                    and (m.derivation.meaning if m.derivation is not None else None) == derivation):
                return m.value
        raise KeyError(f"no derived measurement {meaning!r} ({derivation}, finding {tracking_uid})")

    def evaluation(self, meaning: str) -> hd.sr.CodedConcept:
        for name, value in self.evaluations:
            if name.meaning == meaning:
                return value
        raise KeyError(f"no qualitative evaluation {meaning!r}")

    def group(self, tracking_id: str) -> MeasurementGroupInfo:
        for group in self.groups:
            if group.tracking_id == tracking_id:
                return group
        raise KeyError(f"no measurement group {tracking_id!r}")


def read_seg(source: str | Path | Dataset) -> SegObject:
    """Load a Segmentation (or Label Map Segmentation) from a file or dataset.

    Raises:
        NonConformantObjectError: not a SEG, a Type 1 segment attribute is
            missing (e.g. the Segmented Property Type Code Sequence, which
            Siemens syngo.via VA11 leaves out), frames reference unknown
            segments, or the pixel data cannot be decoded.
    """
    ds, where = _load(source)
    label_map = str(getattr(ds, "SOPClassUID", "")) == LABEL_MAP_SEGMENTATION_STORAGE
    if str(getattr(ds, "SOPClassUID", "")) != SegmentationStorage and not label_map:
        raise NonConformantObjectError(f"{where}: not a Segmentation (SOP Class {getattr(ds, 'SOPClassUID', 'missing')})")
    segments = [_segment_info(item, where, _writer(ds)) for item in _require(ds, "SegmentSequence", where)]
    known = {s.number for s in segments}
    frame_segments, frame_sources = [], []
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else Dataset()
    for index, frame in enumerate(_require(ds, "PerFrameFunctionalGroupsSequence", where), start=1):
        identification = frame.get("SegmentIdentificationSequence") or shared.get("SegmentIdentificationSequence")
        if label_map:
            number = 0
        elif not identification:
            raise NonConformantObjectError(f"{where}: frame {index} has no Segment Identification Sequence (0062,000A)")
        else:
            number = int(identification[0].ReferencedSegmentNumber)
        if number not in known and not label_map:
            raise NonConformantObjectError(f"{where}: frame {index} references segment {number}, which is not described")
        frame_segments.append(number)
        derivation = frame.get("DerivationImageSequence") or shared.get("DerivationImageSequence") or []
        frame_sources.append([str(src.ReferencedSOPInstanceUID) for item in derivation
                              for src in item.get("SourceImageSequence", [])])
    try:
        frames = decode_frames(ds)
    except FrameDecodeError as exc:
        raise NonConformantObjectError(f"{where}: {exc}") from None
    if frames.shape[0] != len(frame_segments):
        raise NonConformantObjectError(
            f"{where}: {frames.shape[0]} frames of pixel data but {len(frame_segments)} per-frame functional groups")
    return SegObject(dataset=ds, segments=segments, frames=frames, frame_segments=frame_segments,
                     frame_sources=frame_sources)


def read_sr(source: str | Path | Dataset) -> SrObject:
    """Load an SR document holding a TID 1500 Measurement Report.

    Raises:
        NonConformantObjectError: not an SR, or its root is not a TID 1500
            Imaging Measurement Report highdicom can parse.
    """
    ds, where = _load(source)
    if getattr(ds, "Modality", None) != "SR" or "ContentSequence" not in ds:
        raise NonConformantObjectError(f"{where}: not a structured report with content")
    root = _require(ds, "ConceptNameCodeSequence", where)[0]
    if (str(root.CodeValue), str(root.CodingSchemeDesignator)) != MEASUREMENT_REPORT:
        raise NonConformantObjectError(
            f"{where}: document title is {root.CodeMeaning!r}, not a TID 1500 Imaging Measurement Report")
    try:
        document = _sr_from_dataset(ds)
        report = document.content
        derived, evaluations = _report_level_results(ds)
    except (ValueError, AttributeError, TypeError, KeyError) as exc:
        raise NonConformantObjectError(f"{where}: TID 1500 content cannot be parsed ({exc})") from None
    return SrObject(dataset=ds, document=document, groups=list(_groups(report)),
                    derived=derived, evaluations=evaluations)


def _report_level_results(ds: Dataset) -> tuple[tuple[MeasurementInfo, ...],
                                                 tuple[tuple[hd.sr.CodedConcept, hd.sr.CodedConcept], ...]]:
    """NUM items of the root's Derived Imaging Measurements and CODE items of its Qualitative Evaluations."""
    derived: list[MeasurementInfo] = []
    evaluations: list[tuple[hd.sr.CodedConcept, hd.sr.CodedConcept]] = []
    for container in ds.ContentSequence:
        if container.ValueType != "CONTAINER":
            continue
        concept = container.ConceptNameCodeSequence[0]
        key = (str(concept.CodeValue), str(concept.CodingSchemeDesignator))
        if key == DERIVED_IMAGING_MEASUREMENTS:
            for item in container.get("ContentSequence", []):
                if item.ValueType == "NUM":
                    m = hd.sr.Measurement.from_sequence([item])
                    derived.append(MeasurementInfo(
                        m.name, float(m.value), m.unit, m.derivation, tracking_uid=_tracking_uid(item),
                        finding_sites=tuple(site.value for site in m.finding_sites)))
        elif key == QUALITATIVE_EVALUATIONS:
            for item in container.get("ContentSequence", []):
                if item.ValueType == "CODE":
                    code = hd.sr.CodeContentItem.from_dataset(item)
                    evaluations.append((code.name, code.value))
    return tuple(derived), tuple(evaluations)


def _tracking_uid(item: Dataset) -> str | None:
    for child in item.get("ContentSequence", []):
        concept = child.ConceptNameCodeSequence[0]
        if child.ValueType == "UIDREF" and (concept.CodeValue, concept.CodingSchemeDesignator) == TRACKING_UID:
            return str(child.UID)
    return None


def _sr_from_dataset(ds: Dataset) -> hd.sr.Comprehensive3DSR | hd.sr.ComprehensiveSR | hd.sr.EnhancedSR:
    classes = {
        hd.sr.Comprehensive3DSR: Comprehensive3DSRStorage,
        hd.sr.ComprehensiveSR: ComprehensiveSRStorage,
        hd.sr.EnhancedSR: EnhancedSRStorage,
    }
    for cls, uid in classes.items():
        if ds.SOPClassUID == uid:
            return cls.from_dataset(ds, copy=False)
    raise ValueError(f"SR SOP Class {ds.SOPClassUID} cannot hold a TID 1500 report")


def _groups(report: hd.sr.MeasurementReport) -> Iterator[MeasurementGroupInfo]:
    for template, groups in (
        ("TID 1410", report.get_planar_roi_measurement_groups()),
        ("TID 1411", report.get_volumetric_roi_measurement_groups()),
        ("TID 1501", report.get_image_measurement_groups()),
    ):
        for group in groups:
            segment = getattr(group, "referenced_segment", None)
            yield MeasurementGroupInfo(
                template=template,
                tracking_id=group.tracking_identifier,
                tracking_uid=group.tracking_uid,
                finding_type=group.finding_type,
                finding_sites=tuple(site.value for site in group.finding_sites),
                measurements=tuple(
                    MeasurementInfo(m.name, float(m.value), m.unit, m.derivation) for m in group.get_measurements()
                ),
                evaluations=tuple((q.name, q.value) for q in group.get_qualitative_evaluations()),
                referenced_segment=(
                    (str(segment.referenced_sop_instance_uid), int(segment.referenced_segment_numbers[0]))
                    if segment is not None else None
                ),
            )


def _load(source: str | Path | Dataset) -> tuple[Dataset, str]:
    if isinstance(source, Dataset):
        return source, str(getattr(source, "filename", None) or "dataset")
    path = Path(source)
    try:
        return pydicom.dcmread(path), path.name
    except (InvalidDicomError, OSError) as exc:
        raise NonConformantObjectError(f"{path.name}: not a readable DICOM file ({exc})") from None


def _require(ds: Dataset, keyword: str, where: str):
    value = ds.get(keyword)
    if not value:
        raise NonConformantObjectError(f"{where}: {keyword} is missing or empty")
    return value


def _writer(ds: Dataset) -> str:
    parts = [str(ds.get(k, "")).strip() for k in ("Manufacturer", "ManufacturerModelName", "SoftwareVersions")]
    return " ".join(p for p in parts if p) or "an unknown writer"


def _segment_info(item: Dataset, where: str, writer: str) -> SegmentInfo:
    number = item.get("SegmentNumber", "?")
    missing = [name for keyword, name in _SEGMENT_TYPE1.items()
               if keyword not in item or item[keyword].value in (None, "") or item[keyword].VM == 0]
    if missing:
        raise NonConformantObjectError(
            f"{where}: segment {number} lacks {', '.join(missing)} (Type 1 in PS3.3 C.8.20.2); "
            f"the object written by {writer} does not conform to the DICOM Segmentation IOD "
            "and cannot be used, since what the segment is remains unknown"
        )
    type_item = item.SegmentedPropertyTypeCodeSequence[0]
    return SegmentInfo(
        number=int(item.SegmentNumber),
        label=str(item.SegmentLabel),
        category=hd.sr.CodedConcept.from_dataset(item.SegmentedPropertyCategoryCodeSequence[0]),
        property_type=hd.sr.CodedConcept.from_dataset(type_item),
        modifiers=tuple(hd.sr.CodedConcept.from_dataset(m)
                        for m in type_item.get("SegmentedPropertyTypeModifierCodeSequence", [])),
        algorithm_type=str(item.SegmentAlgorithmType),
        algorithm_name=str(item.get("SegmentAlgorithmName")) if item.get("SegmentAlgorithmName") else None,
        tracking_id=str(item.TrackingID) if item.get("TrackingID") else None,
        tracking_uid=str(item.TrackingUID) if item.get("TrackingUID") else None,
    )
