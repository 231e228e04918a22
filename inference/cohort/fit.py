"""Run a recipe on a study-level feature table: split, fit on training rows, predict.

:func:`fit_cohort` returns a :class:`CohortFit`: the fitted estimators and one
row of scores per subject and partition (``predictions``). With a holdout
split every estimator is fitted on the training rows and scored on both;
with k-fold each fold's estimators score that fold's test rows (out-of-fold)
and the estimators kept for export are refitted on all rows.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import Pipeline

from inference.cohort.models import (
    classifier_pipeline,
    logistic_on_inputs,
    radscore_pipeline,
    voi_columns,
)
from inference.cohort.preprocess import reliable_features
from inference.cohort.recipe import Recipe
from inference.cohort.split import holdout_split, kfold_splits, propensity_match
from inference.cohort.table import read_feature_table


@dataclass
class FittedModels:
    """The estimators of one fit (one training split)."""

    radscores: dict[str, Pipeline]
    logistic: dict[str, Any]
    classifiers: dict[str, Any]
    classes: list[Any]


@dataclass
class CohortFit:
    """Everything ``cohort evaluate`` and ``cohort export`` need."""

    recipe: Recipe
    table: pd.DataFrame
    """The study-level table used (after matching), indexed by subject id."""
    models: FittedModels
    """Estimators fitted on the training split (holdout) or on all rows (k-fold)."""
    predictions: pd.DataFrame
    """Per subject and partition: ``id, partition, fold, y`` and one column per score."""
    reliability: dict[str, float] = field(default_factory=dict)
    """ICC of the features that passed the reliability filter (empty without one)."""
    notes: list[str] = field(default_factory=list)

    @property
    def binary(self) -> bool:
        return len(self.models.classes) == 2


def _feature_columns(table: pd.DataFrame, recipe: Recipe, allowed: set[str] | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for voi in recipe.radscore.vois:
        columns = voi_columns(list(table.columns), voi)
        if allowed is not None:
            columns = [c for c in columns if c in allowed]
        if not columns:
            raise ValueError(f"no feature columns for VOI {voi!r} (expected columns named '{voi}:<feature>')")
        out[voi] = columns
    return out


def fit_models(table: pd.DataFrame, y: np.ndarray, recipe: Recipe, columns: dict[str, list[str]],
               seed: int) -> FittedModels:
    """Fit every estimator of the recipe on these rows only."""
    classes = sorted(np.unique(y).tolist())
    binary = len(classes) == 2
    radscores: dict[str, Pipeline] = {}
    logistic: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if binary:
            for voi, cols in columns.items():
                radscores[voi] = radscore_pipeline(recipe, cols, seed).fit(table, y)
            inputs = logistic_inputs(table, radscores)
            for spec in recipe.models:
                logistic[spec.name] = logistic_on_inputs().fit(inputs.loc[:, list(spec.inputs)], y)
        all_columns = [c for cols in columns.values() for c in cols]
        classifiers = {
            spec.family: classifier_pipeline(recipe, all_columns, spec.family, spec.grid,
                                             len(classes), seed).fit(table, y).best_estimator_
            for spec in recipe.classifiers
        }
    return FittedModels(radscores=radscores, logistic=logistic, classifiers=classifiers, classes=classes)


def logistic_inputs(table: pd.DataFrame, radscores: dict[str, Pipeline]) -> pd.DataFrame:
    """Radscores by VOI name plus every covariate column, the inputs of the logistic models."""
    frame = pd.DataFrame({voi: pipe.decision_function(table) for voi, pipe in radscores.items()},
                         index=table.index)
    for column in table.columns:
        if ":" not in column and column not in frame.columns:
            frame[column] = table[column]
    return frame


def score_rows(models: FittedModels, table: pd.DataFrame, recipe: Recipe) -> pd.DataFrame:
    """One column per score: ``radscore:<voi>``, ``model:<name>`` (probability), ``clf:<family>``.

    For more than two classes ``clf:<family>:<class>`` holds each class's probability.
    """
    out = pd.DataFrame(index=table.index)
    if models.radscores:
        inputs = logistic_inputs(table, models.radscores)
        for voi in models.radscores:
            out[f"radscore:{voi}"] = inputs[voi]
        for spec in recipe.models:
            out[f"model:{spec.name}"] = models.logistic[spec.name].predict_proba(
                inputs.loc[:, list(spec.inputs)])[:, 1]
    for family, estimator in models.classifiers.items():
        proba = estimator.predict_proba(table)
        if len(models.classes) == 2:
            out[f"clf:{family}"] = proba[:, 1]
        else:
            for i, cls in enumerate(models.classes):
                out[f"clf:{family}:{cls}"] = proba[:, i]
    return out


def fit_cohort(table: pd.DataFrame | str, recipe: Recipe) -> CohortFit:
    """Run ``recipe`` on a study-level table (a DataFrame or the path of a CSV/Parquet file).

    Raises:
        ValueError: missing columns, missing outcome values, too few subjects
            per class, or a covariate a model needs that has missing values.
    """
    frame = read_feature_table(table, recipe.data.id) if not isinstance(table, pd.DataFrame) else table
    outcome = recipe.data.outcome
    if outcome not in frame.columns:
        raise ValueError(f"outcome column {outcome!r} not in the feature table")
    if frame[outcome].isna().any():
        raise ValueError(f"outcome {outcome!r} missing for {int(frame[outcome].isna().sum())} subject(s)")
    missing_cov = [c for c in recipe.data.covariates if c not in frame.columns]
    if missing_cov:
        raise ValueError(f"covariates not in the feature table: {missing_cov}")
    notes: list[str] = []
    split_spec = recipe.split
    if split_spec.matching is not None:
        keep = propensity_match(frame, frame[outcome].to_numpy(), split_spec.matching.covariates,
                                split_spec.matching.ratio, split_spec.matching.caliper, seed=split_spec.seed)
        notes.append(f"propensity matching 1:{split_spec.matching.ratio} on "
                     f"{', '.join(split_spec.matching.covariates)}: {len(keep)} of {len(frame)} subjects kept")
        frame = frame.iloc[keep]
    y = outcome_values(frame[outcome])
    reliability: dict[str, float] = {}
    allowed: set[str] | None = None
    rel = recipe.preprocess.reliability
    if rel is not None:
        repeat = read_feature_table(rel.table, recipe.data.id)
        feature_cols = [c for c in frame.columns if ":" in c]
        reliability = reliable_features([frame[feature_cols], repeat[[c for c in feature_cols if c in repeat]]],
                                        rel.threshold)
        allowed = set(reliability)
        notes.append(f"reliability: {len(reliability)} of {len(feature_cols)} features with ICC > {rel.threshold}")
    columns = _feature_columns(frame, recipe, allowed)
    groups = _groups(frame, recipe, notes)
    features = frame.drop(columns=[outcome])
    seed = split_spec.seed
    if split_spec.method == "holdout":
        split = holdout_split(y, split_spec.test_size, seed, groups)
        models = fit_models(features.iloc[split.train], y[split.train], recipe, columns, seed)
        parts = [_predictions(models, features, y, recipe, split.train, "train", 0),
                 _predictions(models, features, y, recipe, split.test, "test", 0)]
    else:
        parts = []
        for split in kfold_splits(y, split_spec.folds, seed, groups):
            fold_models = fit_models(features.iloc[split.train], y[split.train], recipe, columns, seed)
            parts.append(_predictions(fold_models, features, y, recipe, split.test, "test", split.fold))
        models = fit_models(features, y, recipe, columns, seed)
        parts.insert(0, _predictions(models, features, y, recipe, np.arange(len(y)), "train", -1))
        notes.append(f"{split_spec.folds}-fold CV: test scores are out-of-fold; exported estimators "
                     "are refitted on all subjects")
    predictions = pd.concat(parts, ignore_index=True)
    return CohortFit(recipe=recipe, table=frame, models=models, predictions=predictions,
                     reliability=reliability, notes=notes)


def _groups(frame: pd.DataFrame, recipe: Recipe, notes: list[str]) -> np.ndarray | None:
    """The group (patient) of each row, when the recipe names a group column."""
    column = recipe.data.group
    if column is None:
        return None
    if column not in frame.columns or frame[column].isna().any():
        raise ValueError(f"group column {column!r} missing from the feature table or incomplete")
    groups = frame[column].astype(str).to_numpy()
    notes.append(f"rows grouped by {column}: {len(set(groups))} groups for {len(groups)} rows never split")
    return groups


def outcome_values(outcome: pd.Series) -> np.ndarray:
    """The outcome column as labels: whole numbers read as floats (a CSV with gaps) become integers."""
    y = outcome.to_numpy()
    if y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0):
        y = y.astype(int)
    return y


def predictions_frame(models: FittedModels, features: pd.DataFrame, y: np.ndarray, recipe: Recipe,
                      partition: str, fold: int) -> pd.DataFrame:
    """``id, partition, fold, y`` and every score of ``models`` for these rows."""
    scores = score_rows(models, features, recipe)
    head = pd.DataFrame({"id": features.index.to_numpy(), "partition": partition, "fold": fold, "y": y})
    return pd.concat([head, scores.reset_index(drop=True)], axis=1)


def _predictions(models: FittedModels, features: pd.DataFrame, y: np.ndarray, recipe: Recipe,
                 rows: np.ndarray, partition: str, fold: int) -> pd.DataFrame:
    return predictions_frame(models, features.iloc[rows], y[rows], recipe, partition, fold)

