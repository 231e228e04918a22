"""The vertebral body of a whole-vertebra label, for backends whose model has no body/posterior split.

Trained vertebra models (TotalSegmentator's, VerSe-style nnU-Nets) label each
vertebra whole: body, pedicles, laminae and processes. What the node measures
is the body, and the spinal canal marks where it ends: the body's posterior
wall is the anterior wall of the canal. On the mid-sagittal line of a vertebra
(:data:`MIDLINE_HALF_WIDTH_MM` either side of its centre) the first run of
bone met going from anterior to posterior is therefore the body, in every
axial slice that cuts the body; the canal (or the disc space and soft tissue
behind a slice through the body alone) ends the run. A slice whose first
midline bone starts far behind the body's front (:data:`BODY_FRONT_TOLERANCE_MM`)
cuts only the arch or the spinous process and holds no body.

Per slice, the vertebra is cut at that posterior wall: what lies in front is
body. The pedicle roots in front of the wall stay with the body; the
posterolateral corners of a body whose posterior wall is concave (lumbar) are
behind the midline wall and go with the arch. This is the same coronal cut at
the canal a reader makes by eye and the one the VerSe body labels follow
closely; :func:`bodies_from_vertebrae` is tested against the phantom's true
bodies (``tests/unit/test_segment_bodies.py``).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

MIDLINE_HALF_WIDTH_MM = 3.0
"""Half width of the mid-sagittal band whose bone profile finds the posterior wall (the canal is
10 mm wide or more, so the band lies inside it where the canal is)."""

GAP_MM = 2.5
"""Gaps shorter than this along the midline profile (a basivertebral foramen, a labelling hole) are bone."""

BODY_FRONT_TOLERANCE_MM = 15.0
"""A slice's first midline bone starting this far behind the vertebra's front is arch, not body."""

WALL_TOLERANCE_MM = 4.0
"""A slice's posterior wall is kept within this distance of the vertebra's median wall (a notch
or a bridge to the arch in one slice does not move the cut)."""


def bodies_from_vertebrae(vertebrae: sitk.Image) -> sitk.Image:
    """The vertebral bodies (same ids, same grid) of a whole-vertebra label image.

    Args:
        vertebrae: whole-vertebra labels (any non-zero ids) in any orientation.

    Returns:
        ``sitkUInt8`` labels on ``vertebrae``'s grid: each vertebra's id where its body is, else 0.
    """
    orientation = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(vertebrae.GetDirection())
    canonical = sitk.DICOMOrient(vertebrae, "LPS")
    labels = sitk.GetArrayViewFromImage(canonical)
    spacing_zyx = tuple(reversed(canonical.GetSpacing()))
    bodies = np.zeros(labels.shape, dtype=np.uint8)
    for label, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        body = _body_of(labels[box] == label, spacing_zyx)
        bodies[box][body] = label
    result = sitk.GetImageFromArray(bodies)
    result.CopyInformation(canonical)
    result = sitk.DICOMOrient(result, orientation)
    result.CopyInformation(vertebrae)
    return result


def _body_of(vertebra: np.ndarray, spacing_zyx: tuple[float, ...]) -> np.ndarray:
    """Body mask of one vertebra in a canonical LPS crop (z inferior -> superior, y anterior -> posterior)."""
    _, sy, sx = spacing_zyx
    centre_x = int(round(float(np.nonzero(vertebra)[2].mean())))
    half = max(int(round(MIDLINE_HALF_WIDTH_MM / sx)), 0)
    band = vertebra[:, :, max(centre_x - half, 0):centre_x + half + 1]
    profile = band.mean(axis=2) >= 0.5
    gap = max(int(round(GAP_MM / sy)), 1)
    profile = ndi.binary_closing(profile, structure=np.ones((1, 2 * gap + 1), dtype=bool)) | profile
    fronts = np.full(profile.shape[0], -1)
    walls = np.full(profile.shape[0], -1)
    for z, row in enumerate(profile):
        bone = np.flatnonzero(row)
        if bone.size == 0:
            continue
        ends = np.flatnonzero(np.diff(bone) > 1)
        fronts[z] = bone[0]
        walls[z] = (bone[ends[0]] if ends.size else bone[-1]) + 1
    in_view = fronts >= 0
    if not in_view.any():
        return np.zeros_like(vertebra)
    body_slices = in_view & (fronts <= fronts[in_view].min() + BODY_FRONT_TOLERANCE_MM / sy)
    median_wall = float(np.median(walls[body_slices]))
    tolerance = WALL_TOLERANCE_MM / sy
    cut = np.clip(walls, median_wall - tolerance, median_wall + tolerance)
    y = np.arange(vertebra.shape[1])[None, :, None]
    body = vertebra & body_slices[:, None, None] & (y < cut[:, None, None])
    return _largest_piece(body)


def _largest_piece(mask: np.ndarray) -> np.ndarray:
    pieces, count = ndi.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if count <= 1:
        return mask
    sizes = np.bincount(pieces.ravel())
    sizes[0] = 0
    return pieces == sizes.argmax()
