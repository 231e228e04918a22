"""Write any HU volume as a CT Image Storage series, the way a scanner does.

One file per axial slice (CT Image IOD, PS3.3 A.3), with the Patient, General
Study, General Series, Frame of Reference, General Equipment, General
Acquisition, General Image, Image Plane, Image Pixel, CT Image, VOI LUT and
SOP Common modules. Pixels are signed 16-bit with Rescale Slope 1 and
Rescale Intercept -1024, like most scanners. Image Position/Orientation
(Patient) follow the patient position: head first supine rows run to the
patient's left (1\\0\\0\\0\\1\\0); feet first supine rows run to the patient's
right (-1\\0\\0\\0\\1\\0), as scanners write FFS (PS3.3 C.7.6.2.1.1).

Nothing here assumes a phantom: the real CT volumes in ``../shared/data``
are turned into DICOM series with the same writer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    PYDICOM_IMPLEMENTATION_UID,
    RLELossless,
    UID,
    generate_uid,
)


SUPPORTED_TRANSFER_SYNTAXES = (ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless)
RESCALE_INTERCEPT = -1024.0
J2K_MIN_SIZE = 32
PATIENT_POSITIONS = {"HFS": "LPS", "FFS": "RPS"}
"""Patient position -> orientation of the written voxel grid (SimpleITK DICOMOrient codes)."""


def _uid(seed: int | None, *parts: object) -> UID:
    """A UID under the 2.25 root (PS3.5 B.2); derived from ``seed`` and ``parts`` when a seed is given.

    pydicom's ``generate_uid`` ignores its entropy sources under the 2.25 root,
    so the repeatable UID is made here from a hash, as a UUID-derived integer.
    """
    if seed is None:
        return generate_uid(prefix=None)
    digest = hashlib.sha256("|".join(map(str, ("scpnode-phantom", seed, *parts))).encode()).digest()
    return UID(f"2.25.{int.from_bytes(digest[:16], 'big')}")


def _study_moment(seed: int | None) -> dt.datetime:
    if seed is None:
        return dt.datetime.now().replace(microsecond=0)
    digest = int(hashlib.sha256(f"study-time-{seed}".encode()).hexdigest(), 16)
    return dt.datetime(2025, 1, 6, 7, 30) + dt.timedelta(days=digest % 360, minutes=(digest >> 16) % 600)


@dataclass(frozen=True)
class PatientInfo:
    """Patient module values (PS3.3 C.7.1.1)."""

    name: str = "PHANTOM^SPINE"
    patient_id: str = "PHANTOM0001"
    birth_date: str = "19600101"
    sex: str = "F"
    age_years: int | None = 65


@dataclass(frozen=True)
class StudyInfo:
    """General Study module values; the UID is made from ``seed`` when not given."""

    study_uid: str = ""
    accession_number: str = "PH0000001"
    study_id: str = "1"
    description: str = "CT ABDOMEN"
    referring_physician: str = "REFERRER^PHANTOM"
    moment: dt.datetime | None = None

    def resolved(self, seed: int | None) -> StudyInfo:
        return replace(self, study_uid=self.study_uid or _uid(seed, "study"),
                       moment=self.moment or _study_moment(seed))


@dataclass(frozen=True)
class SeriesInfo:
    """General Series, Frame of Reference, Equipment and acquisition values of the written series.

    UIDs left empty are generated (from ``seed`` when given); read the
    resolved values back from the object :func:`write_ct_series` returns.
    """

    series_uid: str = ""
    frame_of_reference_uid: str = ""
    series_number: int = 2
    description: str = "Abdomen 1.25mm soft tissue"
    body_part: str = "ABDOMEN"
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL")
    manufacturer: str = "SCPNODE"
    model_name: str = "Synthetic CT"
    station_name: str = "PHANTOM01"
    institution: str = "Synthetic Hospital"
    software_versions: str = "scpnode-phantom 1"
    kvp: float = 120.0
    tube_current_ma: int = 250
    exposure_time_ms: int = 500
    convolution_kernel: str = "STANDARD"
    slice_thickness_mm: float | None = None

    def resolved(self, seed: int | None) -> SeriesInfo:
        return replace(self, series_uid=self.series_uid or _uid(seed, "series", self.series_number),
                       frame_of_reference_uid=self.frame_of_reference_uid or _uid(seed, "frame"))


@dataclass(frozen=True)
class WrittenSeries:
    """What :func:`write_ct_series` wrote: the files (superior slice first) and the identifiers used."""

    files: list[Path]
    patient: PatientInfo
    study: StudyInfo
    series: SeriesInfo
    transfer_syntax: str


def oriented_for_position(image: sitk.Image, position: str) -> sitk.Image:
    """Reorient ``image`` (by axis permutation/flip only) to the grid a scanner writes for ``position``."""
    try:
        code = PATIENT_POSITIONS[position]
    except KeyError:
        raise ValueError(f"patient position must be one of {', '.join(PATIENT_POSITIONS)}, got {position!r}") from None
    return sitk.DICOMOrient(image, code)


def write_ct_series(image: sitk.Image, folder: str | Path, *, patient: PatientInfo | None = None,
                    study: StudyInfo | None = None, series: SeriesInfo | None = None, position: str = "HFS",
                    transfer_syntax: str = ExplicitVRLittleEndian, seed: int | None = None) -> WrittenSeries:
    """Write a 3D HU image as a CT Image Storage series, one file per axial slice.

    Args:
        image: a 3D image in HU (LPS, any axis order; it is reoriented to axial slices).
        folder: output folder (created); files are named ``CT000001.dcm`` ... from the top.
        patient, study, series: module values; defaults describe a synthetic patient.
        position: Patient Position, ``"HFS"`` or ``"FFS"``.
        transfer_syntax: Explicit VR Little Endian, JPEG 2000 Lossless or RLE Lossless.
        seed: makes UIDs, dates and times repeatable; ``None`` gives fresh UIDs and now.

    Returns:
        The files written and the resolved patient/study/series values (UIDs included).
    """
    if transfer_syntax not in SUPPORTED_TRANSFER_SYNTAXES:
        raise ValueError(f"unsupported transfer syntax {transfer_syntax}; use one of "
                         + ", ".join(UID(u).name for u in SUPPORTED_TRANSFER_SYNTAXES))
    if image.GetDimension() != 3:
        raise ValueError(f"expected a 3D image, got {image.GetDimension()}D")
    patient = patient or PatientInfo()
    study = (study or StudyInfo()).resolved(seed)
    series = (series or SeriesInfo()).resolved(seed)
    oriented = oriented_for_position(image, position)
    if transfer_syntax == JPEG2000Lossless and min(oriented.GetSize()[:2]) < J2K_MIN_SIZE:
        raise ValueError(f"JPEG 2000 needs slices of at least {J2K_MIN_SIZE} x {J2K_MIN_SIZE} pixels "
                         f"(openjpeg's 6 resolution levels); got {oriented.GetSize()[:2]}")
    hu = sitk.GetArrayViewFromImage(oriented)
    stored = np.clip(np.rint(hu - RESCALE_INTERCEPT), -32768, 32767).astype(np.int16)
    spacing = oriented.GetSpacing()
    direction = np.asarray(oriented.GetDirection()).reshape(3, 3)
    row_dir, col_dir = direction[:, 0], direction[:, 1]
    thickness = series.slice_thickness_mm or spacing[2]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    positions = [np.asarray(oriented.TransformIndexToPhysicalPoint((0, 0, k))) for k in range(stored.shape[0])]
    order = sorted(range(stored.shape[0]), key=lambda k: -positions[k][2])  # superior first, as acquired
    files = []
    for number, k in enumerate(order, start=1):
        ds = _slice_dataset(patient, study, series, position, seed, number)
        ds.ImageOrientationPatient = [_ds_number(v) for v in (*row_dir, *col_dir)]
        ds.ImagePositionPatient = [_ds_number(v) for v in positions[k]]
        ds.SliceLocation = _ds_number(positions[k][2])
        ds.PixelSpacing = [_ds_number(spacing[1]), _ds_number(spacing[0])]
        ds.SliceThickness = _ds_number(thickness)
        ds.Rows, ds.Columns = stored.shape[1], stored.shape[2]
        pixels = np.ascontiguousarray(stored[k])
        ds.PixelData = pixels.tobytes()
        if transfer_syntax != ExplicitVRLittleEndian:
            # lossless compression keeps the instance's identity (PS3.5 8.2); pydicom would mint a new UID
            ds.compress(transfer_syntax, pixels, generate_instance_uid=False)
        path = folder / f"CT{number:06d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return WrittenSeries(files, patient, study, series, str(transfer_syntax))


def _ds_number(value: float) -> str:
    """A Decimal String value of at most 16 characters."""
    text = f"{float(value):.6f}".rstrip("0").rstrip(".")
    return text if len(text) <= 16 else f"{float(value):.10g}"


def _slice_dataset(patient: PatientInfo, study: StudyInfo, series: SeriesInfo, position: str, seed: int | None,
                   number: int) -> FileDataset:
    sop_uid = _uid(seed, "instance", series.series_uid, number)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    moment = study.moment
    acquired = moment + dt.timedelta(seconds=number * 0.05)
    date, time = moment.strftime("%Y%m%d"), moment.strftime("%H%M%S")
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = list(series.image_type)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.StudyTime = time
    ds.SeriesTime = (moment + dt.timedelta(minutes=2)).strftime("%H%M%S")
    ds.AcquisitionTime = ds.ContentTime = acquired.strftime("%H%M%S.%f")[:13]
    ds.AccessionNumber = study.accession_number
    ds.Modality = "CT"
    ds.Manufacturer = series.manufacturer
    ds.InstitutionName = series.institution
    ds.ReferringPhysicianName = study.referring_physician
    ds.StationName = series.station_name
    ds.StudyDescription = study.description
    ds.SeriesDescription = series.description
    ds.ManufacturerModelName = series.model_name
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    if patient.age_years is not None:
        ds.PatientAge = f"{patient.age_years:03d}Y"
    ds.BodyPartExamined = series.body_part
    ds.KVP = _ds_number(series.kvp)
    ds.SoftwareVersions = series.software_versions
    ds.GantryDetectorTilt = "0"
    ds.ExposureTime = str(series.exposure_time_ms)
    ds.XRayTubeCurrent = str(series.tube_current_ma)
    ds.Exposure = str(series.tube_current_ma * series.exposure_time_ms // 1000)
    ds.ConvolutionKernel = series.convolution_kernel
    ds.PatientPosition = position
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = series.series_uid
    ds.StudyID = study.study_id
    ds.SeriesNumber = str(series.series_number)
    ds.AcquisitionNumber = "1"
    ds.InstanceNumber = str(number)
    ds.FrameOfReferenceUID = series.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.RescaleIntercept = _ds_number(RESCALE_INTERCEPT)
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    return ds
