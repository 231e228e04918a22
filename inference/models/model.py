"""The radscore model file: schema, validation, (de)serialisation and scoring.

A radscore model turns radiomics features of the T11-L2 vertebrae into
radscores and a fracture-risk probability. It is one JSON document.

File format (``format = "scpnode-radscore-model"``, ``format_version = 1``)
--------------------------------------------------------------------------

.. code-block:: text

    {
      "format": "scpnode-radscore-model", "format_version": 1,
      "id": "che2025-published",              # what ``load_model`` finds it by
      "version": "1.0.0",
      "description": "...",
      "provenance": {...},                    # free-form: source, who fitted it, when, data
      "profile": "che2025",                   # radiomics profile whose names the features use
      "levels": ["T11", "T12", "L1", "L2"],
      "combination": {"method": "mean", "min_levels": 2},
      "radscores": {                          # one linear formula per compartment
        "cortical": {
          "intercept": 0.0,
          "terms": [
            {"feature": "wavelet_glszm_wavelet-HLH-GrayLevelVariance",
             "coefficient": 0.3976,
             "normalisation": {"method": "z-score", "center": 12.3, "scale": 4.5}},
            ...]},
        "cancellous": {...}},
      "logistic": {                           # logistic models on study radscores (+ vBMD)
        "vertebral": {"intercept": -1.2, "coefficients": {"cortical": 0.8, "cancellous": 1.1}},
        "combined": {"intercept": 2.0, "coefficients": {"cortical": 0.7, "cancellous": 0.9, "vbmd": -0.02}},
        ...},
      "primary_output": "combined",           # the logistic model that gives the study's probability
      "operating_threshold": 0.35,            # probability at or above which a study is "positive"
      "categories": [{"name": "low", "below": 0.2}, {"name": "intermediate", "below": 0.5},
                     {"name": "high", "below": null}],
      "cohort": {...}, "performance": {...}   # free-form summaries of the training cohort
    }

Multi-class models (``format_version = 2``)
------------------------------------------

A model that sorts a study into three or more classes (e.g. wedge, biconcave
and crush fracture types) has a ``classifier`` instead of ``radscores``,
``logistic`` and ``categories``; its output is for research use only and
never a fracture-risk probability:

.. code-block:: text

    "classifier": {
      "method": "one-vs-rest-logistic",
      "classes": ["biconcave", "crush", "wedge"],
      "intercepts": {"biconcave": -0.4, "crush": -1.1, "wedge": 0.2},
      "terms": [
        {"voi": "body", "feature": "original_firstorder_Mean",
         "normalisation": {"method": "z-score", "center": 210.0, "scale": 45.0},
         "coefficients": {"biconcave": 0.8, "crush": -0.3, "wedge": -0.5}},
        ...]}

Per class ``k``: ``logit_k = intercept_k + sum(coefficient_k * normalised
feature)`` on the mean of the features over the levels scored,
``p_k = 1 / (1 + exp(-logit_k))``, and the ``p_k`` are divided by their sum
(as scikit-learn's ``OneVsRestClassifier`` does). Every constant must be known.

Normalisation of a feature value ``x``: ``z-score`` -> ``(x - center) / scale``
(center = training mean, scale = training SD); ``max-abs`` -> ``x / scale``
(scale = largest absolute training value, scikit-learn's ``MaxAbsScaler``).
Logistic inputs are the study radscores by compartment name, and ``vbmd``
(estimated vBMD, mg/cm3).

**Calibration.** Any constant that the source did not publish is written as
``null``: a normalisation ``center``/``scale``, a logistic ``intercept`` or
coefficient, the ``operating_threshold`` or a category bound. Such a model is
*uncalibrated*: it still computes radscores (from features without
normalisation, flagged ``calibrated: false``) but never a probability or a
risk category, so its output cannot be mistaken for a clinical result. A site
calibrates it by fitting those constants on its own cohort (``scpnode cohort``)
and saving the model with a new version.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from inference.results import Contribution, StudyScore

FORMAT = "scpnode-radscore-model"
FORMAT_VERSION = 1
MULTICLASS_FORMAT_VERSION = 2
"""The first format version that holds a ``classifier``; a node that reads only version 1 refuses it by version."""
EXPLANATION_TERMS = 5
"""How many contributions an explanation lists per output."""
VBMD_INPUT = "vbmd"
"""Name of the estimated-vBMD input of a logistic model."""
VERTEBRAL_OUTPUT = "vertebral"
"""The logistic model on both compartment radscores; its linear predictor is the study's vertebral radscore."""


class ModelError(ValueError):
    """A model file that cannot be used; the message names the file and the key."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Normalisation(_Frozen):
    """How a raw feature value is scaled before its coefficient applies."""

    method: Literal["z-score", "max-abs"]
    center: float | None = None
    """Training-cohort mean (z-score only); null: needs local calibration."""
    scale: float | None = None
    """Training-cohort SD (z-score) or largest absolute value (max-abs); null: needs calibration."""

    @model_validator(mode="after")
    def _check(self) -> Normalisation:
        if self.scale is not None and not self.scale > 0:
            raise ValueError("normalisation scale must be > 0")
        if self.method == "max-abs" and self.center not in (None, 0.0):
            raise ValueError("max-abs normalisation has no center")
        return self

    @property
    def calibrated(self) -> bool:
        return self.scale is not None and (self.method == "max-abs" or self.center is not None)

    def apply(self, value: float) -> float:
        """The normalised value; the raw value when the constants are not calibrated."""
        if not self.calibrated:
            return value
        center = self.center if self.method == "z-score" else 0.0
        return (value - center) / self.scale


class RadscoreTerm(_Frozen):
    feature: str
    coefficient: float
    normalisation: Normalisation


class RadscoreFormula(_Frozen):
    """``radscore = intercept + sum(coefficient * normalised feature)`` for one compartment."""

    intercept: float = 0.0
    terms: tuple[RadscoreTerm, ...] = Field(min_length=1)

    @property
    def calibrated(self) -> bool:
        return all(term.normalisation.calibrated for term in self.terms)

    def contributions(self, features: Mapping[str, float]) -> list[Contribution]:
        """Each term's ``coefficient * normalised value`` for one VOI's features.

        Raises:
            KeyError: naming the first feature the VOI lacks.
        """
        missing = [t.feature for t in self.terms if t.feature not in features]
        if missing:
            raise KeyError(f"feature {missing[0]!r} missing ({len(missing)} of {len(self.terms)} missing)")
        return [Contribution(t.feature, t.coefficient * t.normalisation.apply(float(features[t.feature])))
                for t in self.terms]


class LogisticModel(_Frozen):
    """``p = 1 / (1 + exp(-(intercept + sum(coefficient * input))))``."""

    intercept: float | None = None
    coefficients: dict[str, float | None] = Field(min_length=1)

    @property
    def calibrated(self) -> bool:
        return self.intercept is not None and all(c is not None for c in self.coefficients.values())


class ClassTerm(_Frozen):
    """One feature of a multi-class model, with one coefficient per class."""

    voi: str
    """The volume of interest the feature is measured on (``cortical``, ``cancellous``, ``body``)."""
    feature: str
    normalisation: Normalisation
    coefficients: dict[str, float] = Field(min_length=1)


class ClassModel(_Frozen):
    """A linear classifier over three or more classes, fitted one-vs-rest (research use only)."""

    method: Literal["one-vs-rest-logistic"] = "one-vs-rest-logistic"
    classes: tuple[str, ...] = Field(min_length=3)
    intercepts: dict[str, float]
    terms: tuple[ClassTerm, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> ClassModel:
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classifier.classes repeats a class: {list(self.classes)}")
        if set(self.intercepts) != set(self.classes):
            raise ValueError(f"classifier.intercepts must name exactly the classes {list(self.classes)}")
        for term in self.terms:
            if set(term.coefficients) != set(self.classes):
                raise ValueError(f"classifier term {term.voi}:{term.feature}: coefficients must name exactly "
                                 f"the classes {list(self.classes)}")
            if not term.normalisation.calibrated:
                raise ValueError(f"classifier term {term.voi}:{term.feature}: normalisation constants missing "
                                 "(a multi-class model carries every constant)")
        return self

    @property
    def features(self) -> dict[str, tuple[str, ...]]:
        """Feature names per VOI, in term order."""
        out: dict[str, tuple[str, ...]] = {}
        for term in self.terms:
            out[term.voi] = (*out.get(term.voi, ()), term.feature)
        return out

    def level_logits(self, features: Mapping[str, Mapping[str, float]]) -> dict[str, list[Contribution]] | None:
        """Per class, each term's contribution to the logit of one vertebra; None when a feature is missing."""
        values = []
        for term in self.terms:
            value = features.get(term.voi, {}).get(term.feature)
            if value is None:
                return None
            values.append(term.normalisation.apply(float(value)))
        return {cls: [Contribution(f"{t.voi}:{t.feature}", t.coefficients[cls] * v)
                      for t, v in zip(self.terms, values, strict=True)] for cls in self.classes}

    def probabilities(self, logits: Mapping[str, float]) -> dict[str, float]:
        """One-vs-rest probabilities of each class, divided by their sum."""
        raw = {cls: 1.0 / (1.0 + math.exp(-logits[cls])) for cls in self.classes}
        total = math.fsum(raw.values())
        return {cls: p / total for cls, p in raw.items()}


class RiskCategory(_Frozen):
    name: str
    below: float | None
    """Upper probability bound (exclusive); null for the last (open) category."""


class LevelCombination(_Frozen):
    """How per-vertebra radscores become a study radscore.

    The source study averages the radscores of T11-L2. A level that failed
    (not segmented, incomplete, or missing features) is left out of the mean;
    with fewer than ``min_levels`` levels left the study gets no radscore.
    """

    method: Literal["mean"] = "mean"
    min_levels: int = Field(2, ge=1)


class RadscoreModel(_Frozen):
    """A versioned radscore model (see the module docstring for the file format)."""

    format: Literal["scpnode-radscore-model"] = FORMAT
    format_version: Literal[1, 2] = FORMAT_VERSION
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    version: str = Field(min_length=1)
    description: str = ""
    provenance: dict[str, Any] = Field(default_factory=dict)
    profile: str = "che2025"
    levels: tuple[str, ...] = ("T11", "T12", "L1", "L2")
    combination: LevelCombination = LevelCombination()
    radscores: dict[str, RadscoreFormula] = Field(default_factory=dict)
    logistic: dict[str, LogisticModel] = Field(default_factory=dict)
    primary_output: str | None = None
    operating_threshold: float | None = Field(None, ge=0, le=1)
    categories: tuple[RiskCategory, ...] = ()
    classifier: ClassModel | None = None
    """A multi-class model's classifier (format version 2); such a model has no radscores."""
    cohort: dict[str, Any] = Field(default_factory=dict)
    performance: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> RadscoreModel:
        if self.classifier is not None:
            if self.format_version < MULTICLASS_FORMAT_VERSION:
                raise ValueError(f"classifier: needs format_version {MULTICLASS_FORMAT_VERSION}")
            risk_keys = [key for key in ("radscores", "logistic", "primary_output", "operating_threshold",
                                         "categories") if getattr(self, key)]
            if risk_keys:
                raise ValueError(f"a multi-class model (classifier) gives class probabilities, not a fracture "
                                 f"risk: it cannot also have {', '.join(risk_keys)}")
        elif not self.radscores:
            raise ValueError("radscores: a model needs radscores or a classifier")
        known_inputs = set(self.radscores) | {VBMD_INPUT}
        for name, logistic in self.logistic.items():
            unknown = set(logistic.coefficients) - known_inputs
            if unknown:
                raise ValueError(f"logistic.{name}: unknown inputs {sorted(unknown)}; known: {sorted(known_inputs)}")
        if self.primary_output is not None and self.primary_output not in self.logistic:
            raise ValueError(f"primary_output {self.primary_output!r} is not one of logistic: {sorted(self.logistic)}")
        if self.combination.min_levels > len(self.levels):
            raise ValueError("combination.min_levels exceeds the number of levels")
        bounds = [c.below for c in self.categories]
        if bounds and bounds[-1] is not None and all(b is not None for b in bounds):
            raise ValueError("the last risk category must be open (below: null)")
        known = [b for b in bounds[:-1] if b is not None]
        if known != sorted(known):
            raise ValueError("risk category bounds must increase")
        return self

    # -- what the model needs -------------------------------------------------

    @property
    def features(self) -> dict[str, tuple[str, ...]]:
        """Feature names per compartment (VOI), in formula order."""
        if self.classifier is not None:
            return self.classifier.features
        return {comp: tuple(t.feature for t in f.terms) for comp, f in self.radscores.items()}

    @property
    def calibrated(self) -> bool:
        """True when every constant needed for a probability and a category is known.

        A multi-class model is calibrated by construction (its validator asks for every constant).
        """
        if self.classifier is not None:
            return True
        if not all(f.calibrated for f in self.radscores.values()):
            return False
        if self.primary_output is None or not self.logistic[self.primary_output].calibrated:
            return False
        return bool(self.categories) and all(c.below is not None for c in self.categories[:-1])

    @property
    def needs_vbmd(self) -> bool:
        return self.primary_output is not None and VBMD_INPUT in self.logistic[self.primary_output].coefficients

    # -- scoring --------------------------------------------------------------

    def level_radscores(self, level_features: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
        """Radscores of one vertebra, ``{compartment: radscore}``.

        ``level_features`` maps a VOI name (``"cortical"``, ``"cancellous"``)
        to its features; a compartment whose features are missing is left out.
        """
        out: dict[str, float] = {}
        for comp, formula in self.radscores.items():
            try:
                terms = formula.contributions(level_features.get(comp, {}))
            except KeyError:
                continue
            out[comp] = formula.intercept + math.fsum(c.value for c in terms)
        return out

    def score(self, per_level_features: Mapping[str, Mapping[str, Mapping[str, float]]],
              vbmd_mg_cm3: float | None = None) -> StudyScore:
        """Features -> per-vertebra radscores -> study radscores -> probability and category.

        Args:
            per_level_features: ``{level: {compartment: {feature: value}}}``;
                levels outside ``self.levels`` are ignored.
            vbmd_mg_cm3: estimated study vBMD, for logistic models that use it.

        Returns:
            A :class:`StudyScore`. ``radscores`` holds the compartment
            radscores and, for a calibrated model with a ``vertebral``
            logistic model, its linear predictor as the ``vertebral``
            radscore. ``probability``/``category`` are None when
            the model is uncalibrated, when too few levels could be scored, or
            when an input (e.g. vBMD) is missing; ``remarks`` say which.
            A multi-class model fills ``class_probabilities`` and
            ``predicted_class`` instead (research use).
        """
        if self.classifier is not None:
            return self._score_classes(self.classifier, per_level_features)
        remarks: list[str] = []
        per_level = {lv: self.level_radscores(per_level_features[lv])
                     for lv in self.levels if lv in per_level_features}
        radscores: dict[str, float] = {}
        explanation: dict[str, list[Contribution]] = {}
        used: set[str] = set()
        for comp, formula in self.radscores.items():
            levels = [lv for lv, scores in per_level.items() if comp in scores]
            failed = [lv for lv in self.levels if lv not in levels]
            if failed:
                remarks.append(f"{comp} radscore: level(s) {', '.join(failed)} left out (not measured)")
            if len(levels) < self.combination.min_levels:
                remarks.append(f"{comp} radscore: {len(levels)} level(s) scored, "
                               f"{self.combination.min_levels} needed")
                continue
            used.update(levels)
            radscores[comp] = math.fsum(per_level[lv][comp] for lv in levels) / len(levels)
            explanation[comp] = _largest_first(_mean_contributions(
                [formula.contributions(per_level_features[lv][comp]) for lv in levels]))
        if not self.calibrated:
            remarks.append("uncalibrated model: radscores use un-normalised features and are not comparable "
                           "to the publication; no risk probability (needs local calibration)")
        probabilities: dict[str, float] = {}
        vertebral: float | None = None
        if self.calibrated:
            inputs = dict(radscores)
            if vbmd_mg_cm3 is not None:
                inputs[VBMD_INPUT] = vbmd_mg_cm3
            for name, logistic in self.logistic.items():
                missing = [i for i in logistic.coefficients if i not in inputs]
                if missing:
                    remarks.append(f"{name} probability: input(s) {', '.join(missing)} missing")
                    continue
                terms = [Contribution(i, c * inputs[i]) for i, c in logistic.coefficients.items()]
                logit = logistic.intercept + math.fsum(t.value for t in terms)
                probabilities[name] = 1.0 / (1.0 + math.exp(-logit))
                explanation[f"probability:{name}"] = _largest_first(terms)
                if name == VERTEBRAL_OUTPUT:
                    vertebral = logit
        if vertebral is not None:
            radscores[VERTEBRAL_OUTPUT] = vertebral
        probability = probabilities.get(self.primary_output) if self.primary_output else None
        return StudyScore(
            model_id=self.id, model_version=self.version, calibrated=self.calibrated,
            radscores=radscores, probability=probability,
            category=self.category(probability) if probability is not None else None,
            probabilities=probabilities, explanation=explanation,
            levels_used=[lv for lv in self.levels if lv in used], remarks=remarks,
        )

    def _score_classes(self, classifier: ClassModel,
                       per_level_features: Mapping[str, Mapping[str, Mapping[str, float]]]) -> StudyScore:
        """Class probabilities on the level means: the mean of the levels' logits, the model being linear."""
        per_level = {lv: classifier.level_logits(per_level_features[lv])
                     for lv in self.levels if lv in per_level_features}
        levels = [lv for lv, terms in per_level.items() if terms is not None]
        remarks = ["multi-class model: class probabilities for research use only, no fracture-risk probability"]
        failed = [lv for lv in self.levels if lv not in levels]
        if failed:
            remarks.append(f"classes: level(s) {', '.join(failed)} left out (not measured)")
        score = StudyScore(model_id=self.id, model_version=self.version, calibrated=True,
                           levels_used=levels, remarks=remarks)
        if len(levels) < self.combination.min_levels:
            remarks.append(f"classes: {len(levels)} level(s) scored, {self.combination.min_levels} needed")
            return score
        mean_terms = {cls: _mean_contributions([per_level[lv][cls] for lv in levels])
                      for cls in classifier.classes}
        logits = {cls: classifier.intercepts[cls] + math.fsum(c.value for c in terms)
                  for cls, terms in mean_terms.items()}
        score.class_probabilities = classifier.probabilities(logits)
        score.predicted_class = max(score.class_probabilities, key=score.class_probabilities.__getitem__)
        score.explanation = {f"class:{cls}": _largest_first(terms) for cls, terms in mean_terms.items()}
        return score

    def category(self, probability: float) -> str:
        """The risk category of a probability (calibrated models only)."""
        for cat in self.categories:
            if cat.below is None or probability < cat.below:
                return cat.name
        raise ModelError(f"model {self.id}: no risk category covers probability {probability:.3f}")

    # -- files ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of this model (``None`` for constants that need calibration)."""
        return self.model_dump(mode="json")

    def save(self, path: str | Path) -> Path:
        """Write the model file (JSON, UTF-8) and return its path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], source: str = "model") -> RadscoreModel:
        """Validate a model document.

        Raises:
            ModelError: one line naming ``source`` and the first bad key.
        """
        try:
            return cls.model_validate(dict(document))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(document)"
            raise ModelError(f"{source}: {where}: {first['msg']}") from None


def _largest_first(terms: list[Contribution]) -> list[Contribution]:
    return sorted(terms, key=lambda c: abs(c.value), reverse=True)[:EXPLANATION_TERMS]


def _mean_contributions(per_level: list[list[Contribution]]) -> list[Contribution]:
    """Average each term over the levels (a study radscore or logit is their mean), in term order."""
    names = [c.name for c in per_level[0]]
    return [Contribution(n, math.fsum(lv[i].value for lv in per_level) / len(per_level))
            for i, n in enumerate(names)]
