"""Moving every level label along the spine: a user's correction or stated level, for any backend.

A label image holds VerSe ids; :func:`shift_levels` renames every vertebra the
same number of levels up or down the usual spine (C1 .. L5, sacrum), which is
what a person's correction "all labels are one level too high" means.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import SimpleITK as sitk

from inference.levels import LEVEL_NAMES, VERSE_IDS
from inference.results import LevelAnchor, SegmentationResult
from inference.segment.anchors import SPINE_SEQUENCE
from inference.segment.levels import describe_levels

PERSON_ANCHOR = "person"
"""Anchor kind of labels a person confirmed or corrected (:func:`confirm_levels`)."""


def shift_levels(labels: sitk.Image, steps: int) -> sitk.Image:
    """``labels`` with every vertebra renamed ``steps`` levels caudally (negative: cranially).

    Raises:
        ValueError: a label would leave the usual spine (above C1 or below the sacrum),
            or the image holds ids outside it (T13, L6).
    """
    if steps == 0:
        return labels
    array = sitk.GetArrayViewFromImage(labels)
    lookup = np.zeros(256, dtype=np.uint8)
    for value in np.unique(array):
        if value == 0:
            continue
        name = LEVEL_NAMES.get(int(value))
        if name not in SPINE_SEQUENCE:
            raise ValueError(f"label {value} ({name or 'unknown'}) is not a level of the usual spine; cannot shift it")
        target = SPINE_SEQUENCE.index(name) + steps
        if not 0 <= target < len(SPINE_SEQUENCE):
            raise ValueError(f"shifting {name} by {steps} levels leaves the spine")
        lookup[int(value)] = VERSE_IDS[SPINE_SEQUENCE[target]]
    shifted = sitk.GetImageFromArray(lookup[array])
    shifted.CopyInformation(labels)
    return shifted


def steps_to_lowest(labels: sitk.Image, lowest_level: str) -> int:
    """How many levels to shift ``labels`` so that its most caudal vertebra becomes ``lowest_level``.

    Raises:
        ValueError: ``lowest_level`` is unknown, or ``labels`` holds no level of the usual spine.
    """
    if lowest_level not in SPINE_SEQUENCE:
        raise ValueError(f"unknown level {lowest_level!r}; use one of {', '.join(SPINE_SEQUENCE)}")
    present = [LEVEL_NAMES.get(int(v)) for v in np.unique(sitk.GetArrayViewFromImage(labels)) if v]
    positions = [SPINE_SEQUENCE.index(name) for name in present if name in SPINE_SEQUENCE]
    if not positions:
        raise ValueError("no labelled vertebra to count from")
    return SPINE_SEQUENCE.index(lowest_level) - max(positions)


def confirm_levels(segmentation: SegmentationResult, image: sitk.Image, steps: int, person: str) -> SegmentationResult:
    """``segmentation`` with its labels moved ``steps`` levels and confirmed by ``person``.

    A person's word replaces the backend's anchors: every level then rests on the
    anchor ``"person"``, confidence 1, and the study no longer needs review. The
    cortical/cancellous split does not depend on the names, so only the label
    images and the per-level description change.

    Raises:
        ValueError: ``person`` is empty, or a label would leave the usual spine.
    """
    if not person.strip():
        raise ValueError("a confirmation needs the name of the person who gave it")
    vertebrae = shift_levels(segmentation.vertebrae, steps)
    bodies = shift_levels(segmentation.bodies, steps)
    present = [int(v) for v in np.unique(sitk.GetArrayViewFromImage(vertebrae)) if v]
    description = describe_levels(vertebrae, bodies, default_confidence=1.0,
                                  level_anchors={verse_id: (PERSON_ANCHOR,) for verse_id in present}, image=image)
    lowest = max((SPINE_SEQUENCE.index(LEVEL_NAMES[v]) for v in present if LEVEL_NAMES.get(v) in SPINE_SEQUENCE),
                 default=None)
    detail = (f"{person} confirmed the labels as shown" if steps == 0 else
              f"{person} renamed every vertebra {describe_shift(steps)}")
    anchor = LevelAnchor(PERSON_ANCHOR, SPINE_SEQUENCE[lowest] if lowest is not None else "", True, detail)
    return replace(
        segmentation,
        vertebrae=vertebrae,
        bodies=bodies,
        levels=description.levels,
        labelling_confidence=1.0,
        needs_review=False,
        warnings=[detail, *description.warnings],
        levels_not_in_view=description.not_in_view,
        anchors=[anchor],
        confirmed_by=person.strip(),
        second_opinion=None,  # it compared the labels the person has now judged; revision 0 keeps it
    )


def describe_shift(steps: int) -> str:
    """What renaming every vertebra ``steps`` levels means, with T12 as the example:
    ``"1 level caudally (T12 becomes L1)"``, ``"2 levels cranially (T12 becomes T10)"``, ``"by no level"``."""
    if steps == 0:
        return "by no level"
    example = SPINE_SEQUENCE[SPINE_SEQUENCE.index("T12") + steps]
    return (f"{abs(steps)} level{'s' if abs(steps) > 1 else ''} {'caudally' if steps > 0 else 'cranially'} "
            f"(T12 becomes {example})")
