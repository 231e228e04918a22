"""SHAP figures of a fitted cohort model: which inputs drive its predictions (the ``shap`` package).

For every classifier family the final estimator (for more than two classes,
each class's one-vs-rest estimator) is explained on the training rows as its
pipeline transforms them (after scaling and selection): ``shap.TreeExplainer``
for the tree families (decision tree,
random forest, extra trees, gradient boosting, XGBoost, LightGBM),
``shap.LinearExplainer`` for the logistic family and for each logistic model
on radscores and covariates. Three figures each, as the fracture-type study
shows them: ``shap_bar_<model>.png`` (mean |SHAP|), ``shap_beeswarm_<model>.png``
and ``shap_decision_<model>.png`` (the first 20 test subjects). Families
without a fast exact explainer (SVM, k-NN, MLP) are left out and named in the
return value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import shap  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from inference.cohort.fit import CohortFit, logistic_inputs  # noqa: E402
from inference.cohort.models import features_into_model  # noqa: E402
from inference.cohort.report import file_part, save_figure  # noqa: E402

TREE_FAMILIES = ("decision_tree", "random_forest", "extra_trees", "gradient_boosting", "xgboost", "lightgbm")
LINEAR_FAMILIES = ("logistic",)
DECISION_SUBJECTS = 20


def _explain(estimator: Any, background: pd.DataFrame, shown: pd.DataFrame) -> tuple[np.ndarray, float]:
    """SHAP values of ``shown`` (rows x features; the positive class, log-odds scale) and the expected value;
    a linear model is explained against the ``background`` rows, a tree model by its own structure."""
    if isinstance(estimator, LogisticRegression):
        explainer = shap.LinearExplainer(estimator, background)
    else:
        explainer = shap.TreeExplainer(estimator)
    values = explainer.shap_values(shown)
    expected = np.atleast_1d(explainer.expected_value)
    if isinstance(values, list):  # one array per class
        values = values[-1]
    values = np.asarray(values)
    if values.ndim == 3:  # rows x features x classes
        values = values[:, :, -1]
    return values, float(expected[-1])


def _figures(name: str, values: np.ndarray, expected: float, data: pd.DataFrame, out: Path) -> list[Path]:
    paths = []
    for kind in ("bar", "beeswarm"):
        plt.figure()
        shap.summary_plot(values, data, plot_type="bar" if kind == "bar" else "dot", show=False, max_display=15)
        fig = plt.gcf()
        fig.suptitle(f"SHAP {kind}, {name}", fontsize=10)
        paths.append(save_figure(fig, out / f"shap_{kind}_{file_part(name)}.png"))
    plt.figure()
    shown = min(DECISION_SUBJECTS, len(data))
    shap.decision_plot(expected, values[:shown], data.iloc[:shown], show=False, feature_display_range=slice(-1, -16, -1))
    fig = plt.gcf()
    fig.suptitle(f"SHAP decision plot, {name} ({shown} subjects)", fontsize=10)
    paths.append(save_figure(fig, out / f"shap_decision_{file_part(name)}.png"))
    return paths


def shap_figures(fit: CohortFit, out_dir: str | Path) -> tuple[list[Path], list[str]]:
    """Write the SHAP figures of every explainable model; return (paths, models left out).

    For more than two classes each class's one-vs-rest estimator is explained on its own
    (``shap_<kind>_clf_<family>_<class>.png``: what drives that class against the others).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    preds = fit.predictions
    train_ids = preds.loc[preds.partition == "train", "id"].drop_duplicates()
    test_ids = preds.loc[preds.partition == "test", "id"].drop_duplicates()
    shown_ids = test_ids if len(test_ids) else train_ids
    table = fit.table.drop(columns=[fit.recipe.data.outcome])
    paths: list[Path] = []
    left_out: list[str] = []
    for family, pipeline in fit.models.classifiers.items():
        if family not in TREE_FAMILIES + LINEAR_FAMILIES:
            left_out.append(f"clf:{family} (no fast exact SHAP explainer)")
            continue
        front = features_into_model(pipeline)
        background = pd.DataFrame(front.transform(table.loc[train_ids]))
        shown = pd.DataFrame(front.transform(table.loc[shown_ids]))
        if fit.binary:
            values, expected = _explain(pipeline[-1], background, shown)
            paths += _figures(f"clf:{family}", values, expected, shown, out)
            continue
        for cls, estimator in zip(fit.models.classes, pipeline[-1].estimators_, strict=True):
            values, expected = _explain(estimator, background, shown)
            paths += _figures(f"clf:{family}:{cls}", values, expected, shown, out)
    if fit.models.radscores:
        inputs = logistic_inputs(table, fit.models.radscores)
        for spec in fit.recipe.models:
            columns = list(spec.inputs)
            background = inputs.loc[train_ids, columns].astype(float)
            shown = inputs.loc[shown_ids, columns].astype(float)
            values, expected = _explain(fit.models.logistic[spec.name], background, shown)
            paths += _figures(f"model:{spec.name}", values, expected, shown, out)
    return paths, left_out
