"""Outlines of a vertebral body on axial source images, for SR Image Regions.

A viewer draws an SR measurement only where it has image geometry: a SCOORD
on a source image (TID 1410 Image Region). Per level the SR therefore carries
closed outlines near the body's centre:

- the cancellous core, on the central slice;
- the cortical shell, on the slice below it, as one closed "keyhole"
  polyline: the outer edge, a cut to the core's edge, the core's edge the
  other way round, and back. The region it encloses is the shell alone,
  which no single outline of the body or the core describes;
- the whole body, on the slice above it.

Three neighbouring slices rather than one because a viewer places each
finding's text next to its outline: three nearly identical outlines on one
image put three text boxes on top of each other (OHIF 3.13 does), and the
numbers cannot be read. Where the body is too thin for that, all three share
the central slice.

Coordinates follow PS3.3 C.18.6.1.2: (column, row) with (0, 0) at the top
left corner of the top left pixel, so a pixel's centre is at +0.5.

The iso-line at 0.5 of the binary slice mask is traced by contourpy
(matplotlib's marching-squares engine) rather than by hand; holes are filled
and only the largest connected piece is outlined, since an Image Region is
one closed polyline.
"""

from __future__ import annotations

from dataclasses import dataclass

import contourpy
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from inference.levels import Compartment

MIN_CORE_FRACTION = 0.5
"""The outlined slice's core area, at least this fraction of the level's largest core area."""


@dataclass(frozen=True)
class Outline:
    """A closed polyline (n, 2) of (column, row) on slice ``slice_index`` of the grid."""

    slice_index: int
    points: np.ndarray


@dataclass(frozen=True)
class LevelOutlines:
    core: Outline
    shell: Outline
    body: Outline

    @property
    def slice_indices(self) -> set[int]:
        return {self.core.slice_index, self.shell.slice_index, self.body.slice_index}


def level_outlines(bodies: sitk.Image, compartments: sitk.Image, labels: dict[str, int]) -> dict[str, LevelOutlines]:
    """Outlines of each level (name -> body label) on the slice nearest its centre whose core is substantial.

    A level without cancellous core voxels has nothing to outline and is left out.
    """
    shape_stats = sitk.LabelShapeStatisticsImageFilter()
    shape_stats.Execute(bodies)
    body_labels = sitk.GetArrayViewFromImage(bodies)
    compartment_labels = sitk.GetArrayViewFromImage(compartments)
    found: dict[str, LevelOutlines] = {}
    for name, label in labels.items():
        if not shape_stats.HasLabel(label):
            continue
        x0, y0, z0, nx, ny, nz = shape_stats.GetBoundingBox(label)
        box = np.s_[z0:z0 + nz, y0:y0 + ny, x0:x0 + nx]
        body_box = body_labels[box] == label
        core_box = body_box & (compartment_labels[box] == int(Compartment.CANCELLOUS))
        core_area = core_box.sum(axis=(1, 2))
        if core_area.max(initial=0) == 0:
            continue
        centre_z = bodies.TransformPhysicalPointToContinuousIndex(shape_stats.GetCentroid(label))[2] - z0
        below, k, above = _three_slices(core_area >= MIN_CORE_FRACTION * core_area.max(), centre_z)
        offset = np.array([x0, y0], dtype=float)
        shell = _keyhole(_outline(body_box[below]) + offset, _outline(core_box[below]) + offset)
        found[name] = LevelOutlines(
            core=Outline(z0 + k, _outline(core_box[k]) + offset),
            shell=Outline(z0 + below, shell),
            body=Outline(z0 + above, _outline(body_box[above]) + offset),
        )
    return found


def _three_slices(substantial: np.ndarray, centre: float) -> tuple[int, int, int]:
    """(below, central, above): the substantial slice nearest ``centre`` whose neighbours are substantial too."""
    candidates = np.flatnonzero(substantial)
    inner = [k for k in candidates if 0 < k < len(substantial) - 1 and substantial[k - 1] and substantial[k + 1]]
    if inner:
        k = int(min(inner, key=lambda i: abs(i - centre)))
        return k - 1, k, k + 1
    k = int(candidates[np.argmin(np.abs(candidates - centre))])
    return k, k, k


def _outline(mask: np.ndarray) -> np.ndarray:
    """The closed outer outline of the largest piece of ``mask`` (2-D), holes filled, pixel-centre coordinates."""
    pieces, count = ndimage.label(mask)
    if count > 1:
        sizes = np.bincount(pieces.ravel())[1:]
        mask = pieces == 1 + int(np.argmax(sizes))
    filled = np.pad(ndimage.binary_fill_holes(mask), 1).astype(np.float32)
    lines = contourpy.contour_generator(z=filled, line_type=contourpy.LineType.Separate).lines(0.5)
    line = max(lines, key=len)
    if not np.array_equal(line[0], line[-1]):
        line = np.vstack([line, line[:1]])
    # contourpy's x, y are the padded array's column, row indices: undo the pad, move to pixel centres.
    return line - 1.0 + 0.5


def _keyhole(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """One closed polyline enclosing the ring between two closed outlines (inner inside outer).

    Joined at their closest points; the inner outline is walked the other way
    round, so the enclosed region excludes the inside of ``inner``.
    """
    distances = np.linalg.norm(outer[:-1, None, :] - inner[None, :-1, :], axis=2)
    i, j = np.unravel_index(int(np.argmin(distances)), distances.shape)
    inner_loop = np.vstack([inner[j:-1], inner[:j + 1]])[::-1]
    return np.vstack([outer[:i + 1], inner_loop, outer[i:]])
