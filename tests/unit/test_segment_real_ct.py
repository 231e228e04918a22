"""The anatomical backend on a real abdominal CT (3 mm) against TotalSegmentator reference labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from inference.levels import VERSE_IDS
from inference.results import SegmentationResult
from inference.segment import segment_volume
from inference.volume import load_volume

MEASURED = ("T12", "L1", "L2")


@pytest.fixture(scope="module")
def abdomen(shared_data: Path) -> tuple[SegmentationResult, np.ndarray, np.ndarray]:
    folder = shared_data / "real_ct" / "abdomen_3mm"
    result = segment_volume(load_volume(folder / "ct.nii.gz"))
    vertebrae = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "reference_vertebrae.nii.gz")))
    bodies = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "reference_vertebrae_body.nii.gz")))
    return result, vertebrae, np.where(bodies == 1, vertebrae, 0)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * (a & b).sum() / max(a.sum() + b.sum(), 1)


def test_levels_are_named_right(abdomen):
    result, reference, _ = abdomen
    labels = sitk.GetArrayFromImage(result.vertebrae)
    for name in MEASURED:
        assert name in result.levels, f"{name} not found"
        found = labels == VERSE_IDS[name]
        values, counts = np.unique(reference[found], return_counts=True)
        assert values[np.argmax(counts)] == VERSE_IDS[name], f"{name} overlaps reference {values[np.argmax(counts)]}"
    assert not result.needs_review
    assert result.levels["L1"].complete and result.levels["L2"].complete


def test_t11_is_not_passed_as_complete(abdomen):
    result, _, _ = abdomen
    assert "T11" not in result.complete_levels(("T11",))
    assert "T11" in result.levels_not_in_view or result.levels["T11"].reason


def test_dice_against_reference(abdomen, bench_report):
    result, reference, reference_bodies = abdomen
    vertebrae = sitk.GetArrayFromImage(result.vertebrae)
    bodies = sitk.GetArrayFromImage(result.bodies)
    figures = {}
    for name in MEASURED:
        label = VERSE_IDS[name]
        figures[f"{name} vertebra Dice"] = round(_dice(vertebrae == label, reference == label), 3)
        figures[f"{name} body Dice"] = round(_dice(bodies == label, reference_bodies == label), 3)
    bench_report("segment abdomen_3mm (anatomical)", **figures)
    for name in MEASURED:
        assert figures[f"{name} body Dice"] >= 0.85
        assert figures[f"{name} vertebra Dice"] >= 0.85


def test_any_orientation_gives_the_same_labels_on_its_own_grid(abdomen, shared_data: Path):
    """The same CT stored sagittally (axes permuted and flipped) is labelled identically."""
    result, _, _ = abdomen
    image = load_volume(shared_data / "real_ct" / "abdomen_3mm" / "ct.nii.gz")
    sagittal = sitk.DICOMOrient(image, "PIR")
    again = segment_volume(sagittal)
    assert again.vertebrae.GetSize() == sagittal.GetSize()
    assert again.vertebrae.GetDirection() == sagittal.GetDirection()
    back = sitk.GetArrayFromImage(sitk.DICOMOrient(again.vertebrae, "LPS"))
    original = sitk.GetArrayFromImage(sitk.DICOMOrient(result.vertebrae, "LPS"))
    assert np.array_equal(back, original)
    assert again.to_json()["levels"].keys() == result.to_json()["levels"].keys()
