"""A fitted cohort model as the node's radscore model file (:mod:`inference.models`).

The node computes, per vertebra and compartment, ``intercept + sum(coef x
normalised feature)``, averages it over the levels scored, and feeds the
study radscores (and vBMD) to logistic models. The research side fits the
radscore on study-level features (the level means), which is the same
number because the radscore is linear: mean(a + b (x_l - c) / s) =
a + b (mean(x_l) - c) / s. So a radscore pipeline exports exactly when its
steps are expressible in the file:

- scaling: z-score (``StandardScaler``: center = mean, scale = SD) or max-abs;
  percentile scaling and ComBat are not (the node cannot apply them) and are
  refused with a clear error;
- correlation filter and selectors: they only choose columns;
- random oversampling: it only changed which rows the fit saw, and is skipped;
- the final linear estimator: its coefficients and intercept.

Logistic models may use radscores and ``vbmd``; one using another covariate
cannot run on the node and is left out (the primary one must export).

A fit with more than two classes exports its ``logistic`` classifier (one-vs-rest
logistic regressions on the same kind of preprocessing) as a multi-class model
(format version 2): per class an intercept and one coefficient per selected
feature. The node gives its class probabilities for research use only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sklearn.preprocessing import MaxAbsScaler, StandardScaler

from inference.cohort.fit import CohortFit
from inference.cohort.models import VOI_SEPARATOR, features_into_model
from inference.cohort.stats import youden_threshold
from inference.cohort.table import NODE_VBMD, ROI_VOI
from inference.models import (
    ClassModel,
    ClassTerm,
    LevelCombination,
    LogisticModel,
    Normalisation,
    RadscoreFormula,
    RadscoreModel,
    RadscoreTerm,
    RiskCategory,
)
from inference.models.model import MULTICLASS_FORMAT_VERSION, VBMD_INPUT

NODE_VOIS = ("cortical", "cancellous", "body")
"""The volumes of interest the node measures on each vertebra it segments."""


class ExportError(ValueError):
    """A fitted model that the node's model file cannot express; the message says which step."""


def _model_inputs(pipeline: Any, what: str) -> list[tuple[str, Normalisation]]:
    """Each column the fitted estimator of ``pipeline`` sees, in its order, with its node normalisation.

    Raises:
        ExportError: a step the node cannot apply (ComBat, deep features, percentile scaling).
    """
    steps = dict(pipeline.named_steps)
    if "harmonise" in steps:
        raise ExportError(f"{what}: ComBat harmonisation cannot run on the node; "
                          "fit without preprocess.harmonise_by to export")
    if "deep_pca" in steps or any(":deep_" in name for name in steps["scale"].feature_names_in_):
        raise ExportError(f"{what}: the node computes no deep features; fit without them (no "
                          "preprocess.deep_pca, no 'cohort extract --deep' columns) to export")
    scaler = steps["scale"]
    names_in = list(scaler.feature_names_in_)
    if isinstance(scaler, StandardScaler):
        norms = {n: Normalisation(method="z-score", center=float(c), scale=float(s))
                 for n, c, s in zip(names_in, scaler.mean_, scaler.scale_, strict=True)}
    elif isinstance(scaler, MaxAbsScaler):
        norms = {n: Normalisation(method="max-abs", scale=float(s) if s > 0 else 1.0)
                 for n, s in zip(names_in, scaler.max_abs_, strict=True)}
    else:
        raise ExportError(f"{what}: {type(scaler).__name__} (percentile scaling) has no node "
                          "equivalent; use normalisation 'z-score' or 'max-abs' to export")
    return [(name, norms[name]) for name in features_into_model(pipeline).get_feature_names_out()]


def radscore_formula(pipeline: Any, voi: str) -> RadscoreFormula:
    """The node formula of one fitted radscore pipeline (see the module docstring)."""
    inputs = _model_inputs(pipeline, f"radscore {voi}")
    estimator = pipeline[-1]
    coefficients = np.asarray(estimator.coef_[0], dtype=float)
    terms = [RadscoreTerm(feature=name.split(VOI_SEPARATOR, 1)[1], coefficient=float(coef), normalisation=norm)
             for (name, norm), coef in zip(inputs, coefficients, strict=True) if coef != 0]
    if not terms:
        raise ExportError(f"radscore {voi}: no feature was selected (all coefficients are zero)")
    return RadscoreFormula(intercept=float(estimator.intercept_[0]), terms=tuple(terms))


def _category_names(n: int) -> list[str]:
    if n == 2:
        return ["low", "high"]
    if n == 3:
        return ["low", "intermediate", "high"]
    return [f"category-{i + 1}" for i in range(n)]


def export_model(fit: CohortFit, model_id: str, version: str = "1.0.0", *, primary: str | None = None,
                 categories: Sequence[float] | None = None, profile: str = "che2025",
                 levels: Sequence[str] = ("T11", "T12", "L1", "L2"), description: str = "",
                 performance: dict[str, Any] | None = None, provenance: dict[str, Any] | None = None) -> RadscoreModel:
    """The node's :class:`RadscoreModel` for a :class:`CohortFit`.

    A binary fit exports its radscores and logistic models; a fit with more
    than two classes its logistic classifier (:func:`export_classifier`). The operating threshold is the Youden threshold of the primary model's
    probabilities on the training split; ``categories`` are the bounds of the
    risk categories (default: the recipe's ``export.categories``).

    Raises:
        ExportError: no radscore (or, for more classes, no logistic classifier), a radscore
            of a given ROI, a step the node cannot apply, or a primary model whose inputs the node lacks.
    """
    if not fit.binary:
        return export_classifier(fit, model_id, version, profile=profile, levels=levels, description=description,
                                 performance=performance, provenance=provenance)
    _check_level_combination(fit)
    if not fit.models.radscores:
        raise ExportError("the recipe fitted no radscore")
    recipe = fit.recipe
    if ROI_VOI in fit.models.radscores:
        raise ExportError(f"radscore {ROI_VOI!r} is of a reader's ROI; the node measures vertebrae it segments "
                          "on CT and has no such ROI to score")
    radscores = {voi: radscore_formula(pipe, voi) for voi, pipe in fit.models.radscores.items()}
    node_inputs = set(radscores) | {NODE_VBMD}
    table = fit.table
    if VBMD_INPUT in table and (NODE_VBMD not in table or np.allclose(
            table[VBMD_INPUT].to_numpy(float), table[NODE_VBMD].to_numpy(float), equal_nan=True)):
        node_inputs.add(VBMD_INPUT)  # the node's own estimate under its usual name
    logistic: dict[str, LogisticModel] = {}
    left_out: list[str] = []
    for spec in recipe.models:
        if not set(spec.inputs) <= node_inputs:
            left_out.append(spec.name)
            continue
        estimator = fit.models.logistic[spec.name]
        logistic[spec.name] = LogisticModel(
            intercept=float(estimator.intercept_[0]),
            coefficients={(VBMD_INPUT if name == NODE_VBMD else name): float(c)
                          for name, c in zip(spec.inputs, estimator.coef_[0], strict=True)})
    primary = primary or recipe.export.primary
    if primary is None or primary not in logistic:
        raise ExportError(f"primary model {primary!r} is not an exportable logistic model "
                          f"(exportable: {sorted(logistic)}; left out, inputs not on the node: {left_out})")
    train = fit.predictions[fit.predictions.partition == "train"]
    threshold = youden_threshold(train["y"].to_numpy(), train[f"model:{primary}"].to_numpy())
    bounds = list(categories if categories is not None else recipe.export.categories)
    names = _category_names(len(bounds) + 1)
    cats = tuple(RiskCategory(name=n, below=b) for n, b in zip(names, [*bounds, None], strict=True))
    return RadscoreModel(
        id=model_id, version=version,
        description=description or f"Site model fitted with scpnode cohort ({len(fit.table)} subjects)",
        provenance={"fitted_by": "scpnode cohort fit", "fitted_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "recipe": recipe.model_dump(mode="json"), "notes": list(fit.notes),
                    "logistic_left_out": left_out, **(provenance or {})},
        profile=profile, levels=tuple(levels), radscores=radscores, logistic=logistic,
        primary_output=primary, operating_threshold=float(min(max(threshold, 0.0), 1.0)), categories=cats,
        cohort=cohort_summary(fit), performance=performance or {},
    )


def export_classifier(fit: CohortFit, model_id: str, version: str = "1.0.0", *, profile: str = "che2025",
                      levels: Sequence[str] = ("T11", "T12", "L1", "L2"), description: str = "",
                      performance: dict[str, Any] | None = None,
                      provenance: dict[str, Any] | None = None) -> RadscoreModel:
    """The node's multi-class model (research use) from the ``logistic`` classifier of a fit with
    more than two classes; see the module docstring.

    Raises:
        ExportError: the recipe fitted no logistic classifier, its features are not ones the node
            measures on the vertebrae it segments, or a step the node cannot apply.
    """
    _check_level_combination(fit)
    pipeline = fit.models.classifiers.get("logistic")
    if pipeline is None:
        raise ExportError("a model with more than two classes exports its 'logistic' classifier, and the recipe "
                          f"fitted none (classifiers: {sorted(fit.models.classifiers)})")
    inputs = _model_inputs(pipeline, "classifier logistic")
    vois = {name.split(VOI_SEPARATOR, 1)[0] for name, _ in inputs}
    if not vois <= set(NODE_VOIS):
        raise ExportError(f"classifier logistic: features of {sorted(vois - set(NODE_VOIS))}; the node measures "
                          f"only {', '.join(NODE_VOIS)} of the vertebrae it segments")
    classes = [str(c) for c in fit.models.classes]
    estimators = pipeline[-1].estimators_  # OneVsRestClassifier: one binary logistic regression per class
    coefficients = np.vstack([np.asarray(e.coef_[0], dtype=float) for e in estimators])
    terms = tuple(
        ClassTerm(voi=name.split(VOI_SEPARATOR, 1)[0], feature=name.split(VOI_SEPARATOR, 1)[1], normalisation=norm,
                  coefficients={cls: float(c) for cls, c in zip(classes, coefficients[:, j], strict=True)})
        for j, (name, norm) in enumerate(inputs) if np.any(coefficients[:, j] != 0))
    if not terms:
        raise ExportError("classifier logistic: no feature was selected (all coefficients are zero)")
    classifier = ClassModel(classes=tuple(classes), terms=terms,
                            intercepts={cls: float(e.intercept_[0]) for cls, e in zip(classes, estimators, strict=True)})
    return RadscoreModel(
        format_version=MULTICLASS_FORMAT_VERSION, id=model_id, version=version,
        description=description or (f"Site research model fitted with scpnode cohort ({len(fit.table)} subjects, "
                                    f"classes {', '.join(classes)}); research use only"),
        provenance={"fitted_by": "scpnode cohort fit", "fitted_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "recipe": fit.recipe.model_dump(mode="json"), "notes": list(fit.notes),
                    "intended_use": "research", **(provenance or {})},
        profile=profile, levels=tuple(levels), combination=LevelCombination(min_levels=min(2, len(levels))),
        classifier=classifier, cohort=cohort_summary(fit), performance=performance or {},
    )


def _check_level_combination(fit: CohortFit) -> None:
    combination = fit.recipe.data.level_combination
    if combination != "mean" or fit.recipe.data.exclude_fractured:
        how = {"per-vertebra": "per vertebra", "concatenate": "on concatenated levels"}.get(
            combination, "without its fractured levels")
        raise ExportError(f"the node scores a study by the mean of every complete level; a model fitted {how} "
                          "would be scored on other numbers than it was fitted on")


def cohort_summary(fit: CohortFit) -> dict[str, Any]:
    """Counts and covariate summaries of the cohort (no patient identifiers)."""
    pred = fit.predictions
    train, test = pred[pred.partition == "train"], pred[pred.partition == "test"].drop_duplicates("id")
    def counted(y: pd.Series) -> dict[str, Any]:
        if fit.binary:
            return {"events": int(np.sum(y == 1))}
        return {"classes": {str(k): int(v) for k, v in y.value_counts().sort_index().items()}}

    summary: dict[str, Any] = {
        "subjects": int(len(fit.table)), **counted(fit.table[fit.recipe.data.outcome]),
        "train": {"subjects": int(len(train)), **counted(train["y"])},
        "test": {"subjects": int(len(test)), **counted(test["y"])},
        "split": fit.recipe.split.method, "notes": list(fit.notes),
    }
    covariates: dict[str, Any] = {}
    for name in fit.recipe.data.covariates:
        column = fit.table[name]
        if pd.api.types.is_numeric_dtype(column):
            covariates[name] = {"mean": float(column.mean()), "sd": float(column.std()),
                                "missing": int(column.isna().sum())}
        else:
            covariates[name] = {str(k): int(v) for k, v in column.value_counts().items()}
    summary["covariates"] = covariates
    return summary
