"""Local calibration of a published radscore model (coefficients fixed).

A publication gives the radscore coefficients but rarely the training
cohort's normalisation constants or the logistic intercepts and slopes. On
the training split of the local cohort this module fits exactly those:

1. each term's normalisation constants (z-score: mean and SD of the feature's
   study-level value; max-abs: its largest absolute value), as the
   publication's own preprocessing would have on its cohort;
2. every logistic model's intercept and coefficients on the resulting
   radscores (and vBMD) - for a one-radscore model that is the logistic
   recalibration intercept and slope (Cox 1958; Steyerberg, *Clinical
   Prediction Models*, ch. 20);
3. the operating threshold (Youden on the training split) and the risk
   category bounds given by the site.

The radscore coefficients and intercepts are never changed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from inference.cohort.fit import logistic_on_inputs
from inference.cohort.models import VOI_SEPARATOR
from inference.cohort.split import holdout_split
from inference.cohort.stats import youden_threshold
from inference.models import LogisticModel, Normalisation, RadscoreModel, RiskCategory
from inference.models.model import VBMD_INPUT


class CalibrationError(ValueError):
    """The cohort lacks what calibration needs (a feature column, vBMD, both outcomes)."""


def study_radscores(model: RadscoreModel, table: pd.DataFrame) -> pd.DataFrame:
    """Study radscores of a (calibrated or not) model from study-level ``"<voi>:<feature>"`` columns."""
    out = pd.DataFrame(index=table.index)
    for voi, formula in model.radscores.items():
        columns = [f"{voi}{VOI_SEPARATOR}{term.feature}" for term in formula.terms]
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise CalibrationError(f"feature table lacks {len(missing)} feature(s) of the {voi} radscore, "
                                   f"e.g. {missing[0]!r}")
        values = table[columns].to_numpy(float)
        out[voi] = [formula.intercept + math.fsum(c.value for c in formula.contributions(
            {t.feature: v for t, v in zip(formula.terms, row, strict=True)})) for row in values]
    return out


def study_probabilities(model: RadscoreModel, table: pd.DataFrame) -> pd.DataFrame:
    """Every logistic output of a calibrated model, from study-level features and ``vbmd``."""
    inputs = study_radscores(model, table)
    if VBMD_INPUT in table.columns:
        inputs[VBMD_INPUT] = table[VBMD_INPUT].to_numpy(float)
    out = pd.DataFrame(index=table.index)
    for name, logistic in model.logistic.items():
        logit = logistic.intercept + sum(c * inputs[i] for i, c in logistic.coefficients.items())
        out[name] = 1.0 / (1.0 + np.exp(-logit))
    return out


def _normalisation(method: str, values: np.ndarray) -> Normalisation:
    if method == "z-score":
        sd = float(values.std())
        return Normalisation(method="z-score", center=float(values.mean()), scale=sd if sd > 0 else 1.0)
    largest = float(np.abs(values).max())
    return Normalisation(method="max-abs", scale=largest if largest > 0 else 1.0)


def calibrate_model(published: RadscoreModel, table: pd.DataFrame, outcome: str, *, model_id: str,
                    version: str = "1.0.0", categories: Sequence[float] = (0.2, 0.5),
                    train_rows: np.ndarray | None = None, test_size: float = 0.3,
                    seed: int = 42) -> tuple[RadscoreModel, pd.DataFrame]:
    """Fit a published model's missing constants on the local cohort.

    Args:
        published: the model with ``null`` constants (e.g. ``che2025-published``).
        table: study-level feature table with ``outcome`` (0/1) and, when a
            logistic model uses it, ``vbmd``.
        train_rows: row positions to calibrate on; None: a stratified
            ``test_size`` holdout with ``seed`` (the rest is the test split).

    Returns:
        The calibrated model and the predictions (``id, partition, y``,
        ``radscore:<voi>``, ``model:<name>``) on train and test rows.

    Raises:
        CalibrationError: missing features, vBMD or outcome values.
    """
    if outcome not in table.columns or table[outcome].isna().any():
        raise CalibrationError(f"outcome {outcome!r} missing from the feature table or for some subjects")
    y = table[outcome].to_numpy().astype(int)
    if train_rows is None:
        split = holdout_split(y, test_size, seed)
        train_rows, test_rows = split.train, split.test
    else:
        test_rows = np.setdiff1d(np.arange(len(table)), train_rows)
    train = table.iloc[train_rows]
    radscores = {}
    for voi, formula in published.radscores.items():
        terms = []
        for term in formula.terms:
            column = f"{voi}{VOI_SEPARATOR}{term.feature}"
            if column not in table.columns:
                raise CalibrationError(f"feature table lacks {column!r} (needed by the {voi} radscore)")
            norm = _normalisation(term.normalisation.method, train[column].to_numpy(float))
            terms.append(term.model_copy(update={"normalisation": norm}))
        radscores[voi] = formula.model_copy(update={"terms": tuple(terms)})
    normalised = published.model_copy(update={"radscores": radscores})
    inputs = study_radscores(normalised, train)
    if any(VBMD_INPUT in lg.coefficients for lg in published.logistic.values()):
        if VBMD_INPUT not in table.columns or train[VBMD_INPUT].isna().any():
            raise CalibrationError("a logistic model uses vBMD but the feature table has no complete 'vbmd' column")
        inputs[VBMD_INPUT] = train[VBMD_INPUT].to_numpy(float)
    logistic = {}
    for name, lg in published.logistic.items():
        names = list(lg.coefficients)
        fitted = logistic_on_inputs().fit(inputs[names], y[train_rows])
        logistic[name] = LogisticModel(intercept=float(fitted.intercept_[0]),
                                       coefficients={n: float(c) for n, c in zip(names, fitted.coef_[0], strict=True)})
    primary = published.primary_output or next(iter(logistic))
    train_probability = study_probabilities(normalised.model_copy(update={"logistic": logistic}), train)[primary]
    threshold = youden_threshold(y[train_rows], train_probability.to_numpy())
    names = [c.name for c in published.categories] or ["low", "intermediate", "high"]
    if len(names) != len(categories) + 1:
        raise CalibrationError(f"{len(names)} risk categories need {len(names) - 1} bounds, got {len(categories)}")
    calibrated = RadscoreModel.model_validate({
        **published.to_dict(),
        "id": model_id, "version": version,
        "description": f"{published.id} calibrated on a local cohort of {len(train_rows)} subjects "
                       "(radscore coefficients as published; normalisation, logistic constants and "
                       "threshold fitted locally)",
        "provenance": {**published.provenance, "calibrated_from": f"{published.id} {published.version}",
                       "calibration": "scpnode cohort calibrate"},
        "radscores": {k: v.model_dump(mode="json") for k, v in radscores.items()},
        "logistic": {k: v.model_dump(mode="json") for k, v in logistic.items()},
        "primary_output": primary, "operating_threshold": threshold,
        "categories": [RiskCategory(name=n, below=b).model_dump() for n, b in zip(names, [*categories, None], strict=True)],
        "cohort": {"subjects": int(len(table)), "calibration_subjects": int(len(train_rows)),
                   "events": int(y.sum())},
    })
    predictions = _predictions(calibrated, table, y, train_rows, test_rows)
    return calibrated, predictions


def _predictions(model: RadscoreModel, table: pd.DataFrame, y: np.ndarray,
                 train_rows: np.ndarray, test_rows: np.ndarray) -> pd.DataFrame:
    radscores = study_radscores(model, table)
    probabilities = study_probabilities(model, table)
    parts: list[pd.DataFrame] = []
    for partition, rows in (("train", train_rows), ("test", test_rows)):
        if len(rows) == 0:
            continue
        frame: dict[str, Any] = {"id": table.index[rows].to_numpy(), "partition": partition, "fold": 0, "y": y[rows]}
        frame.update({f"radscore:{v}": radscores[v].to_numpy()[rows] for v in radscores})
        frame.update({f"model:{m}": probabilities[m].to_numpy()[rows] for m in probabilities})
        parts.append(pd.DataFrame(frame))
    return pd.concat(parts, ignore_index=True)
