"""Visual report: a Secondary Capture with the sagittal overlay, written as PNG for a person to look at."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from dicom_sr import AlgorithmInfo, EncodeError, encode_visual_report, render_visual_report
from inference.volume import load_volume
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


def test_headers_only_source_with_the_loaded_volume_renders_the_same_report(tmp_path: Path) -> None:
    """The pipeline's path: files on disk -> load_volume (the grid) + headers without pixels."""
    source, segmentation, measurements = make_study((30, 64, 64))
    for ds in source:
        ds.save_as(tmp_path / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
    volume = load_volume(tmp_path)
    for image in (segmentation.bodies, segmentation.compartments):
        assert image.GetSize() == volume.GetSize()
        image.CopyInformation(volume)
    headers = [pydicom.dcmread(path, stop_before_pixels=True) for path in sorted(tmp_path.glob("*.dcm"))]
    with pytest.raises(EncodeError, match="pass the CT volume"):
        render_visual_report(headers, segmentation, measurements, ALGORITHM)
    from_volume = render_visual_report(headers, segmentation, measurements, ALGORITHM, ct=volume)
    from_pixels = render_visual_report(source, segmentation, measurements, ALGORITHM)
    np.testing.assert_array_equal(from_volume, from_pixels)
