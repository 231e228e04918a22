"""Cortical/cancellous split: geometry at several resolutions, and the real VerSe sub-regions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from inference.levels import Compartment
from inference.segment.compartments import split_compartments


def _box_body(spacing: tuple[float, float, float]) -> tuple[sitk.Image, sitk.Image]:
    """A 40 x 30 x 24 mm body: 700 HU cortex 1 mm thick around 150 HU marrow, in 40 HU tissue."""
    size = [int(round(e / s)) + 8 for e, s in zip((40.0, 30.0, 24.0), spacing, strict=True)]
    x, y, z = (np.arange(n) * s for n, s in zip(size, spacing, strict=True))
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    centre = [(n - 1) * s / 2 for n, s in zip(size, spacing, strict=True)]
    depth = np.minimum.reduce([20.0 - np.abs(xx - centre[0]), 15.0 - np.abs(yy - centre[1]), 12.0 - np.abs(zz - centre[2])])
    hu = np.where(depth < 0, 40.0, np.where(depth < 1.0, 700.0, 150.0)).astype(np.float32)
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing(spacing)
    body = sitk.GetImageFromArray((depth >= 0).astype(np.uint8) * 20)
    body.CopyInformation(image)
    return image, body


@pytest.mark.parametrize("spacing", [(0.7, 0.7, 1.0), (0.8, 0.8, 3.0), (1.0, 1.0, 5.0)])
def test_shell_surrounds_the_core_at_every_resolution(spacing):
    image, body = _box_body(spacing)
    compartments = sitk.GetArrayFromImage(split_compartments(image, body))
    inside = sitk.GetArrayFromImage(body) > 0
    assert set(np.unique(compartments[inside])) == {Compartment.CORTICAL, Compartment.CANCELLOUS}
    assert not compartments[~inside].any()
    # the outer voxel layer is cortical on every face, including the endplates on thick slices
    z_planes = np.nonzero(inside.any(axis=(1, 2)))[0]
    for z in (z_planes[0], z_planes[-1]):
        assert np.all(compartments[z][inside[z]] == Compartment.CORTICAL)
    middle = inside.shape[0] // 2
    assert compartments[middle, inside.shape[1] // 2, inside.shape[2] // 2] == Compartment.CANCELLOUS
    # the shell stays thin: the core keeps most of the body
    assert (compartments == Compartment.CANCELLOUS).sum() > 0.4 * inside.sum()


def test_each_body_gets_its_own_endplate_shell():
    image, body = _box_body((1.0, 1.0, 1.0))
    labels = sitk.GetArrayFromImage(body)
    middle = labels.shape[0] // 2
    labels[:middle][labels[:middle] > 0] = 21  # two bodies touching: L1 (20) above, L2 (21) below
    two = sitk.GetImageFromArray(labels)
    two.CopyInformation(body)
    compartments = sitk.GetArrayFromImage(split_compartments(image, two))
    assert np.all(compartments[middle][labels[middle] == 20] == Compartment.CORTICAL)
    assert np.all(compartments[middle - 1][labels[middle - 1] == 21] == Compartment.CORTICAL)


def test_band_must_not_be_thinner_than_shell():
    image, body = _box_body((1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="band_mm"):
        split_compartments(image, body, shell_mm=2.0, band_mm=1.0)


def test_split_matches_verse_subregions_on_real_ct(shared_data: Path):
    """Reference sub-regions 49 (body border) / 50 (body interior) of a real 1.5 mm CT."""
    folder = shared_data / "real_ct" / "lumbar_crop_1p5mm"
    image = sitk.ReadImage(str(folder / "sub-ct_label-22_ct.nii.gz"), sitk.sitkFloat32)
    subregions = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "sub-ct_seg-subreg_label-22_msk.nii.gz")))
    vertebrae = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "sub-ct_seg-vert_label-22_msk.nii.gz")))
    bodies = sitk.GetImageFromArray(np.where(np.isin(subregions, (49, 50)), vertebrae, 0).astype(np.uint8))
    bodies.CopyInformation(image)
    compartments = sitk.GetArrayFromImage(split_compartments(image, bodies))

    def dice(a: np.ndarray, b: np.ndarray) -> float:
        return 2.0 * (a & b).sum() / (a.sum() + b.sum())

    cortical = dice(compartments == Compartment.CORTICAL, subregions == 49)
    cancellous = dice(compartments == Compartment.CANCELLOUS, subregions == 50)
    print(f"lumbar_crop_1p5mm compartment Dice: cortical {cortical:.3f}, cancellous {cancellous:.3f}")
    assert cancellous >= 0.75
    assert cortical >= 0.75
