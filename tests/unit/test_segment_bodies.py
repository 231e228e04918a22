"""Vertebral bodies cut from whole vertebrae at the spinal canal (for models that label whole vertebrae)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from inference.levels import TARGET_LEVELS, VERSE_IDS
from inference.phantom import abdominal_ct, generate_phantom
from inference.segment.bodies import bodies_from_vertebrae


def _phantom():
    return generate_phantom(abdominal_ct(seed=3, shape=(112, 112, 64), pixel_spacing_mm=2.0,
                                         slice_spacing_mm=4.0, slice_thickness_mm=4.0))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1))


def test_bodies_match_the_true_bodies_of_the_phantom():
    phantom = _phantom()
    bodies = sitk.GetArrayFromImage(bodies_from_vertebrae(phantom.vertebrae))
    truth = sitk.GetArrayFromImage(phantom.bodies)
    vertebrae = sitk.GetArrayFromImage(phantom.vertebrae)
    assert np.all((bodies == 0) | (bodies == vertebrae)), "a body voxel outside its own vertebra"
    for name in TARGET_LEVELS:
        label = VERSE_IDS[name]
        # the posterior elements (a third of the vertebra) must be cut off, the body kept
        assert np.count_nonzero(vertebrae == label) > 1.3 * np.count_nonzero(truth == label)
        assert _dice(bodies == label, truth == label) >= 0.93, name


def test_any_orientation_gives_the_same_bodies():
    phantom = _phantom()
    direct = sitk.GetArrayFromImage(bodies_from_vertebrae(phantom.vertebrae))
    reoriented = sitk.DICOMOrient(phantom.vertebrae, "PIR")
    other = bodies_from_vertebrae(reoriented)
    assert other.GetDirection() == reoriented.GetDirection() and other.GetSize() == reoriented.GetSize()
    assert np.array_equal(sitk.GetArrayFromImage(sitk.DICOMOrient(other, "LPS")), direct)


def test_a_vertebra_without_an_arch_is_all_body():
    labels = np.zeros((20, 40, 40), dtype=np.uint8)
    labels[4:16, 8:30, 10:30] = 20
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing((1.0, 1.0, 2.0))
    bodies = sitk.GetArrayFromImage(bodies_from_vertebrae(image))
    assert np.array_equal(bodies, labels)


def test_bodies_match_totalsegmentators_own_body_model_on_real_ct(shared_data):
    """abdomen_3mm: TotalSegmentator's whole vertebrae, and its licensed vertebrae_body model's bodies (3 mm, RAS)."""
    folder = shared_data / "real_ct" / "abdomen_3mm"
    vertebrae = sitk.ReadImage(str(folder / "reference_vertebrae.nii.gz"), sitk.sitkUInt8)
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "reference_vertebrae_body.nii.gz"))) > 0
    labels = sitk.GetArrayFromImage(vertebrae)
    bodies = sitk.GetArrayFromImage(bodies_from_vertebrae(vertebrae))
    for name in ("T12", "L1", "L2", "L3", "L4"):  # T11 is a fragment at the edge of this crop
        label = VERSE_IDS[name]
        assert _dice(bodies == label, truth & (labels == label)) >= 0.9, name
