"""A second backend checks the first: levels whose labels or bodies disagree mark the study for review.

Two backends that label a CT independently (the weight-free anatomical one,
counting from ribs and sacrum, and a trained nnU-Net reading the image as a
whole) rarely make the same mistake. For every screening level (T11-L2) that
either labelled, :func:`compare_backends` sets the two vertebral bodies side by
side: their centroids must lie within :data:`MAX_CENTROID_DISTANCE_MM` and
their voxels overlap with a Dice of at least :data:`MIN_BODY_DICE`. A
one-level slip moves a body by a whole vertebra (25-35 mm at T11-L2) and
leaves a Dice near 0, a body cut short or run into its disc lowers the Dice;
two good outlines of one body differ by a millimetre or two.

:func:`with_second_opinion` keeps the node's backend's answer as *the* answer,
records the check's beside it (``segmentation.json``, the SR's algorithm
notes) and, where a level disagrees, flags the study for review with a plain
warning naming the level, the distance and the Dice.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from inference.levels import TARGET_LEVELS, VERSE_IDS
from inference.results import LevelAgreement, SecondOpinion, SegmentationResult
from inference.segment.api import segment_volume

MAX_CENTROID_DISTANCE_MM = 10.0
"""Body centroids farther apart than this are not the same vertebra's body (a level is 25-35 mm high)."""

MIN_BODY_DICE = 0.7
"""Two outlines of the same body overlap more than this; a body shifted by half a level overlaps about 0.5."""


def segment_with_second_opinion(
    image: sitk.Image,
    backend: str,
    check_backend: str | None,
    *,
    device: str = "auto",
    model_dir: Path | None = None,
    check_model_dir: Path | None = None,
    lowest_level: str | None = None,
) -> SegmentationResult:
    """:func:`~inference.segment.api.segment_volume` with ``backend``, checked by ``check_backend`` when given.

    Raises:
        Whatever :func:`segment_volume` raises for either backend: a check that
        cannot run is an error, not a check that passed.
    """
    primary = segment_volume(image, backend, device=device, model_dir=model_dir, lowest_level=lowest_level)
    if check_backend is None:
        return primary
    check = segment_volume(image, check_backend, device=device, model_dir=check_model_dir, lowest_level=lowest_level)
    return with_second_opinion(primary, compare_backends(primary, check))


def compare_backends(primary: SegmentationResult, check: SegmentationResult) -> SecondOpinion:
    """Per screening level labelled by either backend, the two bodies' centroid distance and Dice.

    Raises:
        ValueError: the two results are not on the same grid.
    """
    if primary.bodies.GetSize() != check.bodies.GetSize():
        raise ValueError(f"the two backends' results are on different grids "
                         f"({primary.bodies.GetSize()} and {check.bodies.GetSize()})")
    ours = sitk.GetArrayViewFromImage(primary.bodies)
    theirs = sitk.GetArrayViewFromImage(check.bodies)
    levels = []
    for name in TARGET_LEVELS:
        mine, other = primary.levels.get(name), check.levels.get(name)
        if mine is None and other is None:
            continue
        distance = None
        if mine is not None and other is not None:
            distance = round(float(np.linalg.norm(np.subtract(mine.centroid_lps, other.centroid_lps))), 1)
        dice = round(_dice(ours == VERSE_IDS[name], theirs == VERSE_IDS[name]), 3)
        agrees = distance is not None and distance <= MAX_CENTROID_DISTANCE_MM and dice >= MIN_BODY_DICE
        levels.append(LevelAgreement(
            level=name,
            primary_centroid_lps=None if mine is None else mine.centroid_lps,
            check_centroid_lps=None if other is None else other.centroid_lps,
            centroid_distance_mm=distance,
            body_dice=dice,
            agrees=agrees,
        ))
    return SecondOpinion(check.backend, check.backend_version, tuple(levels))


def with_second_opinion(primary: SegmentationResult, opinion: SecondOpinion) -> SegmentationResult:
    """``primary`` carrying ``opinion``; flagged for review, with one warning per level, where they disagree."""
    warnings = [disagreement_text(level, primary.backend, opinion.backend)
                for level in opinion.levels if not level.agrees]
    return replace(primary, second_opinion=opinion, needs_review=primary.needs_review or bool(warnings),
                   warnings=[*primary.warnings, *warnings])


def disagreement_text(level: LevelAgreement, primary_backend: str, check_backend: str) -> str:
    """One plain sentence: which level, and how far apart the two backends' bodies are."""
    where = f"second opinion ({check_backend}) disagrees with {primary_backend} at {level.level}"
    if level.primary_centroid_lps is None:
        return f"{where}: only {check_backend} labelled a {level.level}"
    if level.check_centroid_lps is None:
        return f"{where}: {check_backend} labelled no {level.level}"
    return f"{where}: body centroids {level.centroid_distance_mm:.1f} mm apart, body Dice {level.body_dice:.2f}"


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2.0 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1))


def algorithm_notes(opinion: SecondOpinion, primary_backend: str) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """``name=value`` algorithm parameters for the SR: one for the study (which backend checked, and
    whether it agreed), and per disagreeing level both backends' answers."""
    disagreeing = [level for level in opinion.levels if not level.agrees]
    verdict = f"disagrees at {', '.join(level.level for level in disagreeing)}" if disagreeing else "agrees"
    version = f" {opinion.backend_version}" if opinion.backend_version else ""
    study = (f"second_opinion={opinion.backend}{version}: {verdict}",)
    per_level = {
        level.level: (f"second_opinion_{level.level}={primary_backend} body centroid "
                      f"{_point(level.primary_centroid_lps)}; {opinion.backend} body centroid "
                      f"{_point(level.check_centroid_lps)}; "
                      + (f"{level.centroid_distance_mm:.1f} mm apart; " if level.centroid_distance_mm is not None else "")
                      + f"body Dice {level.body_dice:.2f}",)
        for level in disagreeing
    }
    return study, per_level


def _point(lps: tuple[float, float, float] | None) -> str:
    return "none" if lps is None else "(" + ", ".join(f"{c:.1f}" for c in lps) + ") mm LPS"
