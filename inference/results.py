"""Typed result values passed along the pipeline.

segment -> :class:`SegmentationResult`; measure + score ->
:class:`StudyMeasurements` (with :class:`LevelMeasurement` per level and a
:class:`StudyScore`). The DICOM encoders (:mod:`dicom_sr`), the worklist and
``measurements.json`` all read these values; nothing downstream reads a
free-form dict.

Units: lengths in mm, volumes in mL (cm3), attenuation in HU, vBMD in mg/cm3.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import SimpleITK as sitk


class LevelIdentification(StrEnum):
    """How sure the level labels are, as the SR, the report, the SEG and the worklist say it."""

    AUTOMATIC = "automatic"
    """Labelled by the backend from agreeing anatomical evidence."""
    NEEDS_REVIEW = "needs_review"
    """The evidence conflicts or is thin: a person should confirm or correct the labels."""
    CONFIRMED = "confirmed"
    """A person confirmed or corrected the labels."""

    @property
    def label(self) -> str:
        return {"automatic": "automatic", "needs_review": "needs review",
                "confirmed": "confirmed by a person"}[self.value]


@dataclass(frozen=True)
class LevelAnchor:
    """An anatomical landmark in view that names one vertebra; the others are counted from it."""

    kind: str
    """``"first_rib"`` (T1), ``"lowest_rib"`` (T12), ``"sacrum"`` (S), ``"given"`` (stated by the user
    before segmentation) or ``"person"`` (a reviewer confirmed or corrected the labels)."""
    level: str
    """The level the landmark names."""
    agrees: bool = True
    """The labels given agree with this anchor's count (False: it disagrees, and the study needs review)."""
    detail: str = ""
    """What was seen, in plain language."""

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "level": self.level, "agrees": self.agrees, "detail": self.detail}


@dataclass(frozen=True)
class LevelSegmentation:
    """What segmentation found for one vertebral level."""

    name: str
    """Level name, e.g. ``"L1"``."""
    verse_id: int
    complete: bool
    """True when the whole vertebral body is inside the field of view."""
    voxels: int
    """Whole-vertebra voxel count on the input grid."""
    centroid_lps: tuple[float, float, float]
    """Centroid of the vertebral body in LPS mm."""
    confidence: float = 1.0
    """0..1, how sure the labelling of this level is."""
    reason: str = ""
    """Why the level is incomplete, or other remarks; empty when none."""
    anchors: tuple[str, ...] = ()
    """Kinds of the anchors (:class:`LevelAnchor`) this level's label rests on."""


@dataclass(frozen=True)
class LevelAgreement:
    """One level as the node's backend and the check backend each labelled it (both answers)."""

    level: str
    primary_centroid_lps: tuple[float, float, float] | None
    """Body centroid of the level by the node's backend (None: it did not label the level)."""
    check_centroid_lps: tuple[float, float, float] | None
    """Body centroid of the level by the check backend (None: it did not label the level)."""
    centroid_distance_mm: float | None
    """Distance between the two centroids (None where one backend lacks the level)."""
    body_dice: float
    """Dice of the two backends' bodies of this level (0 where one lacks it)."""
    agrees: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "primary_centroid_lps": None if self.primary_centroid_lps is None else list(self.primary_centroid_lps),
            "check_centroid_lps": None if self.check_centroid_lps is None else list(self.check_centroid_lps),
            "centroid_distance_mm": self.centroid_distance_mm,
            "body_dice": self.body_dice,
            "agrees": self.agrees,
        }

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> "LevelAgreement":
        def point(value: Any) -> tuple[float, float, float] | None:
            return None if value is None else tuple(float(c) for c in value)  # type: ignore[return-value]

        distance = entry.get("centroid_distance_mm")
        return cls(str(entry["level"]), point(entry.get("primary_centroid_lps")), point(entry.get("check_centroid_lps")),
                   None if distance is None else float(distance), float(entry["body_dice"]), bool(entry["agrees"]))


@dataclass(frozen=True)
class SecondOpinion:
    """A second backend's labelling of the same CT, compared level by level with the node's backend."""

    backend: str
    backend_version: str
    levels: tuple[LevelAgreement, ...]

    @property
    def agrees(self) -> bool:
        return all(level.agrees for level in self.levels)

    def to_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "backend_version": self.backend_version, "agrees": self.agrees,
                "levels": [level.to_json() for level in self.levels]}

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> "SecondOpinion":
        return cls(str(document["backend"]), str(document.get("backend_version", "")),
                   tuple(LevelAgreement.from_json(entry) for entry in document["levels"]))


@dataclass
class SegmentationResult:
    """Output of a segmentation backend, every image on the input grid.

    ``vertebrae`` holds VerSe ids for every vertebra identified; ``bodies``
    holds the same ids restricted to the vertebral bodies; ``compartments``
    holds 1 (cortical) / 2 (cancellous) inside the bodies only. The level a
    compartment voxel belongs to is the ``bodies`` label at that voxel.
    """

    vertebrae: sitk.Image
    bodies: sitk.Image
    compartments: sitk.Image
    levels: dict[str, LevelSegmentation]
    backend: str
    backend_version: str = ""
    labelling_confidence: float = 1.0
    needs_review: bool = False
    warnings: list[str] = field(default_factory=list)
    levels_not_in_view: list[str] = field(default_factory=list)
    """Target levels (T11-L2) that were not found in the field of view."""
    anchors: list[LevelAnchor] = field(default_factory=list)
    """Every anatomical anchor the backend saw, agreeing or not (empty for backends that label
    from image context alone)."""
    confirmed_by: str = ""
    """The person who confirmed or corrected the level labels (empty: nobody)."""
    second_opinion: SecondOpinion | None = None
    """The check backend's answer beside this one (``[pipeline] segmentation_check_backend``), if run."""

    @property
    def level_identification(self) -> LevelIdentification:
        if self.confirmed_by:
            return LevelIdentification.CONFIRMED
        return LevelIdentification.NEEDS_REVIEW if self.needs_review else LevelIdentification.AUTOMATIC

    def complete_levels(self, wanted: tuple[str, ...]) -> list[str]:
        """Names of ``wanted`` levels that were found and are completely in view."""
        return [name for name in wanted if name in self.levels and self.levels[name].complete]

    def to_json(self) -> dict[str, Any]:
        """The ``segmentation.json`` document (DESIGN.md contract)."""
        return {
            "levels": {
                name: {
                    "id": lv.verse_id,
                    "complete": lv.complete,
                    "voxels": lv.voxels,
                    "centroid_lps": list(lv.centroid_lps),
                    "confidence": lv.confidence,
                    "anchors": list(lv.anchors),
                    **({"reason": lv.reason} if lv.reason else {}),
                }
                for name, lv in self.levels.items()
            },
            "backend": self.backend,
            "backend_version": self.backend_version,
            "labelling_confidence": self.labelling_confidence,
            "needs_review": self.needs_review,
            "warnings": list(self.warnings),
            "levels_not_in_view": list(self.levels_not_in_view),
            "anchors": [anchor.to_json() for anchor in self.anchors],
            "level_identification": self.level_identification.value,
            **({"confirmed_by": self.confirmed_by} if self.confirmed_by else {}),
            **({"second_opinion": self.second_opinion.to_json()} if self.second_opinion else {}),
        }


@dataclass(frozen=True)
class CompartmentStats:
    """Attenuation statistics and size of one compartment of one vertebral body."""

    voxels: int
    volume_ml: float
    mean_hu: float
    median_hu: float
    sd_hu: float


@dataclass(frozen=True)
class Heights:
    """Vertebral body heights along the local spine axis, in mm, and ratios.

    Ratios follow Genant's semi-quantitative method: ``wedge`` = anterior /
    posterior, ``biconcave`` = middle / posterior, ``crush`` = posterior /
    expected posterior (mean posterior height of the intact neighbours, or
    1.0 when no neighbour is available).
    """

    anterior_mm: float
    middle_mm: float
    posterior_mm: float
    wedge_ratio: float
    biconcave_ratio: float
    crush_ratio: float

    @property
    def max_height_loss(self) -> float:
        """Largest fractional height loss of the three ratios (0..1)."""
        return max(0.0, 1.0 - min(self.wedge_ratio, self.biconcave_ratio, self.crush_ratio))


@dataclass
class LevelMeasurement:
    """Everything measured for one vertebral level."""

    name: str
    verse_id: int
    complete: bool
    cortical: CompartmentStats | None = None
    cancellous: CompartmentStats | None = None
    body: CompartmentStats | None = None
    vbmd_mg_cm3: float | None = None
    """Estimated volumetric BMD of the cancellous core (internal calibration)."""
    heights: Heights | None = None
    trabecular_hu: float | None = None
    """Mean HU of the cancellous core away from the cortex: what vBMD and the L1 cut-offs are read from."""
    genant_grade: int | None = None
    """0 (no fracture) .. 3; None when heights could not be measured."""
    radscores: dict[str, float] = field(default_factory=dict)
    """Per-compartment radscore of this vertebra: ``{"cortical": .., "cancellous": ..}``."""
    features: dict[str, dict[str, float]] = field(default_factory=dict)
    """Radiomics features per VOI (``"cortical"``, ``"cancellous"``, ``"body"``)."""
    anchors: list[str] = field(default_factory=list)
    """Kinds of the anatomical anchors this level's label rests on (from segmentation)."""
    remarks: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Contribution:
    """One term of an explanation: how much a named input moved an output."""

    name: str
    value: float


@dataclass
class StudyScore:
    """Study-level radscores and fracture-risk output of a radscore model."""

    model_id: str
    model_version: str
    calibrated: bool
    """False for a model whose normalisation/logistic constants need local calibration."""
    radscores: dict[str, float] = field(default_factory=dict)
    """Study radscores: ``cortical``, ``cancellous``, ``vertebral``."""
    probability: float | None = None
    """Fracture-risk probability; None when the model is uncalibrated."""
    category: str | None = None
    """Risk category (e.g. ``low``/``intermediate``/``high``); None when uncalibrated."""
    probabilities: dict[str, float] = field(default_factory=dict)
    """Probability of every logistic model of the score (``cortical``, ``vertebral``, ``combined``...);
    ``probability`` is the model's primary one. Empty when uncalibrated."""
    explanation: dict[str, list[Contribution]] = field(default_factory=dict)
    """Per output, the features that contributed most, largest first."""
    levels_used: list[str] = field(default_factory=list)
    remarks: list[str] = field(default_factory=list)
    class_probabilities: dict[str, float] = field(default_factory=dict)
    """Per class, the probability of a model that sorts studies into more than two classes
    (e.g. fracture types); empty for a risk model. Such output is for research use only."""
    predicted_class: str | None = None
    """The class with the highest probability (multi-class models only)."""

    @property
    def research_use(self) -> bool:
        """True for output that must not reach a clinical decision: a multi-class model or an uncalibrated one."""
        return bool(self.class_probabilities) or not self.calibrated


@dataclass
class StudyMeasurements:
    """Measurements and scores of one study: the content of ``measurements.json``."""

    levels: dict[str, LevelMeasurement]
    l1_attenuation_hu: float | None = None
    l1_attenuation_category: str | None = None
    """``osteoporosis likely`` (<110 HU), ``indeterminate`` (110-160), ``normal likely`` (>160)."""
    vbmd_mg_cm3: float | None = None
    """Mean estimated vBMD over the complete target levels."""
    vbmd_category: str | None = None
    """ACR QCT category: ``normal`` (>120), ``low`` (80-120), ``osteoporosis`` (<80)."""
    max_genant_grade: int | None = None
    calibration: dict[str, float] = field(default_factory=dict)
    """Internal (phantomless) calibration references, e.g. air/fat/muscle HU, slope, intercept."""
    score: StudyScore | None = None
    level_identification: LevelIdentification = LevelIdentification.AUTOMATIC
    """Whether the level labels these numbers belong to are automatic, need review, or were
    confirmed by a person (from the segmentation)."""
    remarks: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``measurements.json``)."""
        document = asdict(self)
        document["level_identification"] = self.level_identification.value
        return document
