"""Performance of every score of a :class:`CohortFit` on its train and test partitions.

For each score (radscores, logistic models, classifiers) and partition: AUC
with DeLong 95 % CI and a stratified bootstrap CI, the metrics at the Youden
threshold chosen on the training partition (so the test figures are honest),
and for probabilities the calibration (Brier, Hosmer-Lemeshow, slope) and
the decision curve. Paired DeLong tests compare every pair of logistic models
on each partition, and every score with a reference standard column when one
is named (:class:`ReferenceStandard`: the site's QCT vBMD or DXA T-score). Permutation importance (scikit-learn) explains each
classifier and logistic model on the test partition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.metrics import f1_score

from inference.cohort import stats
from inference.cohort.fit import CohortFit, logistic_inputs

PARTITIONS = ("train", "test", "external")
"""Where a score was computed: the training split, the test split (or out-of-fold), an external cohort
(:mod:`inference.cohort.validate`)."""


@dataclass(frozen=True)
class ReferenceStandard:
    """A column of the subjects' table that every score is compared with (paired DeLong test).

    Low values of a vBMD, T-score or attenuation mean disease, so by default
    the column is oriented (negated) before its AUC and the tests.
    """

    column: str
    direction: Literal["lower", "higher"] = "lower"
    """Which values mean the event: "lower" for vBMD, T-score or attenuation, "higher" for a risk score."""

    def values(self, table: pd.DataFrame) -> pd.Series:
        """The column, oriented so that higher means the event.

        Raises:
            ValueError: the column is missing, not numeric or incomplete.
        """
        if self.column not in table.columns:
            raise ValueError(f"no reference column {self.column!r}")
        values = table[self.column]
        if not pd.api.types.is_numeric_dtype(values) or values.isna().any():
            raise ValueError(f"reference column {self.column!r} must be numeric with no missing value")
        return -values.astype(float) if self.direction == "lower" else values.astype(float)


def compare_with_reference(pred: pd.DataFrame, oriented: pd.Series, reference: ReferenceStandard) -> dict[str, Any]:
    """The reference's own AUC per partition and a paired DeLong test of every score against it.

    ``oriented``: :meth:`ReferenceStandard.values`, indexed by subject id as ``pred.id``.
    """
    name = f"reference:{reference.column}"
    out: dict[str, Any] = {"column": reference.column, "direction": reference.direction, "auc": {},
                           "comparisons": []}
    for partition in PARTITIONS:
        part = pred[pred.partition == partition]
        if part["y"].nunique() < 2:
            continue
        y, ref = part["y"].to_numpy(), oriented.loc[part["id"]].to_numpy()
        out["auc"][partition] = asdict(stats.delong_auc(y, ref))
        out["comparisons"] += [{"a": column, "b": name, "partition": partition,
                                **asdict(stats.delong_test(y, part[column].to_numpy(), ref))}
                               for column in score_columns(pred)]
    return out


def score_columns(predictions: pd.DataFrame) -> list[str]:
    return [c for c in predictions.columns if c.split(":")[0] in ("radscore", "model", "clf")]


def _is_probability(column: str) -> bool:
    return not column.startswith("radscore:")


def evaluate_fit(fit: CohortFit, bootstrap: int = 1000, seed: int = 0,
                 reference: ReferenceStandard | None = None) -> dict[str, Any]:
    """The evaluation document (JSON-able): ``{"binary": ..., "scores": {...}, "comparisons": [...]}``.

    Raises:
        ValueError: a reference column the fitted table lacks, or not numeric and complete.
    """
    if not fit.binary:
        return _evaluate_multiclass(fit, bootstrap, seed)
    out = evaluate_predictions(fit.predictions, bootstrap, seed)
    out["importance"] = _importance(fit, seed)
    if reference is not None:
        out["reference"] = compare_with_reference(fit.predictions, reference.values(fit.table), reference)
        out["comparisons"] += out["reference"].pop("comparisons")
    return out


def evaluate_predictions(pred: pd.DataFrame, bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Evaluation of binary scores given as ``id, partition, y`` and score columns."""
    out: dict[str, Any] = {"binary": True, "scores": {}, "comparisons": [], "importance": {}}
    train = pred[pred.partition == "train"]
    for column in score_columns(pred):
        threshold = stats.youden_threshold(train["y"], train[column])
        entry: dict[str, Any] = {"youden_threshold_train": threshold}
        for partition in PARTITIONS:
            part = pred[pred.partition == partition]
            if part["y"].nunique() < 2:
                continue
            y, s = part["y"].to_numpy(), part[column].to_numpy()
            result: dict[str, Any] = {
                "n": int(len(y)), "events": int(y.sum()),
                "auc": asdict(stats.delong_auc(y, s)),
                "auc_bootstrap": asdict(stats.bootstrap_ci(y, s, n_resamples=bootstrap, seed=seed)),
                "at_threshold": {**asdict(stats.metrics_at(y, s, threshold)),
                                 "confusion_matrix": stats.metrics_at(y, s, threshold).confusion_matrix},
            }
            if _is_probability(column):
                result["calibration"] = asdict(stats.calibration(y, s))
                result["decision_curve"] = asdict(stats.decision_curve(y, s))
            entry[partition] = result
        out["scores"][column] = entry
    models = [c for c in score_columns(pred) if c.startswith("model:")]
    for partition in PARTITIONS:
        part = pred[pred.partition == partition]
        if part["y"].nunique() < 2:
            continue
        for a, b in combinations(models, 2):
            out["comparisons"].append({"a": a, "b": b, "partition": partition,
                                       **asdict(stats.delong_test(part["y"], part[a], part[b]))})
    return out


def _importance(fit: CohortFit, seed: int) -> dict[str, dict[str, float]]:
    """Mean decrease of test AUC when one input is permuted (5 repeats)."""
    pred = fit.predictions
    test_ids = pred.loc[pred.partition == "test", "id"].drop_duplicates()
    if fit.recipe.split.method != "holdout" or len(test_ids) == 0:
        return {}
    table = fit.table.drop(columns=[fit.recipe.data.outcome]).loc[test_ids]
    y = fit.table.loc[test_ids, fit.recipe.data.outcome].to_numpy()
    out: dict[str, dict[str, float]] = {}
    if fit.models.radscores:
        inputs = logistic_inputs(table, fit.models.radscores)
        for spec in fit.recipe.models:
            result = permutation_importance(fit.models.logistic[spec.name], inputs.loc[:, list(spec.inputs)], y,
                                            scoring="roc_auc", n_repeats=5, random_state=seed)
            out[f"model:{spec.name}"] = dict(zip(spec.inputs, result.importances_mean.tolist(), strict=True))
    for family, estimator in fit.models.classifiers.items():
        result = permutation_importance(estimator, table, y, scoring="roc_auc", n_repeats=5, random_state=seed)
        ranked = sorted(zip(table.columns, result.importances_mean.tolist(), strict=True),
                        key=lambda kv: -abs(kv[1]))[:10]
        out[f"clf:{family}"] = dict(ranked)
    return out


def _evaluate_multiclass(fit: CohortFit, bootstrap: int, seed: int) -> dict[str, Any]:
    return evaluate_multiclass_predictions(fit.predictions, fit.models.classes, list(fit.models.classifiers),
                                           bootstrap, seed)


def evaluate_multiclass_predictions(pred: pd.DataFrame, classes: Sequence[object], families: Sequence[str],
                                    bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Per classifier and partition: one-vs-rest, macro and micro AUC, accuracy, macro and micro F1 of the
    most probable class, and per class its AUC (DeLong and bootstrap CIs) and sensitivity, specificity
    and F1 one-vs-rest (bootstrap CIs); bootstrap resampling within each class."""
    classes = list(classes)
    out: dict[str, Any] = {"binary": False, "classes": [str(c) for c in classes], "scores": {}}
    for family in families:
        columns = [f"clf:{family}:{c}" for c in classes]
        entry = {}
        for partition in PARTITIONS:
            part = pred[pred.partition == partition]
            if part.empty:
                continue
            y, proba = part["y"].to_numpy(), part[columns].to_numpy()
            result = asdict(stats.multiclass_auc(y, proba, classes))

            def macro_auc(yy: np.ndarray, pp: np.ndarray) -> float:
                return stats.multiclass_auc(yy, pp, classes).macro

            def macro_f1(yy: np.ndarray, pp: np.ndarray) -> float:
                return float(f1_score(yy, np.asarray(classes)[np.argmax(pp, axis=1)], average="macro"))

            predicted = np.asarray(classes)[np.argmax(proba, axis=1)]
            result.update(
                accuracy=float(np.mean(predicted == y)),
                f1_macro=float(f1_score(y, predicted, average="macro")),
                f1_micro=float(f1_score(y, predicted, average="micro")),
                macro_bootstrap=asdict(stats.multiclass_bootstrap_ci(y, proba, macro_auc, bootstrap, seed=seed)),
                f1_macro_bootstrap=asdict(stats.multiclass_bootstrap_ci(y, proba, macro_f1, bootstrap, seed=seed)),
                classes={str(c): _one_vs_rest(y == c, proba[:, i], predicted == c, bootstrap, seed)
                         for i, c in enumerate(classes)})
            entry[partition] = result
        out["scores"][f"clf:{family}"] = entry
    return out


def _one_vs_rest(events: np.ndarray, probability: np.ndarray, chosen: np.ndarray, bootstrap: int,
                 seed: int) -> dict[str, Any]:
    """One class against the others: AUC of its probability, and the metrics of choosing it."""
    y, hit = events.astype(int), chosen.astype(float)

    def at_choice(name: str) -> Callable[[np.ndarray, np.ndarray], float]:
        return lambda yy, ss: getattr(stats.metrics_at(yy, ss, 1.0), name)  # positive: this class was chosen

    return {"auc": asdict(stats.delong_auc(y, probability)),
            "auc_bootstrap": asdict(stats.bootstrap_ci(y, probability, n_resamples=bootstrap, seed=seed)),
            **{name: asdict(stats.bootstrap_ci(y, hit, at_choice(name), n_resamples=bootstrap, seed=seed))
               for name in ("sensitivity", "specificity", "f1")}}


def classifier_performance_summary(evaluation: dict[str, Any], family: str = "logistic") -> dict[str, Any]:
    """What goes into an exported multi-class model file: the classifier's test macro and micro AUC,
    accuracy and macro F1 (bootstrap CIs), and per class its AUC (DeLong CI), sensitivity, specificity and F1."""
    test = evaluation["scores"].get(f"clf:{family}", {}).get("test")
    if not test:
        return {"classifier": family}
    return {
        "classifier": family, "macro_auc_test": test["macro"],
        "macro_auc_ci95": [test["macro_bootstrap"]["ci_low"], test["macro_bootstrap"]["ci_high"]],
        "micro_auc_test": test["micro"], "accuracy_test": test["accuracy"], "f1_macro_test": test["f1_macro"],
        "classes_test": {cls: {"auc": figures["auc"]["auc"],
                               "auc_ci95": [figures["auc"]["ci_low"], figures["auc"]["ci_high"]],
                               **{name: figures[name]["estimate"] for name in ("sensitivity", "specificity", "f1")}}
                         for cls, figures in test["classes"].items()},
    }


def performance_summary(evaluation: dict[str, Any], primary: str) -> dict[str, Any]:
    """What goes into the exported model file: test AUCs (DeLong CI) of every model, and the
    primary model's test metrics at the training Youden threshold, Brier and calibration."""
    scores = evaluation["scores"]
    summary: dict[str, Any] = {"auc_test": {}, "primary": primary}
    for name, entry in scores.items():
        if "test" in entry:
            auc = entry["test"]["auc"]
            summary["auc_test"][name] = {"auc": auc["auc"], "ci95": [auc["ci_low"], auc["ci_high"]],
                                         "method": "DeLong"}
    main = scores.get(f"model:{primary}", {}).get("test")
    if main:
        summary["primary_test"] = {
            "n": main["n"], "events": main["events"],
            **{k: main["at_threshold"][k] for k in ("threshold", "accuracy", "sensitivity", "specificity",
                                                   "ppv", "npv")},
            "brier": main["calibration"]["brier"], "hosmer_lemeshow_p": main["calibration"]["hosmer_lemeshow_p"],
            "calibration_slope": main["calibration"]["slope"],
        }
    return summary
