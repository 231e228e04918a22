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

RIB_REACH_MM = 75.0
"""A rib reaches at least this far from the canal laterally; a transverse process does not ..."""

FIRST_RIB_REACH_MM = 45.0
FIRST_RIB_FORWARD_MM = 40.0
"""... or, like the short first rib, at least 45 mm while curving at least 40 mm forwards
(a transverse process, C7's included, points sideways or backwards)."""

RIB_NEAR_MM = 50.0
RIB_MAX_SECTION_MM2 = 300.0
"""A rib is slender: within 50 mm of its medial end its volume per length stays below this
(only the part near the spine counts: a first rib can be joined to the clavicle and the
sternum in front)."""

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
    components, _ = ndi.label((smoothed > BONE_HU) & (np.abs(lateral_mm)[:, None, :] >= RIB_CUT_MM))

    ribs: list[Rib] = []
    pelvis_sides_by_slice: dict[int, set[str]] = {}
    for label, box in enumerate(ndi.find_objects(components), start=1):
        if box is None:
            continue
        mask = components[box] == label
        volume = mask.sum() * voxel_ml
        zz, yy, xx = np.nonzero(mask)
        zz, yy, xx = zz + box[0].start, yy + box[1].start, xx + box[2].start
        lat = lateral_mm[zz, xx]
        side = "left" if np.median(lat) > 0 else "right"
        if volume >= PELVIS_MIN_ML:
            behind_mm = float(((yy - canal_y[zz]) * sy).max())
            if np.percentile(smoothed[zz, yy, xx], 90) >= PELVIS_CORTEX_HU and behind_mm >= PELVIS_BEHIND_CANAL_MM:
                for z in np.unique(zz):
                    pelvis_sides_by_slice.setdefault(int(z), set()).add(side)
            continue
        points_mm = np.stack([zz * sz, yy * sy, xx * sx], axis=1)
        rib = _as_rib(points_mm, np.abs(lat), side, column, trunk_centre_y, discs, spacing_zyx)
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
                cut_by_edge=bool(zs.min() == 0 or zs.max() == n - 1),
                body_ml=round(float((bodies == k).sum()) * voxel_ml, 2),
            )
        )
    return evidence


def _as_rib(
    points_mm: np.ndarray,
    lateral_mm: np.ndarray,
    side: str,
    column: SpineColumn,
    trunk_centre_y: np.ndarray,
    discs: list[DiscPlane],
    spacing_zyx: tuple[float, float, float],
) -> Rib | None:
    """The piece of bone (points in mm, z y x) as a rib, or None when it is not one."""
    sz, sy, _ = spacing_zyx
    medial = int(np.argmin(lateral_mm))
    if lateral_mm[medial] > RIB_MEDIAL_MM or len(points_mm) * np.prod(spacing_zyx) < 500.0:
        return None
    medial_point = points_mm[medial]
    z_medial = int(round(medial_point[0] / sz))
    if column.canal_front_y[z_medial] * sy - medial_point[1] > RIB_FRONT_LIMIT_MM:
        return None  # leaves the column in front of the body: a vessel, not a rib
    reach = float(lateral_mm.max())
    forward = float(medial_point[1] - points_mm[:, 1].min())
    if reach < RIB_REACH_MM and not (reach >= FIRST_RIB_REACH_MM and forward >= FIRST_RIB_FORWARD_MM):
        return None  # a transverse process
    near = np.linalg.norm(points_mm - medial_point, axis=1) <= RIB_NEAR_MM
    if near.sum() * np.prod(spacing_zyx) / RIB_NEAR_MM > RIB_MAX_SECTION_MM2:
        return None  # a blob (enhancing kidney, calcified vessel), not a rib
    head = lateral_mm <= lateral_mm[medial] + RIB_HEAD_MM
    position = float(np.median(spine_position(points_mm[head], discs)))
    tip = int(np.argmin(points_mm[:, 1]))  # the anterior end
    z_tip = int(round(points_mm[tip, 0] / sz))
    front_mm = trunk_centre_y[z_tip] * sy - points_mm[tip, 1]
    return Rib(side, position, reach, float(front_mm))


def spine_position(points_mm: np.ndarray, discs: list[DiscPlane]) -> np.ndarray:
    """Position of points (mm, z y x) along the spine in segment units (see :attr:`Rib.position`).

    Between two disc planes the position is the fraction of the way from the
    upper to the lower one; in the first and last segment, where one plane is
    missing, the distance to the other is divided by the typical vertebra period.
    """
    if not discs:
        return np.zeros(len(points_mm))
    heights = np.stack([(points_mm - d.point_mm) @ d.normal for d in discs], axis=1)  # + above
    below = heights < 0
    segment = below.sum(axis=1)  # 0-based: number of planes above the point
    period = float(np.median(np.linalg.norm(np.diff([d.point_mm for d in discs], axis=0), axis=1))) \
        if len(discs) > 1 else 30.0
    fraction = np.empty(len(points_mm))
    for i, k in enumerate(segment):
        if k == 0:
            fraction[i] = 1.0 - heights[i, 0] / period
        elif k == len(discs):
            fraction[i] = -heights[i, k - 1] / period
        else:
            above, under = -heights[i, k - 1], heights[i, k]
            fraction[i] = above / max(above + under, 1e-6)
    return segment + fraction


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
