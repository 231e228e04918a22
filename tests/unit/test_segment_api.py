"""segment_volume: backend registry, output folder round trip, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from inference.segment import BackendOutput, available_backends, register_backend, segment_volume
from inference.segment.io import SegmentationFolderError, read_segmentation, write_segmentation
from inference.volume import VolumeError


def _ct(shape=(12, 40, 40)) -> sitk.Image:
    array = np.full(shape, 40.0, np.float32)
    array[:, :2, :] = -1000.0
    array[2:10, 15:25, 15:25] = 400.0
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.0, 3.0))
    image.SetOrigin((-20.0, -20.0, 100.0))
    return image


def _box_backend(image: sitk.Image, *, device: str, model_dir: Path | None) -> BackendOutput:
    """A stand-in backend: one L1 (VerSe 20) body where the CT is bone."""
    array = (sitk.GetArrayFromImage(image) > 300).astype(np.uint8) * 20
    labels = sitk.GetImageFromArray(array)
    labels.CopyInformation(image)
    return BackendOutput(labels, labels, version="box-1", labelling_confidence=0.6, warnings=["stand-in"])


def test_registered_backend_result_gets_compartments_and_levels(tmp_path: Path):
    register_backend("box", _box_backend)
    assert {"anatomical", "unet", "box"} <= set(available_backends())
    image = _ct()
    result = segment_volume(image, "box")
    assert result.backend == "box" and result.backend_version == "box-1"
    l1 = result.levels["L1"]
    assert l1.complete and l1.voxels == 8 * 10 * 10 and l1.confidence == 0.6
    compartments = sitk.GetArrayFromImage(result.compartments)
    assert set(np.unique(compartments)) == {0, 1, 2}
    assert result.levels_not_in_view == ["T11", "T12", "L2"]
    assert "stand-in" in result.warnings

    folder = write_segmentation(result, tmp_path / "seg")
    assert {p.name for p in folder.iterdir()} == {
        "vertebrae.nii.gz", "bodies.nii.gz", "compartments.nii.gz", "segmentation.json"}
    again = read_segmentation(folder)
    assert again.to_json() == result.to_json()
    for name in ("vertebrae", "bodies", "compartments"):
        written, original = getattr(again, name), getattr(result, name)
        assert written.GetSize() == image.GetSize()
        assert np.allclose(written.GetOrigin(), image.GetOrigin())
        assert np.array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(original))


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(ValueError, match="available: .*anatomical"):
        segment_volume(_ct(), "no-such-backend")


def test_reading_an_incomplete_folder_fails_clearly(tmp_path: Path):
    (tmp_path / "segmentation.json").write_text("{}")
    with pytest.raises(SegmentationFolderError, match="missing vertebrae.nii.gz"):
        read_segmentation(tmp_path)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((20, 30, 30), np.float32), "empty"),
        (np.full((2, 30, 30), 40.0, np.float32), "too small"),
        (np.random.default_rng(0).uniform(0, 255, (20, 30, 30)).astype(np.float32), "do not look like CT"),
    ],
    ids=["empty", "two-slices", "not-ct-intensities"],
)
def test_bad_volumes_are_refused(array: np.ndarray, message: str):
    with pytest.raises(VolumeError, match=message):
        segment_volume(sitk.GetImageFromArray(array))
