"""Which vertebra is which: level identification from anatomical evidence, and level description.

Identification (:func:`identify_levels`) works on the vertebrae a backend
separated, ordered from superior to inferior, and three kinds of evidence that
radiologists use at the thoracolumbar junction:

- ribs: T12 is the lowest rib-bearing vertebra in the usual spine with 12 rib
  pairs; lumbar vertebrae carry none;
- the sacrum, when in view: the vertebra above it is L5;
- rib length: the 12th rib is short and ends behind the mid-axillary line, the
  11th reaches round the flank; the lowest two rib pairs must look like that.

Body sizes, which grow steadily caudally, check the separation the count
rests on (a missed disc or a vertebra cut in two shifts every level).

Each gives a labelling; when both are present they must agree (the lowest
rib-bearing vertebra lies six segments above the sacrum). When they disagree,
the spine has a numbering variant - 11 or 13 rib pairs, a lumbar rib, a
lumbosacral transitional vertebra - that image evidence at the junction cannot
resolve; the sacrum count is kept for the lumbar levels (it is the convention of
lumbar-spine reporting) and the study is marked for review with the reason; so it
is when the rib lengths or body sizes contradict the labelling.
With one kind of evidence the labelling is kept at a lower confidence; with
none, no level is named (a wrong level poisons every number downstream).
Counting is well known to fail in transitional anatomy (Carrino et al.,
Radiology 2011;259:196; Hughes & Saifuddin, AJR 2006;187:W59), hence the flags.

Description (:func:`describe_levels`): a level is *complete* when its vertebral body lies wholly inside the field of
view: a body whose labels reach a face of the volume is cut by the scan edge and
its density or height would be wrong, so it is reported incomplete with the side
it is cut on (e.g. "vertebral body cut by the superior edge of the field of view").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from inference.levels import LEVEL_NAMES, TARGET_LEVELS
from inference.results import LevelSegmentation

SPINE_SEQUENCE: tuple[str, ...] = (
    *(f"C{i}" for i in range(1, 8)), *(f"T{i}" for i in range(1, 13)), *(f"L{i}" for i in range(1, 6)), "S",
)
"""The usual spine, head to sacrum (12 thoracic, 5 lumbar)."""

CONFIDENCE_AGREEING = 0.95
CONFIDENCE_SACRUM_ONLY = 0.85
CONFIDENCE_RIBS_ONLY = 0.75
CONFIDENCE_CONFLICT = 0.5
FLOATING_RIB_FRONT_MM = 10.0
"""A 12th rib ends behind this distance in front of the trunk's mid-coronal plane (about the
mid-axillary line); an 11th rib ends beyond it (see :func:`_rib_length_warnings`)."""
COUNTED_ACROSS = frozenset({"T11", "T12", "L1", "L2", "L3", "L4", "L5"})
"""Levels the count of the target levels T11-L2 runs across, from T12 or from the sacrum."""
MERGED_BODY_RATIO = 1.5
"""A body larger than this times both neighbours is two vertebrae (see :func:`_body_size_warnings`)."""
SPLIT_BODY_RATIO = 0.65
"""Two adjacent bodies both smaller than this times their neighbours are one vertebra cut in two."""
SHORT_RIB_MM = 70.0
"""A lowest rib whose lateral reach from the canal is below this is short: a possible
lumbar rib or hypoplastic 12th rib (a 12th rib usually reaches well beyond)."""


@dataclass(frozen=True)
class VertebraEvidence:
    """What a backend saw at one separated vertebra (segment), numbered from superior."""

    index: int
    """Segment number, 1 = most superior."""
    rib_sides: frozenset[str] = frozenset()
    """``"left"``/``"right"`` where a rib articulates with this vertebra."""
    rib_reach_mm: float = 0.0
    """How far laterally from the canal its ribs reach (longest)."""
    rib_front_mm: float | None = None
    """How far in front of the trunk's mid-coronal plane its ribs end (longest; negative: behind
    it); None where not measured."""
    sacrum_like: bool = False
    """The segment is the sacrum (most inferior, flanked by the iliac bones)."""
    cut_by_edge: bool = False
    """The body reaches the first or last slice: part of it (and of its ribs) is out of view."""
    body_ml: float | None = None
    """Volume of the vertebral body; None where not measured."""


@dataclass
class LevelAssignment:
    """Result of :func:`identify_levels`."""

    names: dict[int, str]
    """Segment number -> level name (only segments that could be named)."""
    confidence: float
    needs_review: bool
    warnings: list[str] = field(default_factory=list)
    evidence: str = ""
    """Which evidence the labels rest on: ``ribs+sacrum``, ``sacrum``, ``ribs`` or ``none``."""


def identify_levels(segments: list[VertebraEvidence]) -> LevelAssignment:
    """Name the segments (superior first) from rib, sacrum and body-size evidence; see the module notes."""
    order = sorted(segments, key=lambda e: e.index)
    assignment = _count_levels(order)
    size_warnings = _body_size_warnings(order, assignment.names)
    if size_warnings:
        assignment.warnings.extend(size_warnings)
        assignment.needs_review = True
        assignment.confidence = min(assignment.confidence, CONFIDENCE_CONFLICT)
    return assignment


def _count_levels(order: list[VertebraEvidence]) -> LevelAssignment:
    """Count the levels from the lowest rib-bearing vertebra and the sacrum."""
    position = {e.index: i for i, e in enumerate(order)}
    warnings: list[str] = []
    sacrum = next((e for e in reversed(order) if e.sacrum_like), None)
    ribbed = [e for e in order if e.rib_sides and not e.sacrum_like]
    lowest_ribbed = ribbed[-1] if ribbed else None

    from_sacrum = _count_from(order, position[sacrum.index], "S") if sacrum else None
    if lowest_ribbed is not None and not _rib_free_below(order, position[lowest_ribbed.index]):
        warnings.append(
            "rib evidence inconclusive: no rib-free vertebra wholly in view below the lowest rib-bearing one"
        )
        lowest_ribbed = None
    from_ribs = _count_from(order, position[lowest_ribbed.index], "T12") if lowest_ribbed else None

    if lowest_ribbed is not None:
        if len(lowest_ribbed.rib_sides) == 1:
            warnings.append(
                f"the lowest rib-bearing vertebra has a rib on the {next(iter(lowest_ribbed.rib_sides))} side only"
            )
        elif lowest_ribbed.rib_reach_mm < SHORT_RIB_MM:
            warnings.append("the lowest rib pair is short: possible lumbar rib or hypoplastic 12th rib")
        warnings.extend(_rib_length_warnings(order, position[lowest_ribbed.index]))

    if from_sacrum and from_ribs:
        gap = position[sacrum.index] - position[lowest_ribbed.index]
        if gap == 6 and not warnings:
            return LevelAssignment(from_sacrum, CONFIDENCE_AGREEING, False, warnings, "ribs+sacrum")
        if gap != 6:
            lumbar = gap - 1
            warnings.append(
                f"rib and sacrum evidence disagree: {lumbar} rib-free vertebra{'e' if lumbar != 1 else ''} above the "
                "sacrum instead of 5 (11 or 13 rib pairs, a lumbar rib or a lumbosacral transitional vertebra); "
                "levels counted from the sacrum"
            )
        return LevelAssignment(from_sacrum, CONFIDENCE_CONFLICT, True, warnings, "ribs+sacrum")
    if from_sacrum:
        warnings.append("no ribs seen: levels counted from the sacrum only")
        return LevelAssignment(from_sacrum, CONFIDENCE_SACRUM_ONLY, False, warnings, "sacrum")
    if from_ribs:
        review = bool(warnings)
        warnings.append(
            "sacrum not in view: levels counted from the lowest rib-bearing vertebra only "
            "(a spine with 11 or 13 rib pairs would be mislabelled)"
        )
        confidence = CONFIDENCE_CONFLICT if review else CONFIDENCE_RIBS_ONLY
        return LevelAssignment(from_ribs, confidence, review, warnings, "ribs")
    if not order:
        return LevelAssignment({}, 0.0, False, ["no vertebra found"], "none")
    warnings.append("no ribs and no sacrum in view: vertebral levels cannot be identified")
    return LevelAssignment({}, 0.0, True, warnings, "none")


def _rib_length_warnings(order: list[VertebraEvidence], lowest: int) -> list[str]:
    """Warnings where the length of the two lowest rib pairs contradicts T12 for the lowest.

    The 11th and 12th ribs are floating ribs of different length: the 11th
    reaches round the flank to about the mid-axillary line, the 12th ends in
    the posterior abdominal wall (Gray's Anatomy, thoracic wall). So the
    lowest pair should end behind :data:`FLOATING_RIB_FRONT_MM` and the pair
    above it beyond. A long lowest pair suggests 11 rib pairs (the 12th
    vertebra is then counted as L1); two short pairs suggest 13 rib pairs or a
    lumbar rib, which the sacrum count alone does not reveal (5 rib-free
    lumbar vertebrae above it either way).
    """
    warnings = []
    front = order[lowest].rib_front_mm
    if front is not None and front > FLOATING_RIB_FRONT_MM:
        warnings.append(
            "the lowest rib pair reaches round the flank like an 11th rib (a 12th rib ends behind the "
            "mid-axillary line): possible 11 rib pairs"
        )
    above = order[lowest - 1] if lowest > 0 else None
    if (
        above is not None and above.rib_sides and not above.cut_by_edge
        and above.rib_front_mm is not None and above.rib_front_mm <= FLOATING_RIB_FRONT_MM
    ):
        warnings.append(
            "the two lowest rib pairs are both short like a 12th rib: possible 13 rib pairs or a lumbar rib"
        )
    return warnings


def _body_size_warnings(order: list[VertebraEvidence], names: Mapping[int, str]) -> list[str]:
    """Warnings where the body sizes contradict the separation the count rests on.

    Vertebral bodies grow slowly and steadily from one level to the next
    (a few per cent in volume at the thoracolumbar junction), so a body far
    larger than both its neighbours is two vertebrae left unseparated (a missed
    disc), and two adjacent bodies far smaller than theirs are one vertebra cut
    in two; either shifts every level counted across it. A fracture makes one
    body smaller, never larger, and leaves its neighbours alone. Only bodies
    named T11-L5 are checked: the levels are counted across these (from the
    lowest rib or the sacrum); a separation error higher up shifts no target level.
    """
    counted = {e.index for e in order if names.get(e.index) in COUNTED_ACROSS}
    measured = [e for e in order if e.body_ml and not e.cut_by_edge and not e.sacrum_like]
    warnings = []
    for above, body, below in zip(measured, measured[1:], measured[2:]):
        if body.index not in counted or body.index - above.index != 1 or below.index - body.index != 1:
            continue
        if body.body_ml > MERGED_BODY_RATIO * max(above.body_ml, below.body_ml):
            warnings.append(
                f"the body labelled {names[body.index]} is as large as two: possible missed disc, "
                "levels may be shifted"
            )
    for before, first, second, after in zip(measured, measured[1:], measured[2:], measured[3:]):
        if after.index - before.index != 3 or not {first.index, second.index} & counted:
            continue
        neighbours = min(before.body_ml, after.body_ml)
        if max(first.body_ml, second.body_ml) < SPLIT_BODY_RATIO * neighbours:
            warnings.append(
                f"the bodies labelled {names.get(first.index, '?')} and {names.get(second.index, '?')} are both "
                "far smaller than their neighbours: possibly one vertebra cut in two, levels may be shifted"
            )
    return warnings


def _rib_free_below(order: list[VertebraEvidence], position: int) -> bool:
    """T12 is the *lowest* rib-bearing vertebra only if the one below is seen whole, without ribs."""
    below = order[position + 1: position + 2]
    return bool(below) and not below[0].cut_by_edge and not below[0].rib_sides


def _count_from(order: list[VertebraEvidence], anchor: int, anchor_name: str) -> dict[int, str]:
    """Name every segment by counting from ``order[anchor]`` = ``anchor_name`` along the usual spine."""
    base = SPINE_SEQUENCE.index(anchor_name)
    names = {}
    for i, evidence in enumerate(order):
        k = base + (i - anchor)
        if 0 <= k < len(SPINE_SEQUENCE):
            names[evidence.index] = SPINE_SEQUENCE[k]
    return names

_LPS_SIDES = (("right", "left"), ("anterior", "posterior"), ("inferior", "superior"))
"""Names of the low and high end of each LPS axis."""


@dataclass
class LevelDescription:
    """Per-level description of a labelling."""

    levels: dict[str, LevelSegmentation]
    """Every labelled level, in cranio-caudal (VerSe id) order."""
    not_in_view: list[str] = field(default_factory=list)
    """Target levels (T11-L2) not found at all."""
    warnings: list[str] = field(default_factory=list)


def describe_levels(
    vertebrae: sitk.Image,
    bodies: sitk.Image,
    *,
    level_confidence: Mapping[int, float] | None = None,
    default_confidence: float = 1.0,
) -> LevelDescription:
    """Describe every level labelled in ``vertebrae`` (VerSe ids) with its body in ``bodies``.

    Args:
        vertebrae: whole-vertebra labels on the input grid.
        bodies: vertebral-body labels (same ids) on the input grid.
        level_confidence: per VerSe id labelling confidence from the backend.
        default_confidence: confidence of ids not in ``level_confidence``.
    """
    level_confidence = level_confidence or {}
    vertebra_stats = sitk.LabelShapeStatisticsImageFilter()
    vertebra_stats.Execute(sitk.Cast(vertebrae, sitk.sitkUInt8))
    body_stats = sitk.LabelShapeStatisticsImageFilter()
    body_stats.Execute(sitk.Cast(bodies, sitk.sitkUInt8))
    body_ids = set(body_stats.GetLabels())

    levels: dict[str, LevelSegmentation] = {}
    for label in sorted(vertebra_stats.GetLabels()):
        name = LEVEL_NAMES.get(int(label))
        if name is None:
            continue
        if label in body_ids:
            centroid = body_stats.GetCentroid(label)
            cut_sides = _cut_sides(bodies, body_stats.GetBoundingBox(label))
            reason = f"vertebral body cut by the {' and '.join(cut_sides)} edge of the field of view" if cut_sides else ""
        else:
            centroid = vertebra_stats.GetCentroid(label)
            cut_sides = ["unknown"]
            reason = "no vertebral body found for this vertebra"
        levels[name] = LevelSegmentation(
            name=name,
            verse_id=int(label),
            complete=not cut_sides,
            voxels=int(vertebra_stats.GetNumberOfPixels(label)),
            centroid_lps=tuple(round(float(c), 2) for c in centroid),
            confidence=round(float(level_confidence.get(int(label), default_confidence)), 3),
            reason=reason,
        )

    not_in_view = [name for name in TARGET_LEVELS if name not in levels]
    warnings = []
    if len(not_in_view) == len(TARGET_LEVELS):
        warnings.append("levels not in view: none of T11-L2 is in the field of view")
    elif not_in_view:
        warnings.append(f"levels not in view: {', '.join(not_in_view)}")
    return LevelDescription(levels=levels, not_in_view=not_in_view, warnings=warnings)


def _cut_sides(image: sitk.Image, bounding_box: tuple[int, ...]) -> list[str]:
    """Anatomical sides (LPS names) on which a bounding box reaches the edge of the image."""
    size = image.GetSize()
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    sides = []
    for axis in range(3):
        start, extent = bounding_box[axis], bounding_box[axis + 3]
        column = direction[:, axis]
        lps_axis = int(np.argmax(np.abs(column)))
        low_name, high_name = _LPS_SIDES[lps_axis]
        if column[lps_axis] < 0:
            low_name, high_name = high_name, low_name
        if start == 0:
            sides.append(low_name)
        if start + extent >= size[axis]:
            sides.append(high_name)
    return sides
