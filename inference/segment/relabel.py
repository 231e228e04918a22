"""Moving every level label along the spine: a user's correction or stated level, for any backend.

A label image holds VerSe ids; :func:`shift_levels` renames every vertebra the
same number of levels up or down the usual spine (C1 .. L5, sacrum), which is
what a person's correction "all labels are one level too high" means.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from inference.levels import LEVEL_NAMES, VERSE_IDS
from inference.segment.anchors import SPINE_SEQUENCE


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
