"""Inputs for the dicom_sr tests: a small synthetic CT series with four
vertebral bodies (T11-L2, each a cortical box shell around a cancellous core),
its SegmentationResult, and hand-made StudyMeasurements.

The builders are imported by the other dicom_sr test modules; the tests here
check the builders and the grid mapping they rely on.
"""

from __future__ import annotations

import random

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from dicom_sr.errors import EncodeError
from dicom_sr.grid import map_slices
from inference.levels import TARGET_LEVELS, verse_id
from inference.results import (
    CompartmentStats,
    Heights,
    LevelMeasurement,
    LevelSegmentation,
    SegmentationResult,
    StudyMeasurements,
    StudyScore,
)

SPACING = (0.8, 0.8, 1.25)
ORIGIN = (-120.0, -150.0, -300.0)


def make_ct_image(shape: tuple[int, int, int] = (40, 64, 64), *, spacing: tuple[float, float, float] = SPACING,
                  body_mm: tuple[float, float, float] | None = None) -> tuple[sitk.Image, sitk.Image, sitk.Image]:
    """(ct HU, bodies VerSe ids, compartments 1/2) for ``shape`` = (slices, rows, columns).

    The four bodies stack along z, T11 highest (LPS z grows superior). By
    default they fill the volume (small test grids); with ``body_mm`` =
    (width, depth, height) they have an adult size, 8 mm discs between them,
    a 1.5 mm cortical shell, and sit in the middle of the field of view.
    """
    nz, ny, nx = shape
    bodies = np.zeros(shape, dtype=np.uint8)
    compartments = np.zeros(shape, dtype=np.uint8)
    if body_mm is None:
        pitch, body_height = max(4, nz // 4), max(4, nz // 4) - 1
        y0, y1 = ny // 3, ny // 3 + max(6, ny // 4)
        x0, x1 = nx // 2 - max(4, nx // 8), nx // 2 + max(4, nx // 8)
        shell, z_first = max(1, min(ny, nx) // 40), 0
    else:
        width, depth, height = body_mm
        body_height = round(height / spacing[2])
        pitch = round((height + 8.0) / spacing[2])
        y0 = ny // 3
        y1 = y0 + round(depth / spacing[1])
        x0, x1 = nx // 2 - round(width / 2 / spacing[0]), nx // 2 + round(width / 2 / spacing[0])
        shell, z_first = max(1, round(1.5 / spacing[0])), max(0, (nz - 4 * pitch) // 2)
    for position, level in enumerate(reversed(TARGET_LEVELS)):  # L2 at the bottom
        z_start = z_first + position * pitch
        z_end = min(z_start + body_height, nz)
        bodies[z_start:z_end, y0:y1, x0:x1] = verse_id(level)
        compartments[z_start:z_end, y0:y1, x0:x1] = 1
        compartments[z_start + shell:z_end - shell, y0 + shell:y1 - shell, x0 + shell:x1 - shell] = 2
    rng = np.random.default_rng(7)
    hu = np.full(shape, 40.0, dtype=np.float32) + rng.normal(0, 10, shape).astype(np.float32)
    hu[compartments == 1] += 600
    hu[compartments == 2] += 110
    images = []
    for array in (hu, bodies, compartments):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(spacing)
        image.SetOrigin(ORIGIN)
        images.append(image)
    return images[0], images[1], images[2]


def write_ct_datasets(ct: sitk.Image, *, shuffle: bool = True) -> list[Dataset]:
    """One CT Image Storage dataset per slice of ``ct`` (HU stored as signed int16)."""
    array = np.round(sitk.GetArrayViewFromImage(ct)).astype(np.int16)
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    datasets = []
    for k in range(array.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Phantom", "DSR-0001", "19500101", "F"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", "ACC0001"
        ds.ReferringPhysicianName = ""
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 2, k + 1
        ds.Manufacturer = "synthetic"
        ds.PositionReferenceIndicator = ""
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        direction = ct.GetDirection()
        ds.ImageOrientationPatient = [direction[0], direction[3], direction[6], direction[1], direction[4], direction[7]]
        ds.ImagePositionPatient = [float(v) for v in ct.TransformIndexToPhysicalPoint((0, 0, k))]
        ds.PixelSpacing = [ct.GetSpacing()[1], ct.GetSpacing()[0]]
        ds.SliceThickness = ct.GetSpacing()[2]
        ds.KVP, ds.AcquisitionNumber = 120, 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = array.shape[1], array.shape[2]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
        ds.PixelData = array[k].tobytes()
        datasets.append(ds)
    if shuffle:
        random.Random(3).shuffle(datasets)
    return datasets


def make_segmentation(bodies: sitk.Image, compartments: sitk.Image) -> SegmentationResult:
    levels = {
        name: LevelSegmentation(name=name, verse_id=verse_id(name), complete=name != "L2",
                                voxels=int((sitk.GetArrayViewFromImage(bodies) == verse_id(name)).sum()),
                                centroid_lps=(0.0, 0.0, 0.0), reason="" if name != "L2" else "cut by the field of view")
        for name in TARGET_LEVELS
    }
    return SegmentationResult(vertebrae=bodies, bodies=bodies, compartments=compartments, levels=levels,
                              backend="synthetic-test", backend_version="1")


def make_measurements(*, calibrated: bool = False) -> StudyMeasurements:
    """Hand-made measurements: L2 incomplete (no heights, no grade); score uncalibrated unless asked."""
    levels = {}
    for i, name in enumerate(TARGET_LEVELS):
        complete = name != "L2"
        levels[name] = LevelMeasurement(
            name=name, verse_id=verse_id(name), complete=complete,
            cortical=CompartmentStats(voxels=900 + i, volume_ml=1.2345678 + i, mean_hu=612.25 + i,
                                      median_hu=608.5, sd_hu=41.0625 + i / 3),
            cancellous=CompartmentStats(voxels=2400 + i, volume_ml=9.87654321 - i, mean_hu=151.3 - 7 * i,
                                        median_hu=149.0 - 7 * i, sd_hu=18.2 + i / 7),
            body=CompartmentStats(voxels=3300 + i, volume_ml=11.1 + i / 9, mean_hu=260.4 - i,
                                  median_hu=230.0, sd_hu=170.1),
            vbmd_mg_cm3=118.4 - 5.5 * i,
            heights=Heights(anterior_mm=24.1 - i / 3, middle_mm=23.2, posterior_mm=25.6, wedge_ratio=0.94140625,
                            biconcave_ratio=0.90625, crush_ratio=1.0) if complete else None,
            genant_grade=(1 if name == "T12" else 0) if complete else None,
            radscores={"cortical": -0.4321 + i / 10, "cancellous": 0.1234567 - i / 10},
        )
    score = StudyScore(
        model_id="liu2024-t11l2", model_version="1.0.0", calibrated=calibrated,
        radscores={"cortical": -0.3, "cancellous": 0.0717, "vertebral": 0.55},
        probability=0.3125 if calibrated else None, category="intermediate" if calibrated else None,
    )
    return StudyMeasurements(
        levels=levels, l1_attenuation_hu=137.3, l1_attenuation_category="indeterminate",
        vbmd_mg_cm3=112.9, vbmd_category="low", max_genant_grade=1, score=score,
    )


def make_study(shape: tuple[int, int, int] = (40, 64, 64), *, calibrated: bool = False, shuffle: bool = True
               ) -> tuple[list[Dataset], SegmentationResult, StudyMeasurements]:
    ct, bodies, compartments = make_ct_image(shape)
    return (write_ct_datasets(ct, shuffle=shuffle), make_segmentation(bodies, compartments),
            make_measurements(calibrated=calibrated))


def test_slices_are_mapped_to_the_grid_whatever_their_order() -> None:
    ct, _, _ = make_ct_image((12, 32, 32))
    datasets = write_ct_datasets(ct, shuffle=True)
    mapped = map_slices(ct, datasets)
    z = [float(ds.ImagePositionPatient[2]) for ds in mapped.instances]
    assert z == sorted(z) and len(z) == 12


def test_a_missing_or_foreign_slice_is_refused() -> None:
    ct, _, _ = make_ct_image((12, 32, 32))
    datasets = write_ct_datasets(ct, shuffle=False)
    with pytest.raises(EncodeError, match="no source instance"):
        map_slices(ct, datasets[:5] + datasets[6:])
    shifted = pydicom.Dataset(datasets[3])
    shifted.ImagePositionPatient = [float(v) + 0.4 for v in shifted.ImagePositionPatient]
    with pytest.raises(EncodeError, match="does not lie on a slice"):
        map_slices(ct, datasets[:3] + [shifted] + datasets[4:])


def test_real_vendor_instances_without_sop_uids_are_refused_then_encode_once_repaired(shared_data) -> None:
    """The Siemens PET/CT slices (JPEG 2000) are anonymised with empty SOP, study and series UIDs."""
    from dicom_sr import AlgorithmInfo, encode_results
    from inference.volume import load_volume

    folder = shared_data / "real_ct" / "pet_ct_slices"
    volume = load_volume(folder)
    headers = [pydicom.dcmread(path) for path in sorted(folder.iterdir()) if path.name.startswith("CT.")]
    bodies_array = np.zeros(sitk.GetArrayViewFromImage(volume).shape, dtype=np.uint8)
    bodies_array[2:9, 300:340, 236:276] = verse_id("L1")
    bodies_array[11:18, 300:340, 236:276] = verse_id("L2")
    compartments_array = (bodies_array > 0).astype(np.uint8)
    compartments_array[3:8, 303:337, 239:273] = 2
    compartments_array[12:17, 303:337, 239:273] = 2
    bodies, compartments = sitk.GetImageFromArray(bodies_array), sitk.GetImageFromArray(compartments_array)
    bodies.CopyInformation(volume)
    compartments.CopyInformation(volume)
    segmentation = make_segmentation(bodies, compartments)
    measurements = make_measurements()
    measurements.levels = {name: level for name, level in measurements.levels.items() if name in ("L1", "L2")}
    algorithm = AlgorithmInfo(name="test", version="1", model_id="test")
    with pytest.raises(EncodeError, match="lacks SOPClassUID, SOPInstanceUID, StudyInstanceUID, SeriesInstanceUID"):
        encode_results(headers, segmentation, measurements, algorithm)
    study_uid, series_uid = generate_uid(), generate_uid()
    for ds in headers:  # repaired as a test would: SOP UIDs from the file meta, new study and series UIDs
        ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    objects = encode_results(headers, segmentation, measurements, algorithm)
    assert objects.seg.StudyInstanceUID == objects.sr.StudyInstanceUID == study_uid
    assert objects.report.pixel_array.shape == (800, 1280, 3)
