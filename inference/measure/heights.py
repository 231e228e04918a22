"""Vertebral body heights along the local spine axis, and Genant's semi-quantitative grade.

Heights are read as on a sagittal reformat (Genant et al., J Bone Miner Res
1993;8:1137-1148): in the body's mid-sagittal plane, the anterior, middle and
posterior heights are its extent along the local spine axis at 10 %, 50 % and
90 % of its antero-posterior depth. The local axis runs through the centroids
of the neighbouring bodies (the body's own smallest principal axis when it
has no neighbour), tilted in the sagittal plane to the body's own endplates
(:func:`align_to_endplates`), so a kyphotic or lordotic spine is measured
along itself, not along the scanner's z axis. An intact body that would no
longer read intact along its own axis keeps the neighbours' axis: on a noisy
mask or a coarse grid (a 3 mm sagittal crop) the principal axes can turn the
wrong way, and a wrong axis clips the corners of the body.

Each height is read on lines parallel to the axis through the linearly
interpolated body mask (edge at 0.5), as a reformat would, so it is not
quantised to the voxel grid; the median over lines a few mm either side of
the mid-sagittal plane makes it robust to one ragged voxel.

Grade: the largest height loss of the body, relative to its own posterior
height (wedge, biconcave) and to the posterior height of its intact
neighbours (crush, and any height against the neighbours), graded 20-25 % /
25-40 % / > 40 % (:func:`inference.measure.categories.genant_grade`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from inference.measure.categories import genant_grade
from inference.results import Heights

COLUMN_POSITIONS = {"anterior": 0.10, "middle": 0.50, "posterior": 0.90}
"""Where along the antero-posterior depth (0 anterior wall, 1 posterior wall) each height is read."""
LINE_OFFSETS_MM = (-4.0, -2.0, 0.0, 2.0, 4.0)
"""Lateral offsets of the lines a height is the median of (the mid-sagittal plane and either side)."""
SAMPLE_STEP_MM = 0.1
MID_SAGITTAL_HALF_WIDTH_MM = 5.0
"""Half width of the slab whose voxels give the body's antero-posterior extent."""
MAX_TILT_DEG = 15.0
"""Largest correction of the neighbour-centroid axis towards the body's own orientation."""
ALIGNED_MIN_SHARE = 0.9
"""Along its own axis an intact body reads within 10 % of its heights along the neighbours' axis
(the axes differ by a few degrees); shorter, the own axis clips its corners and is not used."""
INTACT_RATIO = 0.8
"""A neighbour whose anterior and middle heights are at least this of its posterior one is intact."""


@dataclass(frozen=True)
class BodyGeometry:
    """One vertebral body: its mask (a crop of the label image) and where that crop lies in LPS."""

    mask: np.ndarray
    """Boolean crop (numpy z, y, x) holding the whole body."""
    crop_origin: np.ndarray
    """LPS position of the crop's voxel (0, 0, 0)."""
    index_to_lps: np.ndarray
    """3x3 matrix (direction times spacing): index offset (x, y, z) -> LPS offset in mm."""
    points: np.ndarray = field(init=False, repr=False)
    """(N, 3) LPS coordinates of the body's voxel centres."""

    def __post_init__(self) -> None:
        ijk = np.argwhere(self.mask)[:, ::-1].astype(float)
        object.__setattr__(self, "points", self.crop_origin + ijk @ self.index_to_lps.T)

    @property
    def centroid(self) -> np.ndarray:
        return self.points.mean(axis=0)

    def inside(self, lps: np.ndarray) -> np.ndarray:
        """Linearly interpolated mask (0..1) at LPS points (..., 3)."""
        ijk = np.linalg.solve(self.index_to_lps, (lps.reshape(-1, 3) - self.crop_origin).T)
        values = ndimage.map_coordinates(self.mask.astype(np.float32), ijk[::-1], order=1, cval=0.0)
        return values.reshape(lps.shape[:-1])


def body_geometry(mask: np.ndarray, offset_zyx: tuple[int, int, int], origin: tuple[float, ...],
                  spacing: tuple[float, ...], direction: tuple[float, ...]) -> BodyGeometry:
    """Geometry of a body from a crop of its mask whose first voxel is ``offset_zyx`` in the image."""
    matrix = np.asarray(direction, dtype=float).reshape(3, 3) * np.asarray(spacing, dtype=float)
    crop_origin = np.asarray(origin, dtype=float) + matrix @ np.asarray(offset_zyx[::-1], dtype=float)
    return BodyGeometry(mask=np.pad(mask, 1), crop_origin=crop_origin - matrix @ np.ones(3), index_to_lps=matrix)


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


def sagittal_frame(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior and lateral unit vectors perpendicular to ``axis`` (LPS +y is posterior)."""
    posterior = np.array([0.0, 1.0, 0.0]) - axis[1] * axis
    posterior /= np.linalg.norm(posterior)
    return posterior, np.cross(axis, posterior)


def align_to_endplates(points: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Tilt ``axis`` in the sagittal plane (within :data:`MAX_TILT_DEG`) to the body's own orientation.

    In a lordotic or kyphotic segment the line through the neighbours' centroids
    is not quite perpendicular to this body's endplates. In the mid-sagittal
    slab a vertebral body is a rectangle deeper than it is high, so its
    principal axes (second moments) follow its walls and endplates; a wedge
    fracture tilts them far less than it tilts a caliper's thinnest direction.
    """
    posterior, lateral = sagittal_frame(axis)
    slab = points[np.abs(points @ lateral) <= MID_SAGITTAL_HALF_WIDTH_MM]
    if len(slab) < 10:
        return axis
    plane = np.column_stack([slab @ axis, slab @ posterior])
    plane -= plane.mean(axis=0)
    _, vectors = np.linalg.eigh(plane.T @ plane)
    along, depth = vectors[:, 0]  # smaller second moment: the height direction
    tilt = np.arctan2(depth, along)
    tilt = (tilt + np.pi / 2) % np.pi - np.pi / 2  # an eigenvector's sign is arbitrary
    tilt = float(np.clip(tilt, -np.deg2rad(MAX_TILT_DEG), np.deg2rad(MAX_TILT_DEG)))
    return np.cos(tilt) * axis + np.sin(tilt) * posterior


def raw_heights(body: BodyGeometry, axis: np.ndarray) -> dict[str, float] | None:
    """Anterior, middle and posterior height (mm); None when the body is too small to read."""
    centre = body.centroid
    centred = body.points - centre
    posterior, lateral = sagittal_frame(axis)
    slab = np.abs(centred @ lateral) <= MID_SAGITTAL_HALF_WIDTH_MM
    if slab.sum() < 10:
        return None
    depth = centred[slab] @ posterior
    half_voxel = 0.5 * float(np.abs(body.index_to_lps.T @ posterior).max())
    front, back = float(depth.min()) - half_voxel, float(depth.max()) + half_voxel
    along = centred @ axis
    steps = np.arange(float(along.min()) - 5.0, float(along.max()) + 5.0, SAMPLE_STEP_MM)
    offsets = np.asarray(LINE_OFFSETS_MM)
    heights: dict[str, float] = {}
    for name, fraction in COLUMN_POSITIONS.items():
        foot = centre + (front + fraction * (back - front)) * posterior
        lines = foot + offsets[:, None, None] * lateral + steps[None, :, None] * axis
        inside = body.inside(lines) >= 0.5
        if not inside.any(axis=1).all():
            return None
        # endplate to endplate: a gap in between (the basivertebral notch of the posterior wall) does not count
        first = inside.argmax(axis=1)
        last = inside.shape[1] - 1 - inside[:, ::-1].argmax(axis=1)
        heights[name] = float(np.median(last - first + 1)) * SAMPLE_STEP_MM
    return heights


def measure_heights(bodies: Mapping[int, BodyGeometry]) -> dict[int, tuple[Heights, int]]:
    """Heights, ratios and Genant grade of every body, keyed by VerSe id.

    ``bodies`` should hold the neighbours of the levels of interest too: they
    give the local axis and the expected height (crush ratio). A body that
    looks intact along the neighbour-centroid axis is read along its own
    endplate-aligned axis; one that does not is read along the mean aligned
    axis of its intact neighbours, because a wedge or biconcave shape tilts
    its own principal axes.
    """
    chord = {vid: local_axis(body, bodies.get(vid - 1), bodies.get(vid + 1)) for vid, body in bodies.items()}
    first = {vid: h for vid, body in bodies.items() if (h := raw_heights(body, chord[vid])) is not None}
    looks_intact = {vid for vid, h in first.items() if _intact(h)}
    own = {vid: align_to_endplates(bodies[vid].points - bodies[vid].centroid, chord[vid]) for vid in looks_intact}
    for vid in looks_intact:  # an intact body still reads intact, and as tall, along its own axis
        aligned = raw_heights(bodies[vid], own[vid] / np.linalg.norm(own[vid]))
        if aligned is None or not _intact(aligned) or min(aligned.values()) < ALIGNED_MIN_SHARE * min(first[vid].values()):
            own[vid] = chord[vid]
    raw: dict[int, dict[str, float]] = {}
    for vid in first:
        neighbour_axes = [own[n] for n in (vid - 1, vid + 1) if n in own]
        if vid in own:
            axis = own[vid]
        elif neighbour_axes:
            axis = np.mean(neighbour_axes, axis=0)
        else:
            axis = chord[vid]
        raw[vid] = raw_heights(bodies[vid], axis / np.linalg.norm(axis)) or first[vid]

    out: dict[int, tuple[Heights, int]] = {}
    for vid, h in raw.items():
        neighbours = [raw[n]["posterior"] for n in (vid - 1, vid + 1) if n in raw and _intact(raw[n])]
        expected = float(np.mean(neighbours)) if neighbours else h["posterior"]
        heights = Heights(
            anterior_mm=h["anterior"], middle_mm=h["middle"], posterior_mm=h["posterior"],
            wedge_ratio=h["anterior"] / h["posterior"], biconcave_ratio=h["middle"] / h["posterior"],
            crush_ratio=h["posterior"] / expected,
        )
        loss_against_neighbours = 1.0 - min(h.values()) / expected
        out[vid] = (heights, genant_grade(max(heights.max_height_loss, loss_against_neighbours)))
    return out


def _intact(heights: dict[str, float]) -> bool:
    return min(heights["anterior"], heights["middle"]) >= INTACT_RATIO * heights["posterior"]
