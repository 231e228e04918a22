"""Outlines for SR Image Regions: closed, the right size, on the right slices."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from dicom_sr.outlines import level_outlines


def _area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1])))


def _images(bodies: np.ndarray, compartments: np.ndarray) -> tuple[sitk.Image, sitk.Image]:
    return sitk.GetImageFromArray(bodies), sitk.GetImageFromArray(compartments)


def _square_body(slices: range, shape=(12, 40, 40)) -> tuple[np.ndarray, np.ndarray]:
    bodies = np.zeros(shape, dtype=np.uint8)
    compartments = np.zeros(shape, dtype=np.uint8)
    for z in slices:
        bodies[z, 10:20, 12:22] = 20
        compartments[z, 10:20, 12:22] = 1
        compartments[z, 12:18, 14:20] = 2
    return bodies, compartments


def test_core_shell_and_body_are_closed_outlines_of_the_right_area_on_neighbouring_slices() -> None:
    outlines = level_outlines(*_images(*_square_body(range(2, 9))), {"L1": 20})["L1"]
    assert (outlines.shell.slice_index, outlines.core.slice_index, outlines.body.slice_index) == (4, 5, 6)
    for outline in (outlines.core, outlines.shell, outlines.body):
        assert np.array_equal(outline.points[0], outline.points[-1])
    # Marching squares cuts each corner pixel by an eighth of a pixel: areas within 2 pixels.
    assert abs(_area(outlines.core.points) - 36) < 2
    assert abs(_area(outlines.body.points) - 100) < 2
    assert abs(_area(outlines.shell.points) - 64) < 4, "the keyhole encloses the ring only"
    # (column, row) with pixel centres at +0.5: the body's columns 12..21 span 12.5..21.5 at most.
    assert outlines.body.points[:, 0].min() >= 12.0 and outlines.body.points[:, 0].max() <= 22.0
    assert outlines.body.points[:, 1].min() >= 10.0 and outlines.body.points[:, 1].max() <= 20.0


def test_a_thin_body_shares_one_slice_and_a_holed_or_split_core_is_outlined_whole() -> None:
    bodies, compartments = _square_body(range(5, 6))
    compartments[5, 14:16, 16:18] = 1  # a hole inside the core
    bodies[5, 30:33, 30:33] = 20  # a stray piece of the same label, far away
    compartments[5, 31, 31] = 2
    outlines = level_outlines(*_images(bodies, compartments), {"L1": 20, "L2": 21})
    assert set(outlines) == {"L1"}, "a label not in the image has nothing to outline"
    level = outlines["L1"]
    assert level.core.slice_index == level.shell.slice_index == level.body.slice_index == 5
    assert abs(_area(level.core.points) - 36) < 2, "the hole is filled, the stray piece left out"
    assert level.body.points[:, 0].max() <= 22.0


def test_a_level_without_core_voxels_has_no_outline() -> None:
    bodies, compartments = _square_body(range(2, 9))
    compartments[compartments == 2] = 1
    assert level_outlines(*_images(bodies, compartments), {"L1": 20}) == {}
