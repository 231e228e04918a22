"""Which vertebra is which: level identification from every anatomical anchor in view.

Identification (:func:`identify_levels`) works on the vertebrae a backend
separated, ordered from superior to inferior, and on the landmarks
radiologists count from. Each landmark that is in view is an *anchor*: it
names one vertebra, and the others are counted from it along the usual spine
(7 cervical, 12 thoracic, 5 lumbar vertebrae, sacrum):

- ``first_rib``: the first rib pair articulates with T1; C7 carries none. The
  highest rib-bearing vertebra is T1 when a rib-free vertebra is seen whole
  above it.
- ``lowest_rib``: the lowest rib-bearing vertebra is T12 when a rib-free
  vertebra is seen whole below it.
- ``sacrum``: the vertebra above the sacrum is L5.
- ``given``: a level the user states for the most caudal vertebra wholly in
  view (a crop without ribs or sacrum, e.g. ``scpnode segment --lowest-level L3``).

Where two or more anchors are in view they must agree. Where they do not, the
spine has a numbering variant (11 or 13 rib pairs, a lumbar rib, a
lumbosacral transitional vertebra) or the separation into vertebrae is wrong
(a missed disc); image evidence cannot tell which, so the labels are counted
from the anchors that agree best (the user's word first, then the majority,
then the sacrum - the convention of lumbar-spine reporting -, the lowest rib,
the first rib), the disagreement is named, and the study is marked for
review - never shown as a confident count. With one anchor the
labels are kept at a lower confidence, and a count resting on ribs alone is
marked for review: rib evidence is what fails in practice (hypoplastic 12th
ribs, 11 or 13 pairs in about 5-8 % of people), and there is nothing to check it.
Counting is well known to fail in transitional anatomy (Carrino et al.,
Radiology 2011;259:196; Hughes & Saifuddin, AJR 2006;187:W59), hence the flags.

Further checks mark the study for review when they contradict the count:
rib length (the 12th rib is short and ends behind the mid-axillary line, the
11th reaches round the flank), a rib on one side only, a gap in the rib
sequence, and body sizes (which grow steadily caudally; a body as large as two
is a missed disc, two half-size ones a vertebra cut in two).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from inference.results import LevelAnchor

SPINE_SEQUENCE: tuple[str, ...] = (
    *(f"C{i}" for i in range(1, 8)), *(f"T{i}" for i in range(1, 13)), *(f"L{i}" for i in range(1, 6)), "S",
)
"""The usual spine, head to sacrum (12 thoracic, 5 lumbar)."""

ANCHOR_LEVELS: dict[str, str] = {"first_rib": "T1", "lowest_rib": "T12", "sacrum": "S"}
ANCHOR_NAMES: dict[str, str] = {
    "first_rib": "the first rib pair (T1)",
    "lowest_rib": "the lowest rib pair (T12)",
    "sacrum": "the sacrum",
    "given": "the level given by the user",
}
PREFERENCE = ("given", "sacrum", "lowest_rib", "first_rib")
"""Whose count is kept when anchors disagree and no majority decides."""

CONFIDENCE_AGREEING = 0.95
CONFIDENCE_GIVEN = 0.9
CONFIDENCE_SINGLE: dict[str, float] = {"sacrum": 0.85, "lowest_rib": 0.75, "first_rib": 0.6}
CONFIDENCE_CONFLICT = 0.5
SINGLE_ANCHOR_NEEDS_REVIEW = frozenset({"lowest_rib", "first_rib"})
"""A count resting on ribs alone is marked for review (see the module notes)."""

FLOATING_RIB_FRONT_MM = 10.0
"""A 12th rib ends behind this distance in front of the trunk's mid-coronal plane (about the
mid-axillary line); an 11th rib ends beyond it (see :func:`_rib_length_warnings`)."""
SIMILAR_RIB_REACH = 0.85
"""Two short lowest rib pairs suggest 13 pairs only when the lower reaches as far as this share
of the upper: a 12th rib is clearly shorter than an 11th, even where both end behind the
mid-axillary line."""
SHORT_RIB_MM = 70.0
"""A lowest rib whose lateral reach from the canal is below this is short: a possible
lumbar rib or hypoplastic 12th rib (a 12th rib usually reaches well beyond)."""
COUNTED_ACROSS = frozenset({"T11", "T12", "L1", "L2", "L3", "L4", "L5"})
"""Levels the count of the target levels T11-L2 runs across, from T12 or from the sacrum."""
MERGED_BODY_RATIO = 1.5
"""A body larger than this times both neighbours is two vertebrae (see :func:`_body_size_warnings`)."""
SPLIT_BODY_RATIO = 0.65
"""Two adjacent bodies both smaller than this times their neighbours are one vertebra cut in two."""


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
    anchors: list[LevelAnchor] = field(default_factory=list)
    """Every anchor in view, and whether it agrees with the names given."""
    level_anchors: dict[int, tuple[str, ...]] = field(default_factory=dict)
    """Segment number -> kinds of the agreeing anchors its name rests on."""

    @property
    def evidence(self) -> str:
        """The agreeing anchors joined by ``+`` (``"lowest_rib+sacrum"``), or ``"none"``."""
        return "+".join(a.kind for a in self.anchors if a.agrees) or "none"


@dataclass(frozen=True)
class _Found:
    kind: str
    position: int
    """Index in the superior-first order of segments."""
    level: str


def identify_levels(segments: list[VertebraEvidence], *, lowest_level: str | None = None) -> LevelAssignment:
    """Name the segments (superior first) from every anchor in view; see the module notes.

    Args:
        segments: evidence per separated vertebra.
        lowest_level: the level of the most inferior segment wholly in view (not cut by
            the edge of the field of view), when the user states it.

    Raises:
        ValueError: ``lowest_level`` is not a level of the usual spine.
    """
    if lowest_level is not None and lowest_level not in SPINE_SEQUENCE:
        raise ValueError(f"unknown level {lowest_level!r}; use one of {', '.join(SPINE_SEQUENCE)}")
    order = sorted(segments, key=lambda e: e.index)
    if not order:
        return LevelAssignment({}, 0.0, False, ["no vertebra found"])
    found, warnings, notes = _find_anchors(order, lowest_level)
    if not found:
        warnings.append("no anchor in view (first or lowest rib pair, sacrum): vertebral levels cannot be identified")
        return LevelAssignment({}, 0.0, True, warnings + notes)

    chosen, others = _agreeing(found)
    names = _count_from(order, chosen[0].position, chosen[0].level)
    anchors = [LevelAnchor(f.kind, f.level, f in chosen, _describe(f, order)) for f in found]
    level_anchors = {e.index: tuple(f.kind for f in chosen) for e in order if e.index in names}
    review = bool(warnings)
    if others:
        review = True
        warnings.extend(_disagreement(chosen, others, order))
    kinds = {f.kind for f in chosen}
    if "given" in kinds:
        confidence = CONFIDENCE_GIVEN
    elif len(chosen) >= 2:
        confidence = CONFIDENCE_AGREEING
    else:
        kind = chosen[0].kind
        confidence = CONFIDENCE_SINGLE[kind]
        review = review or kind in SINGLE_ANCHOR_NEEDS_REVIEW
        if not others:
            warnings.append(_single_anchor_note(kind))
    size_warnings = _body_size_warnings(order, names)
    warnings.extend(size_warnings)
    review = review or bool(size_warnings)
    if review:
        confidence = min(confidence, CONFIDENCE_CONFLICT)
    return LevelAssignment(names, confidence, review, warnings + notes, anchors, level_anchors)


def _find_anchors(order: list[VertebraEvidence], lowest_level: str | None) -> tuple[list[_Found], list[str], list[str]]:
    """Every anchor in view; warnings that put the rib anchors in doubt (these mark the study
    for review); notes that do not (a rib missed inside the sequence shifts no count)."""
    found: list[_Found] = []
    warnings: list[str] = []
    notes: list[str] = []
    if lowest_level is not None:
        whole = [i for i, e in enumerate(order) if not e.cut_by_edge]
        found.append(_Found("given", whole[-1] if whole else len(order) - 1, lowest_level))
    position = {e.index: i for i, e in enumerate(order)}
    sacrum = next((e for e in reversed(order) if e.sacrum_like), None)
    if sacrum is not None:
        found.append(_Found("sacrum", position[sacrum.index], "S"))
    ribbed = [i for i, e in enumerate(order) if e.rib_sides and not e.sacrum_like]
    if not ribbed:
        return found, warnings, notes
    lowest, first = ribbed[-1], ribbed[0]
    if _seen_whole_without_ribs(order, lowest + 1):
        found.append(_Found("lowest_rib", lowest, "T12"))
        warnings.extend(_lowest_rib_warnings(order, lowest))
    else:
        notes.append("rib evidence inconclusive: no rib-free vertebra wholly in view below the lowest rib-bearing one")
    if _seen_whole_without_ribs(order, first - 1):
        found.append(_Found("first_rib", first, "T1"))
        if len(order[first].rib_sides) == 1:
            warnings.append(f"the highest rib-bearing vertebra has a rib on the {next(iter(order[first].rib_sides))} "
                            "side only")
    gaps = [order[i].index for i in range(first + 1, lowest) if not order[i].rib_sides]
    if gaps:
        notes.append(f"{len(gaps)} vertebra{'e' if len(gaps) > 1 else ''} between rib-bearing ones without a rib "
                     "seen (a rib missed, or a vertebra cut in two: the body sizes are checked)")
    return found, warnings, notes


def _seen_whole_without_ribs(order: list[VertebraEvidence], i: int) -> bool:
    """A neighbour that is in view, not cut by the scan edge, and carries no rib."""
    return 0 <= i < len(order) and not order[i].cut_by_edge and not order[i].rib_sides and not order[i].sacrum_like


def _lowest_rib_warnings(order: list[VertebraEvidence], lowest: int) -> list[str]:
    sides = order[lowest].rib_sides
    if len(sides) == 1:
        return [f"the lowest rib-bearing vertebra has a rib on the {next(iter(sides))} side only"]
    if order[lowest].rib_reach_mm < SHORT_RIB_MM:
        return ["the lowest rib pair is short: possible lumbar rib or hypoplastic 12th rib"]
    return _rib_length_warnings(order, lowest)


def _rib_length_warnings(order: list[VertebraEvidence], lowest: int) -> list[str]:
    """Warnings where the length of the two lowest rib pairs contradicts T12 for the lowest.

    The 11th and 12th ribs are floating ribs of different length: the 11th
    reaches round the flank to about the mid-axillary line, the 12th ends in
    the posterior abdominal wall (Gray's Anatomy, thoracic wall). So the
    lowest pair should end behind :data:`FLOATING_RIB_FRONT_MM` and be clearly
    shorter than the pair above. A long lowest pair suggests 11 rib pairs (the
    12th vertebra is then counted as L1); two short pairs of similar length
    suggest 13 rib pairs or a lumbar rib, which the sacrum count alone does not
    reveal (5 rib-free lumbar vertebrae above it either way).
    """
    warnings = []
    lowest_rib = order[lowest]
    front = lowest_rib.rib_front_mm
    if front is not None and front > FLOATING_RIB_FRONT_MM:
        warnings.append(
            "the lowest rib pair reaches round the flank like an 11th rib (a 12th rib ends behind the "
            "mid-axillary line): possible 11 rib pairs"
        )
    above = order[lowest - 1] if lowest > 0 else None
    if (
        above is not None and above.rib_sides and not above.cut_by_edge
        and above.rib_front_mm is not None and above.rib_front_mm <= FLOATING_RIB_FRONT_MM
        and lowest_rib.rib_reach_mm >= SIMILAR_RIB_REACH * above.rib_reach_mm
    ):
        warnings.append(
            "the two lowest rib pairs are both short like a 12th rib: possible 13 rib pairs or a lumbar rib"
        )
    return warnings


def _agreeing(found: list[_Found]) -> tuple[list[_Found], list[_Found]]:
    """(the anchors whose count is kept, the anchors that disagree with it)."""
    offset = {f: SPINE_SEQUENCE.index(f.level) - f.position for f in found}
    groups: dict[int, list[_Found]] = {}
    for f in found:
        groups.setdefault(offset[f], []).append(f)

    def rank(group: list[_Found]) -> tuple[int, int, int]:
        best = min(PREFERENCE.index(f.kind) for f in group)
        return (int(any(f.kind == "given" for f in group)), len(group), -best)

    chosen = max(groups.values(), key=rank)
    chosen.sort(key=lambda f: PREFERENCE.index(f.kind))
    return chosen, [f for f in found if f not in chosen]


def _disagreement(chosen: list[_Found], others: list[_Found], order: list[VertebraEvidence]) -> list[str]:
    """One plain sentence per anchor that disagrees: which, by how much, what it may mean."""
    kept = " and ".join(ANCHOR_NAMES[f.kind] for f in chosen)
    reference = chosen[0]
    offset = SPINE_SEQUENCE.index(reference.level) - reference.position
    sentences = []
    for other in others:
        expected = SPINE_SEQUENCE.index(other.level) - offset
        lower = other.position - expected
        sentences.append(
            f"anchors disagree: counted from {kept}, {ANCHOR_NAMES[other.kind]} lies {abs(lower)} "
            f"vertebra{'e' if abs(lower) > 1 else ''} {'lower' if lower > 0 else 'higher'} than expected"
            f"{_meaning(reference, other, order)}; levels counted from {kept}"
        )
    return sentences


def _meaning(a: _Found, b: _Found, order: list[VertebraEvidence]) -> str:
    """What a disagreement between two anchors usually means, as a clause."""
    pair = {a.kind, b.kind}
    if pair == {"lowest_rib", "sacrum"}:
        ribs, sacrum = (a, b) if a.kind == "lowest_rib" else (b, a)
        lumbar = sacrum.position - ribs.position - 1
        return (f": {lumbar} rib-free vertebra{'e' if lumbar != 1 else ''} above the sacrum instead of 5 "
                "(11 or 13 rib pairs, a lumbar rib or a lumbosacral transitional vertebra)")
    if pair == {"first_rib", "lowest_rib"}:
        first, lowest = (a, b) if a.kind == "first_rib" else (b, a)
        count = lowest.position - first.position + 1
        return f": {count} rib-bearing vertebrae instead of 12 (11 or 13 rib pairs, or a vertebra missed or cut in two)"
    return ""


def _describe(found: _Found, order: list[VertebraEvidence]) -> str:
    """Plain-language description of one anchor for segmentation.json and the SR."""
    if found.kind == "given":
        return f"the lowest vertebra in view stated to be {found.level}"
    if found.kind == "sacrum":
        return "sacrum between the iliac bones, L5 above it"
    sides = " and ".join(sorted(order[found.position].rib_sides))
    if found.kind == "lowest_rib":
        return f"lowest rib-bearing vertebra ({sides}), a rib-free vertebra wholly in view below"
    return f"highest rib-bearing vertebra ({sides}), a rib-free vertebra (C7) wholly in view above"


def _single_anchor_note(kind: str) -> str:
    notes = {
        "sacrum": "levels rest on the sacrum only (no rib pair in view to check the count)",
        "lowest_rib": "levels rest on the lowest rib pair only (neither the first rib pair nor the sacrum in view to "
                      "check the count; a spine with 11 or 13 rib pairs would be mislabelled)",
        "first_rib": "levels rest on the first rib pair only, counted down the whole thorax (neither the lowest rib "
                     "pair nor the sacrum in view to check the count)",
    }
    return notes[kind]


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


def _count_from(order: list[VertebraEvidence], anchor: int, anchor_name: str) -> dict[int, str]:
    """Name every segment by counting from ``order[anchor]`` = ``anchor_name`` along the usual spine."""
    base = SPINE_SEQUENCE.index(anchor_name)
    names = {}
    for i, evidence in enumerate(order):
        k = base + (i - anchor)
        if 0 <= k < len(SPINE_SEQUENCE):
            names[evidence.index] = SPINE_SEQUENCE[k]
    return names
