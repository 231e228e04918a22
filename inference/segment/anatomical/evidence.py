"""Anatomical evidence for level identification, measured per vertebra segment.

- Ribs: slender bone outside the column that starts next to a vertebra
  (medial end within :data:`RIB_MEDIAL_MM` of the canal) and reaches far
  laterally (:data:`RIB_REACH_MM`); it is assigned to the vertebra segment
  holding most of its medial end, where the rib head and tubercle articulate
  (costovertebral joints).
  Lumbar transverse processes stay within the column margin and do not reach.
  How far round the flank a rib goes is measured at its anterior end, in front
  of (or behind) the trunk's mid-coronal plane: an 11th rib reaches round the
  flank, a 12th rib ends in the posterior abdominal wall.
- Sacrum: the most inferior segment, below the last disc, flanked on both
  sides by the iliac bones (large bone plates lateral to it) in most of its
  slices. Only the most inferior segment can be the sacrum: L5 is often
  flanked by the iliac crests too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from inference.segment.anatomical.column import BONE_HU, SpineColumn
from inference.segment.levels import VertebraEvidence

RIB_MEDIAL_MM = 65.0
"""A rib's medial end lies this close to the spinal canal, laterally. The head and neck
may already belong to the vertebra's mask (within its 55 mm half width), so what is
left of the rib can start a little beyond that."""

RIB_HEAD_MM = 15.0
"""Length of the medial end of a rib that decides which vertebra it belongs to."""

RIB_REACH_MM = 75.0
"""A rib reaches at least this far from the canal laterally; a transverse process does not."""

RIB_MAX_SECTION_MM2 = 300.0
"""A rib is slender: its volume per length of its bounding box stays below this."""

PELVIS_MIN_ML = 60.0
"""Lateral bone larger than this is pelvis (iliac bone), not rib."""

SACRUM_FLANKED_FRACTION = 0.6
"""Share of a segment's body slices with iliac bone on both sides for it to be sacrum-like."""

TRUNK_HU = -300.0
"""Soft tissue and bone of the trunk lie above this (air and lung below)."""

SPINE_MARGIN_MM = 14.0
"""Bone within this lateral distance of the canal is column (body, arch), never rib or pelvis."""


@dataclass
class _Rib:
    side: str
    votes: np.ndarray
    """Per segment number, how many voxels of the rib's medial end lie in it."""
    z_range: tuple[int, int]
    reach_mm: float
    front_mm: float
    """How far in front of the trunk's mid-coronal plane the rib ends (negative: behind it)."""


def _paired_votes(ribs: list[_Rib]) -> list[_Rib]:
    """Ribs with the votes of their contralateral partner added.

    The two ribs of a pair articulate with the same vertebra; near a disc plane
    their medial ends can fall on either side of it, so the pair decides
    together (partner: the other side's rib overlapping most in z).
    """
    paired = []
    for rib in ribs:
        votes = rib.votes.copy()
        partners = [o for o in ribs if o.side != rib.side and _overlap(o.z_range, rib.z_range) >= 0.5]
        if partners:
            votes = votes + max(partners, key=lambda o: _overlap(o.z_range, rib.z_range)).votes
        paired.append(_Rib(rib.side, votes, rib.z_range, rib.reach_mm, rib.front_mm))
    return paired


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Share of the shorter z range covered by the other."""
    common = min(a[1], b[1]) - max(a[0], b[0]) + 1
    return max(common, 0) / max(min(a[1] - a[0], b[1] - b[0]) + 1, 1)


def measure_evidence(
    smoothed: np.ndarray,
    bodies: np.ndarray,
    vertebrae: np.ndarray,
    segment_index: np.ndarray,
    column: SpineColumn,
    spacing_zyx: tuple[float, float, float],
) -> list[VertebraEvidence]:
    """Evidence for every vertebra segment (numbered 1..K from superior), superior first."""
    sz, sy, sx = spacing_zyx
    voxel_ml = sz * sy * sx / 1000.0
    n, _, nx = smoothed.shape
    canal_x = column.canal_center_yx[:, 1]
    lateral_mm = (np.arange(nx)[None, :] - canal_x[:, None]) * sx  # (z, x), signed: + = patient left

    trunk_centre_y = _trunk_centre_y(smoothed)
    outside = (smoothed > BONE_HU) & (vertebrae == 0) & (np.abs(lateral_mm)[:, None, :] > SPINE_MARGIN_MM)
    components, count = ndi.label(outside)
    ribs: dict[int, set[str]] = {}
    reach: dict[int, float] = {}
    front: dict[int, float] = {}
    pelvis_sides_by_slice: dict[int, set[str]] = {}
    candidates: list[_Rib] = []
    for label, box in enumerate(ndi.find_objects(components), start=1):
        if box is None:
            continue
        mask = components[box] == label
        volume = mask.sum() * voxel_ml
        zz, yy, xx = np.nonzero(mask)
        zz, yy, xx = zz + box[0].start, yy + box[1].start, xx + box[2].start
        lat = lateral_mm[zz, xx]
        distance = np.abs(lat)
        side = "left" if np.median(lat) > 0 else "right"
        if volume >= PELVIS_MIN_ML:
            for z in np.unique(zz):
                pelvis_sides_by_slice.setdefault(int(z), set()).add(side)
            continue
        medial = int(np.argmin(distance))
        if distance[medial] > RIB_MEDIAL_MM or distance.max() < RIB_REACH_MM or volume < 0.5:
            continue
        length_mm = float(np.linalg.norm((np.ptp(zz) * sz, np.ptp(yy) * sy, np.ptp(xx) * sx)))
        if volume * 1000.0 / max(length_mm, 1.0) > RIB_MAX_SECTION_MM2:
            continue  # a blob (enhancing kidney, calcified vessel), not a rib
        head = distance <= distance[medial] + RIB_HEAD_MM
        votes = np.bincount(segment_index[zz[head], yy[head], xx[head]], minlength=int(segment_index.max()) + 1)
        tip = int(np.argmin(yy))  # the anterior end
        front_mm = (trunk_centre_y[zz[tip]] - yy[tip]) * sy
        candidates.append(_Rib(side, votes, (int(zz.min()), int(zz.max())), float(distance.max()), float(front_mm)))

    for rib in _paired_votes(candidates):
        segment = int(rib.votes.argmax())
        if segment:
            ribs.setdefault(segment, set()).add(rib.side)
            reach[segment] = max(reach.get(segment, 0.0), rib.reach_mm)
            front[segment] = max(front.get(segment, -np.inf), rib.front_mm)

    segments = [int(k) for k in np.unique(bodies) if k]
    evidence = []
    lowest = max(segments, default=0)
    for k in segments:
        body = bodies == k
        zs = np.nonzero(body.any(axis=(1, 2)))[0]
        flanked = [len(pelvis_sides_by_slice.get(int(z), ())) == 2 for z in zs]
        evidence.append(
            VertebraEvidence(
                index=k,
                rib_sides=frozenset(ribs.get(k, set())),
                rib_reach_mm=round(reach.get(k, 0.0), 1),
                rib_front_mm=round(front[k], 1) if k in front else None,
                sacrum_like=bool(k == lowest and flanked and float(np.mean(flanked)) >= SACRUM_FLANKED_FRACTION),
                cut_by_edge=bool(zs.min() == 0 or zs.max() == n - 1),
                body_ml=round(float(body.sum()) * voxel_ml, 2),
            )
        )
    return evidence



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
