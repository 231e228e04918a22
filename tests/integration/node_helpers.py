"""Helpers for the DICOM node tests: settings on free ports, synthetic CT series, DCMTK calls."""

from __future__ import annotations

import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import sqlite_utils
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from scpnode.config import Settings, settings_from_dict
from scpnode.delivery.orthanc import free_port
from scpnode.storage.index import InstanceMeta, PatientStudy, record_instance

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SENDER_AE = "STORESCU"


def node_settings(workdir: Path, **sections: dict) -> Settings:
    """Settings for a node on a free loopback port that accepts ``STORESCU`` and ``PYSCU`` from 127.0.0.1."""
    data: dict = {
        "node": {"host": "127.0.0.1", "port": free_port(), "storage_dir": str(workdir / "store"),
                 "database": str(workdir / "node.db")},
        "peers": [{"ae_title": SENDER_AE, "host": "127.0.0.1", "max_associations": 8},
                  {"ae_title": "PYSCU", "host": "127.0.0.1", "max_associations": 8}],
        "completion": {"quiet_seconds": 1.0, "check_interval_seconds": 0.2},
        "selection": {"min_slices": 20, "min_coverage_mm": 50.0},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values} if isinstance(values, dict) else values
    return settings_from_dict(data)


def ct_slice(study_uid: str, series_uid: str, index: int, *, size: int = 64, spacing: float = 2.5,
             thickness: float = 2.5, description: str = "ABDOMEN 2.5 B30f", seed: int = 0) -> Dataset:
    """One axial CT slice (ORIGINAL/PRIMARY/AXIAL, 16-bit, explicit VR little endian)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.FrameOfReferenceUID = pydicom.uid.generate_uid(entropy_srcs=[study_uid])
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Patient", "TEST-0001", "19500101", "F"
    ds.AccessionNumber, ds.StudyDate, ds.StudyTime, ds.StudyID = "ACC0001", "20260101", "120000", "1"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 3, index + 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SeriesDescription, ds.BodyPartExamined = description, "ABDOMEN"
    ds.SliceThickness = thickness
    ds.PixelSpacing = [0.8, 0.8]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-25.6, -25.6, -index * spacing]
    ds.GantryDetectorTilt = 0
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    rng = np.random.default_rng(seed * 100003 + index)
    ds.PixelData = rng.integers(0, 2000, (size, size), dtype=np.int16).tobytes()
    return ds


def write_ct_series(folder: Path, count: int, **kwargs) -> list[Path]:
    """Write a synthetic CT series of ``count`` slices into ``folder``; return the files."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid = generate_uid(), generate_uid()
    paths = []
    for i in range(count):
        ds = ct_slice(study_uid, series_uid, i, **kwargs)
        path = folder / f"{i:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def storescu(port: int, files: list[Path], *extra: str, aet: str = SENDER_AE,
             timeout: float = 120) -> subprocess.CompletedProcess:
    """Send files with DCMTK storescu to the node on 127.0.0.1."""
    return subprocess.run(["storescu", "-aet", aet, "-aec", "SCPNODE", *extra, "127.0.0.1", str(port),
                           *map(str, files)], capture_output=True, text=True, timeout=timeout)


def dataset_bytes(path: Path) -> bytes:
    """The encoded data set of a DICOM file, without preamble and File Meta Information."""
    data = path.read_bytes()
    assert data[128:132] == b"DICM" and data[132:136] == b"\x02\x00\x00\x00", f"{path} is not a Part 10 file"
    # (0002,0000) File Meta Information Group Length: 12 bytes at 132, value = bytes of the rest of the group
    return data[144 + struct.unpack("<I", data[140:144])[0]:]


def wait_for(condition: Callable[[], object], timeout: float = 30.0, interval: float = 0.1) -> object:
    """Poll ``condition`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def index_stored_file(db: sqlite_utils.Database, path: Path, sha: str, now: float) -> None:
    """Record one stored DICOM file in the node's index as the receiver would (``sha`` stands for its hash)."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    record_instance(db, InstanceMeta.from_dataset(ds), PatientStudy.from_dataset(ds), path=path,
                    folder=path.parent, size=path.stat().st_size, sha256=sha,
                    transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID), now=now)
