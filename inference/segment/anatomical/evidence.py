"""Anatomical evidence for level identification, measured per vertebra segment.

- Ribs: slender bone that leaves the column at the back of the bodies
  (:data:`RIB_FRONT_LIMIT_MM`) and reaches far laterally, or curves forwards
  like a first rib. They are followed from :data:`RIB_CUT_MM` outwards, where
  each rib is a piece of bone of its own. Which vertebra a rib belongs to is
  decided for the whole sequence of ribs on each side at once
  (:func:`assign_ribs`): consecutive ribs belong to consecutive vertebrae, so
  the sequence is aligned with the segments, not each rib voted on alone (a
  rib's medial end lies at the disc above its vertebra in the upper thorax and
  low in its own body at T11-T12, so a single rib near a disc plane is
  ambiguous; the sequence is not).
  How far round the flank a rib goes is measured at its anterior end, in front
  of (or behind) the trunk's mid-coronal plane: an 11th rib reaches round the
  flank, a 12th rib ends in the posterior abdominal wall.
- Sacrum: the most inferior segment, below the last disc, flanked on both
  sides by the iliac bones (large bone plates lateral and posterior to it,
  with a dense cortex; enhancing kidneys are as large but neither) in most of
  its slices. Only the most inferior segment can be the sacrum: L5 is often
  flanked by the iliac crests too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from inference.segment.anatomical.column import BONE_HU, SpineColumn
from inference.segment.anatomical.vertebrae import DiscPlane
from inference.segment.anchors import VertebraEvidence
from inference.segment.levels import faces_against_air

RIB_CUT_MM = 35.0
"""Ribs are followed from this lateral distance of the canal outwards. Nearer, the column's
bone is continuous from level to level (facet joints and costovertebral joints are blurred
into one at CT resolution); beyond it each rib is a piece of its own, whose medial end lies
where the rib's neck meets the tip of its transverse process (at most a little below it)."""

RIB_MEDIAL_MM = 45.0
"""A rib's medial end (cut at :data:`RIB_CUT_MM`) lies this close to the spinal canal, laterally."""

RIB_FRONT_LIMIT_MM = 10.0
"""... and no more than this in front of the canal's anterior wall: the costovertebral joints
lie at the back of the body. Vessels (an enhanced aorta or renal artery) leave the column
in front of it."""

RIB_HEAD_MM = 5.0
"""The medial end of a rib: the part within this distance of its most medial point."""

RIB_REACH_MM = 60.0
"""A rib reaches at least this far from the canal laterally; a transverse process (50 mm at
most, at L3) does not ..."""

FIRST_RIB_REACH_MM = 45.0
FIRST_RIB_FORWARD_MM = 40.0
"""... or, like the short first rib, at least 45 mm while curving at least 40 mm forwards
(a transverse process, C7's included, points sideways or backwards)."""

RIB_NEAR_MM = 50.0
RIB_MAX_SECTION_MM2 = 300.0
"""A rib is slender: within 50 mm of its medial end its volume per length stays below this
(only the part near the spine counts: a first rib can be joined to the clavicle and the
sternum in front)."""

RIB_MAX_WIDTH_RATIO = 0.6
"""Near its medial end a rib is a tube: the spread of its points across its course is at most
0.6 of the spread along it (principal axes; a short piece of a broken rib is still this
elongated); a speckle of bright voxels is not."""

RIB_MAX_STEEPNESS = 0.8
"""... and runs round the trunk: its main axis is at most about 53 degrees from the axial plane
(the steep floating ribs run some 30-45 degrees down); a kidney or a vessel runs head to foot."""

PELVIS_MIN_ML = 60.0
"""Lateral bone larger than this is pelvis (iliac bone), not rib ..."""

PELVIS_CORTEX_HU = 300.0
"""... if it is bone: a tenth of it is denser than this (the iliac cortex); an enhancing
kidney, as large, stays below ..."""

PELVIS_BEHIND_CANAL_MM = 15.0
"""... and it reaches this far behind the canal centre (the posterior iliac crest and spines;
the kidneys lie in front of the transverse processes)."""

SACRUM_FLANKED_FRACTION = 0.6
"""Share of a segment's body slices with iliac bone on both sides for it to be sacrum-like."""

TRUNK_HU = -300.0
"""Soft tissue and bone of the trunk lie above this (air and lung below)."""

LOWEST_RIB_POSITION = 0.75
RIB_POSITION_STEP = 0.15
"""Where a rib's medial end lies within its vertebra, as a share of the vertebra's extent
from the disc above (0) to the disc below (1): about 0.75 for the lowest rib (the 12th,
which articulates with its own body only and runs steeply down), 0.15 higher for each rib
above it, down to 0 (ribs 2-9 articulate across the disc above their vertebra).
Measured on a real contrast-enhanced chest/upper-abdomen CT (T7-T12: 0.80, 0.62, 0.47,
0.26, 0.05, -0.13) and consistent with the costovertebral anatomy."""

POSITION_TOLERANCE = 0.15
"""Deviations from the expected position up to this share of a vertebra cost nothing."""

SKIPPED_SEGMENT_COST = 0.5
"""Alignment cost of a rib-free segment between two rib-bearing ones (a missed rib)."""

SAME_RIB = 0.45
"""Two pieces on one side whose medial ends lie closer than this (in vertebrae) are one rib
broken in two by the bone threshold; only the longer counts."""


@dataclass(frozen=True)
class Rib:
    """One rib found in the image."""

    side: str
    """``"left"`` or ``"right"`` (the patient's)."""
    position: float
    """Medial end along the spine in segment units: 0 at the top of segment 1, k - 1 at the
    top of segment k (the disc above it), fractions in between."""
    reach_mm: float
    """How far laterally from the canal it reaches."""
    front_mm: float
    """How far in front of the trunk's mid-coronal plane it ends (negative: behind it)."""


def measure_evidence(
    smoothed: np.ndarray,
    bodies: np.ndarray,
    segment_index: np.ndarray,
    discs: list[DiscPlane],
    column: SpineColumn,
    spacing_zyx: tuple[float, float, float],
) -> list[VertebraEvidence]:
    """Evidence for every vertebra segment (numbered 1..K from superior), superior first."""
    sz, sy, sx = spacing_zyx
    voxel_ml = sz * sy * sx / 1000.0
    n, _, nx = smoothed.shape
    canal_x = column.canal_center_yx[:, 1]
    canal_y = column.canal_center_yx[:, 0]
    lateral_mm = (np.arange(nx)[None, :] - canal_x[:, None]) * sx  # (z, x), signed: + = patient left
    trunk_centre_y = _trunk_centre_y(smoothed)
    lateral_bone = (smoothed > BONE_HU) & (np.abs(lateral_mm)[:, None, :] >= RIB_CUT_MM)
    pelvis, pelvis_sides_by_slice = _pelvis(lateral_bone, smoothed, lateral_mm, canal_y, spacing_zyx)
    ribs: list[Rib] = []
    for points_mm, lateral, side in _rib_pieces(lateral_bone & ~pelvis, lateral_mm, spacing_zyx):
        rib = _as_rib(points_mm, lateral, side, column, trunk_centre_y, discs, spacing_zyx)
        if rib is not None:
            ribs.append(rib)

    segments = [int(k) for k in np.unique(bodies) if k]
    sides, reach, front = assign_ribs(ribs, len(discs) + 1)
    evidence = []
    lowest = max(segments, default=0)
    for k in segments:
        zs = np.nonzero((bodies == k).any(axis=(1, 2)))[0]
        flanked = [len(pelvis_sides_by_slice.get(int(z), ())) == 2 for z in zs]
        evidence.append(
            VertebraEvidence(
                index=k,
                rib_sides=frozenset(sides.get(k, set())),
                rib_reach_mm=round(reach.get(k, 0.0), 1),
                rib_front_mm=round(front[k], 1) if k in front else None,
                sacrum_like=bool(k == lowest and flanked and float(np.mean(flanked)) >= SACRUM_FLANKED_FRACTION),
                cut_by_edge=bool(zs.min() == 0 or zs.max() == n - 1
                                 or faces_against_air(bodies, smoothed, k, spacing_zyx)),
                body_ml=round(float((bodies == k).sum()) * voxel_ml, 2),
            )
        )
    return evidence


RIB_HALF_THICKNESS_MM = 6.5
"""Bone that holds a ball of this radius is thicker than a rib (ribs are 5-15 mm across):
an enhanced aorta, heart or kidney, a humerus, the pelvis. It is taken away before ribs
are looked for, so a rib touching such a structure is still a piece of its own."""


def _thick(mask: np.ndarray, spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """The parts of ``mask`` thicker than a rib (see :data:`RIB_HALF_THICKNESS_MM`), one voxel wider."""
    radius = np.maximum(np.round(RIB_HALF_THICKNESS_MM / np.asarray(spacing_zyx)).astype(int), 1)
    grid = np.ogrid[tuple(slice(-r, r + 1) for r in radius)]
    ball = sum((g / max(r, 1)) ** 2 for g, r in zip(grid, radius, strict=True)) <= 1.0
    return ndi.binary_opening(mask, structure=ball)


RIB_GAP_MM = 25.0
JOIN_MIN_REACH_MM = 50.0
"""A rib is followed across a gap of up to 25 mm where a thick structure touching it (an
enhanced kidney against the 12th rib) was taken away with it, if the piece at the spine
already reaches 50 mm: farther than any transverse process, which must not be joined to a
rib passing close to its tip."""


def _rib_pieces(lateral_bone: np.ndarray, lateral_mm: np.ndarray, spacing_zyx: tuple[float, float, float]
                ) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """Candidate ribs: (points in mm z y x, lateral distance of each, side).

    Bone thicker than a rib is taken away first (:func:`_thick`); a piece that
    starts near the spine and ends short is joined by the piece that continues it
    beyond such a gap (:data:`RIB_GAP_MM`).
    """
    sz, sy, sx = spacing_zyx
    components, _ = ndi.label(lateral_bone & ~_thick(lateral_bone, spacing_zyx))
    pieces = []
    for label, box in enumerate(ndi.find_objects(components), start=1):
        if box is None:
            continue
        zz, yy, xx = np.nonzero(components[box] == label)
        zz, yy, xx = zz + box[0].start, yy + box[1].start, xx + box[2].start
        lateral = lateral_mm[zz, xx]
        pieces.append((np.stack([zz * sz, yy * sy, xx * sx], axis=1), np.abs(lateral),
                       "left" if np.median(lateral) > 0 else "right"))
    joined = []
    for points, lateral, side in pieces:
        if lateral.min() <= RIB_MEDIAL_MM and JOIN_MIN_REACH_MM <= lateral.max() < RIB_REACH_MM:
            end = points[int(np.argmax(lateral))]
            for other_points, other_lateral, other_side in pieces:
                if other_side != side or other_lateral.min() <= lateral.max():
                    continue
                start = other_points[int(np.argmin(other_lateral))]
                if np.linalg.norm(start - end) <= RIB_GAP_MM:
                    points = np.concatenate([points, other_points])
                    lateral = np.concatenate([lateral, other_lateral])
                    break
        joined.append((points, lateral, side))
    return joined


def _pelvis(lateral_bone: np.ndarray, smoothed: np.ndarray, lateral_mm: np.ndarray, canal_y: np.ndarray,
            spacing_zyx: tuple[float, float, float]) -> tuple[np.ndarray, dict[int, set[str]]]:
    """The iliac bones (see :data:`PELVIS_MIN_ML`) and, per slice, the sides on which they lie."""
    sz, sy, sx = spacing_zyx
    components, _ = ndi.label(lateral_bone)
    pelvis = np.zeros(lateral_bone.shape, bool)
    sides: dict[int, set[str]] = {}
    for label, box in enumerate(ndi.find_objects(components), start=1):
        if box is None:
            continue
        mask = components[box] == label
        if mask.sum() * sz * sy * sx / 1000.0 < PELVIS_MIN_ML:
            continue
        zz, yy, xx = np.nonzero(mask)
        zz, yy, xx = zz + box[0].start, yy + box[1].start, xx + box[2].start
        behind_mm = float(((yy - canal_y[zz]) * sy).max())
        if np.percentile(smoothed[zz, yy, xx], 90) < PELVIS_CORTEX_HU or behind_mm < PELVIS_BEHIND_CANAL_MM:
            continue
        side = "left" if np.median(lateral_mm[zz, xx]) > 0 else "right"
        pelvis[zz, yy, xx] = True
        for z in np.unique(zz):
            sides.setdefault(int(z), set()).add(side)
    return pelvis, sides


def _as_rib(
    points_mm: np.ndarray,
    lateral_mm: np.ndarray,
    side: str,
    column: SpineColumn,
    trunk_centre_y: np.ndarray,
    discs: list[DiscPlane],
    spacing_zyx: tuple[float, float, float],
) -> Rib | None:
    """The piece of bone (points in mm, z y x) as a rib, or None when it is not one.

    Its medial end is looked for at the back (behind :data:`RIB_FRONT_LIMIT_MM` in front of
    the canal's anterior wall): a rib that reaches round to the sternum comes as close to
    the midline in front as at the spine. A piece with no medial end at the back leaves
    the column in front of the body: a vessel, or the front of a rib, not a rib's head.
    """
    sz, sy, _ = spacing_zyx
    if len(points_mm) * np.prod(spacing_zyx) < 500.0:
        return None
    z_index = np.clip(np.round(points_mm[:, 0] / sz).astype(int), 0, len(column.canal_front_y) - 1)
    at_back = column.canal_front_y[z_index] * sy - points_mm[:, 1] <= RIB_FRONT_LIMIT_MM
    if not at_back.any():
        return None
    medial = int(np.flatnonzero(at_back)[np.argmin(lateral_mm[at_back])])
    if lateral_mm[medial] > RIB_MEDIAL_MM:
        return None
    medial_point = points_mm[medial]
    reach = float(lateral_mm.max())
    forward = float(medial_point[1] - points_mm[:, 1].min())
    if reach < RIB_REACH_MM and not (reach >= FIRST_RIB_REACH_MM and forward >= FIRST_RIB_FORWARD_MM):
        return None  # a transverse process
    near = np.linalg.norm(points_mm - medial_point, axis=1) <= RIB_NEAR_MM
    if near.sum() * np.prod(spacing_zyx) / RIB_NEAR_MM > RIB_MAX_SECTION_MM2:
        return None  # a blob (enhancing kidney, calcified vessel), not a rib
    if near.sum() > 3:
        spread, axes = np.linalg.eigh(np.cov(points_mm[near].T))  # ascending
        if np.sqrt(spread[1] / max(spread[2], 1e-6)) > RIB_MAX_WIDTH_RATIO:
            return None  # not elongated: scattered bright voxels (the rim of an enhancing organ)
        if abs(axes[0, 2]) > RIB_MAX_STEEPNESS:
            return None  # runs head to foot (a kidney, a vessel), not round the trunk
    head = lateral_mm <= lateral_mm[medial] + RIB_HEAD_MM
    position = float(np.median(spine_position(points_mm[head], discs, column, spacing_zyx)))
    tip = int(np.argmin(points_mm[:, 1]))  # the anterior end
    z_tip = int(round(points_mm[tip, 0] / sz))
    front_mm = trunk_centre_y[z_tip] * sy - points_mm[tip, 1]
    return Rib(side, position, reach, float(front_mm))


def spine_position(points_mm: np.ndarray, discs: list[DiscPlane], column: SpineColumn,
                   spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """Position of points (mm, z y x) along the spinal canal, in segment units (see :attr:`Rib.position`).

    Each point is carried to the nearest point of the canal's centre line (the
    costovertebral joints lie beside the canal, at the back of the bodies), and
    placed between the points where the disc planes cross that line: the fraction
    of the way from the upper crossing to the lower one. Measured at the body
    centre instead, a kyphotic or lordotic tilt of the disc planes would move a
    rib's position by half a vertebra. In the first and last segment, where one
    crossing is missing, the distance to the other is divided by the typical period.
    """
    if not discs:
        return np.zeros(len(points_mm))
    spacing = np.asarray(spacing_zyx)
    zs = np.arange(len(column.observed))
    canal = np.stack([zs, column.canal_center_yx[:, 0], column.canal_center_yx[:, 1]], axis=1) * spacing
    crossings = np.array([_crossing(canal, d) for d in discs])  # superior first, z in mm
    order = np.argsort(-crossings)
    crossings = crossings[order]
    period = float(np.median(-np.diff(crossings))) if len(crossings) > 1 else 30.0
    nearest = np.argmin(np.linalg.norm(points_mm[:, None, :] - canal[None, :, :], axis=2), axis=1)
    z = canal[nearest, 0]
    segment = (z < crossings[:, None]).sum(axis=0)  # planes above the point
    fraction = np.empty(len(z))
    for i, k in enumerate(segment):
        if k == 0:
            fraction[i] = 1.0 - (z[i] - crossings[0]) / period
        elif k == len(crossings):
            fraction[i] = (crossings[-1] - z[i]) / period
        else:
            fraction[i] = (crossings[k - 1] - z[i]) / max(crossings[k - 1] - crossings[k], 1e-6)
    return segment + fraction


def _crossing(line_mm: np.ndarray, disc: DiscPlane) -> float:
    """z (mm) where a polyline (z-ordered points) crosses the disc plane (nearest point if it does not)."""
    height = (line_mm - disc.point_mm) @ disc.normal
    signs = np.nonzero(np.diff(np.sign(height)))[0]
    if signs.size == 0:
        return float(line_mm[int(np.argmin(np.abs(height))), 0])
    k = int(signs[np.argmin(np.abs(line_mm[signs, 0] - disc.point_mm[0]))])
    h0, h1 = height[k], height[k + 1]
    t = h0 / (h0 - h1) if h0 != h1 else 0.0
    return float(line_mm[k, 0] + t * (line_mm[k + 1, 0] - line_mm[k, 0]))


def assign_ribs(ribs: list[Rib], n_segments: int) -> tuple[dict[int, set[str]], dict[int, float], dict[int, float]]:
    """Which segment (1..n) each rib belongs to: per segment the sides bearing a rib, the
    longest reach and the farthest front.

    On each side the ribs, ordered from superior, are aligned with the segments in
    order (one rib per vertebra), minimising how far each medial end lies from
    where that rib's medial end is expected in its vertebra
    (:data:`LOWEST_RIB_POSITION`, :data:`RIB_POSITION_STEP`) plus
    :data:`SKIPPED_SEGMENT_COST` per segment skipped inside the sequence.
    """
    sides: dict[int, set[str]] = {}
    reach: dict[int, float] = {}
    front: dict[int, float] = {}
    for side in ("left", "right"):
        sequence = _one_per_rib(sorted((r for r in ribs if r.side == side), key=lambda r: r.position))
        for rib, segment in zip(sequence, _align(sequence, n_segments), strict=True):
            sides.setdefault(segment, set()).add(side)
            reach[segment] = max(reach.get(segment, 0.0), rib.reach_mm)
            front[segment] = max(front.get(segment, -np.inf), rib.front_mm)
    return sides, reach, front


def _one_per_rib(sequence: list[Rib]) -> list[Rib]:
    """Drop the shorter of two pieces that are one rib (:data:`SAME_RIB`)."""
    kept: list[Rib] = []
    for rib in sequence:
        if kept and rib.position - kept[-1].position < SAME_RIB:
            if rib.reach_mm > kept[-1].reach_mm:
                kept[-1] = rib
            continue
        kept.append(rib)
    return kept


def _misfit(position: float, expected: float) -> float:
    return max(0.0, abs(position - expected) - POSITION_TOLERANCE)


def _align(sequence: list[Rib], n_segments: int) -> list[int]:
    """Segments (1-based, strictly increasing) for ribs ordered from superior: dynamic programming."""
    m = len(sequence)
    if m == 0:
        return []
    n = max(n_segments, m)
    expected = [max(LOWEST_RIB_POSITION - RIB_POSITION_STEP * (m - 1 - i), 0.0) for i in range(m)]
    cost = np.full((m, n), np.inf)
    back = np.zeros((m, n), dtype=int)
    for s in range(n):
        cost[0, s] = _misfit(sequence[0].position, s + expected[0])
    for i in range(1, m):
        for s in range(i, n):
            options = cost[i - 1, :s] + SKIPPED_SEGMENT_COST * (s - 1 - np.arange(s))
            back[i, s] = int(np.argmin(options))
            cost[i, s] = options[back[i, s]] + _misfit(sequence[i].position, s + expected[i])
    segments = [int(np.argmin(cost[m - 1]))]
    for i in range(m - 1, 0, -1):
        segments.append(int(back[i, segments[-1]]))
    return [s + 1 for s in reversed(segments)]


def _trunk_centre_y(smoothed: np.ndarray) -> np.ndarray:
    """Per slice, the antero-posterior centre (row) of the trunk: the soft tissue above
    :data:`TRUNK_HU`, largest piece (the table and arms are left out)."""
    centres = np.full(smoothed.shape[0], smoothed.shape[1] / 2.0)
    for z in range(smoothed.shape[0]):
        components, count = ndi.label(smoothed[z] > TRUNK_HU)
        if count == 0:
            continue
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        rows = np.nonzero(components == int(np.argmax(sizes)))[0]
        centres[z] = 0.5 * (rows.min() + rows.max())
    return centres
