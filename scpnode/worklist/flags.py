"""The flag rule: which scored studies the coordinator should look at first (``[worklist]`` settings)."""

from __future__ import annotations

import math
from enum import StrEnum

from inference.results import StudyMeasurements
from scpnode.config import WorklistSettings


class FlagReason(StrEnum):
    """Why a study was flagged; stored as these codes, shown with :attr:`label`."""

    RISK = "risk"
    VBMD = "vbmd"
    L1_HU = "l1_hu"
    FRACTURE = "fracture"
    LEVELS = "levels"

    @property
    def label(self) -> str:
        return {
            FlagReason.RISK: "fracture risk category",
            FlagReason.VBMD: "low vBMD",
            FlagReason.L1_HU: "low L1 attenuation",
            FlagReason.FRACTURE: "prevalent fracture",
            FlagReason.LEVELS: "levels need review",
        }[self]


CLINICAL_FLAGS = (FlagReason.RISK, FlagReason.VBMD, FlagReason.L1_HU, FlagReason.FRACTURE)


def flag_reasons(measurements: StudyMeasurements, settings: WorklistSettings) -> list[FlagReason]:
    """Apply the ``[worklist]`` flag rule; an empty list means not flagged.

    A risk category flags only when it comes from a calibrated model, so an
    uncalibrated node flags on vBMD, L1 attenuation (Pickhardt et al., Ann
    Intern Med 2013: L1 < 110 HU) and prevalent fracture (Genant grade) alone.
    """
    reasons = []
    score = measurements.score
    if score is not None and score.calibrated and score.category in settings.flag_risk_categories:
        reasons.append(FlagReason.RISK)
    if _below(measurements.vbmd_mg_cm3, settings.flag_vbmd_below):
        reasons.append(FlagReason.VBMD)
    if _below(measurements.l1_attenuation_hu, settings.flag_l1_hu_below):
        reasons.append(FlagReason.L1_HU)
    grade, least = measurements.max_genant_grade, settings.flag_genant_grade_at_least
    if grade is not None and least is not None and grade >= least:
        reasons.append(FlagReason.FRACTURE)
    return reasons


def _below(value: float | None, threshold: float | None) -> bool:
    return value is not None and threshold is not None and math.isfinite(value) and value < threshold
