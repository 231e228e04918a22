"""Vertebral body heights along the local spine axis, and Genant's semi-quantitative grade.

Heights are read as in a sagittal radiograph or CT reformat (Genant et al.,
J Bone Miner Res 1993): on the mid-sagittal slab of the body, the anterior,
middle and posterior heights are the body's extent along the local spine axis
at 10 %, 50 % and 90 % of its antero-posterior depth. The local axis runs
through the centroids of the neighbouring bodies (the body's own smallest
principal axis when it has no neighbour), so a scoliotic or kyphotic spine
is measured along itself and not along the scanner's z axis.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from inference.measure.categories import genant_grade
from inference.results import Heights

MID_SAGITTAL_HALF_WIDTH_MM = 5.0
"""Half width of the slab around the body's mid-sagittal plane that heights are read in."""
COLUMN_POSITIONS = {"anterior": 0.10, "middle": 0.50, "posterior": 0.90}
"""Where along the antero-posterior depth (0 anterior, 1 posterior) each height is read."""
COLUMN_HALF_WIDTH_MM = 1.5
INTACT_RATIO = 0.8
"""A neighbour whose wedge and biconcave ratios are at least this is intact (< 20 % loss)."""


@dataclass(frozen=True)
class BodyGeometry:
    """Voxel centres of one vertebral body in LPS mm, and what one voxel spans."""

    points: np.ndarray
    """(N, 3) LPS coordinates of the body's voxel centres."""
    voxel_axes: np.ndarray
    """(3, 3) rows: the voxel's edge vectors (direction column times spacing), LPS mm."""

    @property
    def centroid(self) -> np.ndarray:
        return self.points.mean(axis=0)

    def extent_along(self, unit: np.ndarray) -> float:
        """How far one voxel reaches along ``unit`` (added to centre-to-centre distances)."""
        return float(np.abs(self.voxel_axes @ unit).sum())


def body_geometry(index_zyx: np.ndarray, origin: tuple[float, ...], spacing: tuple[float, ...],
                  direction: tuple[float, ...]) -> BodyGeometry:
    """Geometry of a body from its voxel indices (numpy z, y, x order) and the image geometry."""
    matrix = np.asarray(direction, dtype=float).reshape(3, 3) * np.asarray(spacing, dtype=float)
    ijk = index_zyx[:, ::-1].astype(float)
    return BodyGeometry(points=np.asarray(origin, dtype=float) + ijk @ matrix.T, voxel_axes=matrix.T)


def local_axis(body: BodyGeometry, above: BodyGeometry | None, below: BodyGeometry | None) -> np.ndarray:
    """Unit vector along the spine at this body, pointing superior (+z in LPS)."""
    if above is not None or below is not None:
        top = above.centroid if above is not None else body.centroid
        bottom = below.centroid if below is not None else body.centroid
        axis = top - bottom
    else:
        centred = body.points - body.centroid
        _, vectors = np.linalg.eigh(centred.T @ centred)
        axis = vectors[:, 0]  # smallest spread: a vertebral body is lower than it is wide or deep
    axis = axis / np.linalg.norm(axis)
    return axis if axis[2] >= 0 else -axis


def raw_heights(body: BodyGeometry, axis: np.ndarray) -> dict[str, float] | None:
    """Anterior, middle and posterior height (mm); None when the body is too small to read."""
    posterior = np.array([0.0, 1.0, 0.0]) - axis[1] * axis  # LPS +y is posterior
    posterior /= np.linalg.norm(posterior)
    lateral = np.cross(axis, posterior)
    centred = body.points - body.centroid
    along, depth, side = centred @ axis, centred @ posterior, centred @ lateral
    slab = np.abs(side) <= max(MID_SAGITTAL_HALF_WIDTH_MM, body.extent_along(lateral))
    if slab.sum() < 10:
        return None
    depth, along = depth[slab], along[slab]
    front, back = float(depth.min()), float(depth.max())
    half_width = max(COLUMN_HALF_WIDTH_MM, 0.5 * body.extent_along(posterior))
    voxel_height = body.extent_along(axis)
    heights: dict[str, float] = {}
    for name, fraction in COLUMN_POSITIONS.items():
        column = np.abs(depth - (front + fraction * (back - front))) <= half_width
        if not column.any():
            return None
        heights[name] = float(along[column].max() - along[column].min()) + voxel_height
    return heights


def measure_heights(bodies: Mapping[int, BodyGeometry]) -> dict[int, tuple[Heights, int]]:
    """Heights, ratios and Genant grade of every body, keyed by VerSe id.

    ``bodies`` should hold the neighbours of the levels of interest too: they
    give the local axis and the expected posterior height (crush ratio).
    """
    raw: dict[int, dict[str, float]] = {}
    for vid, body in bodies.items():
        axis = local_axis(body, bodies.get(vid - 1), bodies.get(vid + 1))
        measured = raw_heights(body, axis)
        if measured is not None:
            raw[vid] = measured

    def intact(vid: int) -> bool:
        h = raw[vid]
        return min(h["anterior"], h["middle"]) >= INTACT_RATIO * h["posterior"]

    out: dict[int, tuple[Heights, int]] = {}
    for vid, h in raw.items():
        neighbours = [raw[n]["posterior"] for n in (vid - 1, vid + 1) if n in raw and intact(n)]
        expected = float(np.mean(neighbours)) if neighbours else h["posterior"]
        heights = Heights(
            anterior_mm=h["anterior"], middle_mm=h["middle"], posterior_mm=h["posterior"],
            wedge_ratio=h["anterior"] / h["posterior"], biconcave_ratio=h["middle"] / h["posterior"],
            crush_ratio=h["posterior"] / expected,
        )
        out[vid] = (heights, genant_grade(heights.max_height_loss))
    return out
