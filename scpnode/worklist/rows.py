"""What a worklist row is made of: statuses, level certainty, the study's identifiers and the row itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

from scpnode.worklist.flags import FlagReason


class Status(StrEnum):
    """Where a worklist row is in the coordinator's review."""

    NEW = "new"
    IN_REVIEW = "in_review"
    REFERRED = "referred"
    DISMISSED = "dismissed"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


class LevelStatus(StrEnum):
    """How sure the vertebral levels of a row's numbers are."""

    AUTOMATIC = "automatic"
    """Labelled by the node from agreeing anatomical anchors."""
    NEEDS_REVIEW = "needs_review"
    """The anchors conflict or are few: a reviewer must confirm or correct the labels."""
    RELABELLING = "relabelling"
    """A reviewer answered; the node is measuring again with the confirmed labels."""
    CONFIRMED = "confirmed"
    """A reviewer confirmed or corrected the labels; the numbers are theirs."""
    NOT_SCORED = "not_scored"
    """With the labels a reviewer confirmed, T11-L2 are not all completely in view: no numbers."""

    @property
    def label(self) -> str:
        return {"automatic": "automatic", "needs_review": "levels need review",
                "relabelling": "relabelling", "confirmed": "confirmed by a reviewer",
                "not_scored": "not scored"}[self.value]

    @property
    def trusted(self) -> bool:
        """Whether the row's numbers belong to levels that are not in doubt."""
        return self in (LevelStatus.AUTOMATIC, LevelStatus.CONFIRMED)


RISK_CATEGORIES = ("low", "intermediate", "high")
VBMD_CATEGORIES = ("normal", "low", "osteoporosis")
"""ACR QCT categories as written by the measurement step (``StudyMeasurements.vbmd_category``)."""
UNCALIBRATED = "uncalibrated"
"""Shown, and accepted as a risk-category filter, where an uncalibrated model gave no risk."""
RESEARCH_CLASSES = "no risk; research use only: "
"""Shown before the class probabilities of a multi-class research model."""


class WorklistError(ValueError):
    """A request the worklist cannot carry out (unknown row, missing note, bad filter)."""


@dataclass(frozen=True)
class StudyInfo:
    """Who and what a scored study is: the identifiers shown to the coordinator."""

    study_uid: str
    series_uid: str
    patient_id: str = ""
    patient_name: str = ""
    accession_number: str = ""
    study_date: date | None = None
    study_description: str = ""
    overlay_path: str = ""
    """PNG of the sagittal overlay (segmentation on the image), served by the web UI."""
    measurements_path: str = ""
    """The ``measurements.json`` written by the pipeline."""


@dataclass(frozen=True)
class AuditEntry:
    """One status change of a worklist row."""

    at: float
    """Epoch seconds (:mod:`scpnode.timestamps`)."""
    user: str
    action: str
    from_status: str
    to_status: str
    note: str


@dataclass
class WorklistRow:
    """One worklist row as read back from the database."""

    id: int
    created_at: float
    """Epoch seconds, as ``updated_at`` (:mod:`scpnode.timestamps`)."""
    updated_at: float
    study_uid: str
    series_uid: str
    patient_id: str
    patient_name: str
    accession_number: str
    study_date: str
    study_description: str
    levels_measured: list[str]
    l1_hu: float | None
    l1_hu_category: str | None
    vbmd: float | None
    vbmd_category: str | None
    radscore: float | None
    risk_probability: float | None
    risk_category: str | None
    genant_grade: int | None
    flagged: bool
    flag_reasons: list[FlagReason]
    status: Status
    status_note: str
    model_id: str
    model_version: str
    calibrated: bool
    overlay_path: str
    measurements_path: str
    level_status: LevelStatus = LevelStatus.AUTOMATIC
    class_probabilities: dict[str, float] = field(default_factory=dict)
    """Per class, the probability a multi-class research model gave (empty for a risk model)."""
    measurements: dict[str, Any] = field(default_factory=dict)
    """The full ``StudyMeasurements`` JSON; filled only by :func:`get_row`."""

    @property
    def risk_display(self) -> str:
        """Risk as shown to people: "uncalibrated" unless a calibrated model gave a number; a
        multi-class research model's class probabilities, marked as such."""
        if self.class_probabilities:
            return RESEARCH_CLASSES + ", ".join(f"{name} {p:.0%}" for name, p in self.class_probabilities.items())
        if not self.calibrated or self.risk_probability is None:
            return UNCALIBRATED
        return f"{self.risk_probability:.0%} ({self.risk_category})"
