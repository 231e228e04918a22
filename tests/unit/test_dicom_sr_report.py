"""Visual report: a Secondary Capture with the sagittal overlay, written as PNG for a person to look at."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dicom_sr import AlgorithmInfo, encode_visual_report
from tests.unit.test_dicom_sr_inputs import make_study

ALGORITHM = AlgorithmInfo(name="scpnode anatomical", version="0.3.1", model_id="anatomical-rules-2")
RESEARCH_RED = np.array([255, 107, 107])
CALIBRATED_GREEN = np.array([127, 214, 127])


def _has_colour(pixels: np.ndarray, colour: np.ndarray, tolerance: int = 12) -> bool:
    return bool((np.abs(pixels.astype(int) - colour).max(axis=-1) <= tolerance).any())


def test_report_is_a_secondary_capture_in_the_source_study(output_dir: Path) -> None:
    source, segmentation, measurements = make_study((60, 128, 128))
    report = encode_visual_report(source, segmentation, measurements, ALGORITHM)
    assert report.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert report.StudyInstanceUID == source[0].StudyInstanceUID and report.PatientID == source[0].PatientID
    assert report.SeriesNumber == 902 and "research use" in report.SeriesDescription
    assert report.PhotometricInterpretation == "RGB" and report.BurnedInAnnotation == "NO"
    pixels = report.pixel_array
    Image.fromarray(pixels).save(output_dir / "visual_report_uncalibrated.png")
    assert pixels.shape == (800, 1280, 3)
    left = pixels[:, : pixels.shape[1] * 2 // 5]
    assert _has_colour(pixels, RESEARCH_RED), "the research-use banner is missing"
    chroma = left.max(axis=-1).astype(int) - left.min(axis=-1)
    assert (chroma > 80).sum() > 500, "no compartment overlay on the grey reformat"
    assert (left.std(axis=(0, 1)) > 10).all(), "the reformat is blank"


def test_calibrated_model_drops_the_research_banner(output_dir: Path) -> None:
    source, segmentation, measurements = make_study((40, 96, 96), calibrated=True)
    report = encode_visual_report(source, segmentation, measurements, ALGORITHM)
    pixels = report.pixel_array
    Image.fromarray(pixels).save(output_dir / "visual_report_calibrated.png")
    assert _has_colour(pixels, CALIBRATED_GREEN) and not _has_colour(pixels, RESEARCH_RED, tolerance=4)
    assert "research use" not in report.SeriesDescription
