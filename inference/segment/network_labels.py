"""What the backends whose labels a network gives (``unet``, ``nnunet``) share.

A network reads the levels off the image as a whole; it counts no ribs and
so cannot check itself against anatomical anchors. Two things stand in:
labels that do not run cranio-caudally mark the study for review
(:func:`order_warnings`), and a user who knows the most caudal vertebra in
view (a research crop) can state it (:func:`relabel_to_lowest`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from inference.levels import LEVEL_NAMES
from inference.results import LevelAnchor
from inference.segment.relabel import shift_levels, steps_to_lowest

_NOT_IN_SEQUENCE = ("T13",)
"""Ids that do not grow caudally with their level (T13 has id 28, between T12 19 and L1 20)."""


def order_warnings(verse: np.ndarray, reference: sitk.Image, model: str) -> list[str]:
    """A warning naming each pair of neighbouring labels that is not in cranio-caudal order.

    Args:
        verse: VerSe ids, array (z, y, x) on ``reference``.
        reference: the network's grid, identity direction (a larger z index is more superior, LPS).
        model: what gave the labels, for the message (e.g. "U-Net").
    """
    ids = [int(i) for i in np.unique(verse) if i in LEVEL_NAMES and LEVEL_NAMES[int(i)] not in _NOT_IN_SEQUENCE]
    if len(ids) < 2:
        return []
    heights = [centre[0] for centre in ndimage.center_of_mass(verse > 0, verse, ids)]
    out_of_order = [f"{LEVEL_NAMES[upper]} is not above {LEVEL_NAMES[lower]}"
                    for (upper, z_upper), (lower, z_lower) in zip(zip(ids, heights), zip(ids[1:], heights[1:]))
                    if z_upper <= z_lower]
    if not out_of_order:
        return []
    return [f"{model} level labels out of cranio-caudal order ({'; '.join(out_of_order)}); check the labelling"]


@dataclass(frozen=True)
class LowestLevelGiven:
    """Labels renamed so that the most caudal vertebra is the level a user stated."""

    vertebrae: sitk.Image
    bodies: sitk.Image
    steps: int
    """Levels moved caudally (negative: cranially)."""
    anchor: LevelAnchor
    """The user's statement as the labels' anchor."""
    warnings: list[str]


def relabel_to_lowest(vertebrae: sitk.Image, bodies: sitk.Image, lowest_level: str) -> LowestLevelGiven:
    """Rename the labels so that the most caudal vertebra found is ``lowest_level``.

    Raises:
        ValueError: an unknown level, or one the shift would move past the ends of the spine.
    """
    steps = steps_to_lowest(vertebrae, lowest_level)
    warnings = []
    if steps:
        warnings.append(f"labels moved {abs(steps)} level{'s' if abs(steps) > 1 else ''} "
                        f"{'caudally' if steps > 0 else 'cranially'} to the level given by the user")
    return LowestLevelGiven(
        vertebrae=shift_levels(vertebrae, steps), bodies=shift_levels(bodies, steps), steps=steps,
        anchor=LevelAnchor("given", lowest_level, True, f"the lowest vertebra in view stated to be {lowest_level}"),
        warnings=warnings)
