"""Model builders: radscore pipelines, logistic models on radscores, classifier families.

Pipelines are imbalanced-learn's (a scikit-learn ``Pipeline`` that also takes
samplers, applied while fitting only), so that random oversampling can be a
step of the chain and stays inside the training split and each inner fold.

Every builder returns an unfitted scikit-learn estimator; :mod:`inference.cohort.fit`
fits it on the training split only. Feature columns of a study-level table
are named ``"<voi>:<feature>"`` (``"cortical:original_firstorder_Mean"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from imblearn.over_sampling import RandomOverSampler
from imblearn.pipeline import Pipeline
from lightgbm import LGBMClassifier
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.class_weight import compute_sample_weight
from xgboost import XGBClassifier

from inference.cohort.preprocess import ComBatHarmoniser, CorrelationFilter, DeepPca, make_scaler
from inference.cohort.recipe import (
    CorrelationStep, LassoStep, MrmrStep, OversampleStep, Recipe, RfecvStep, RfeStep, StabilityStep,
)
from inference.cohort.select import LassoLogisticCV, MrmrSelector, StabilitySelector, make_rfe, make_rfecv

VOI_SEPARATOR = ":"


def voi_columns(columns: Sequence[str], voi: str) -> list[str]:
    """The feature columns of one VOI, in table order."""
    prefix = voi + VOI_SEPARATOR
    return [c for c in columns if c.startswith(prefix)]


class ColumnSelector(TransformerMixin, BaseEstimator):
    """Keeps the named DataFrame columns (the first step of every pipeline)."""

    def __init__(self, columns: Sequence[str] = ()):
        self.columns = columns

    def fit(self, X: pd.DataFrame, y: object = None) -> ColumnSelector:
        missing = [c for c in self.columns if c not in X.columns]
        if missing:
            raise ValueError(f"feature table lacks {len(missing)} column(s), e.g. {missing[0]!r}")
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        return X.loc[:, list(self.columns)]

    def get_feature_names_out(self, input_features: Sequence[str] | None = None) -> np.ndarray:
        return np.asarray(self.columns, dtype=object)


def _selection_steps(recipe: Recipe, final_lasso: bool, seed: int) -> list[tuple[str, Any]]:
    steps: list[tuple[str, Any]] = []
    chain = recipe.selection[:-1] if final_lasso else recipe.selection
    for i, step in enumerate(chain):
        name = f"select{i}_{step.method}"
        if isinstance(step, MrmrStep):
            steps.append((name, MrmrSelector(k=step.k, random_state=seed)))
        elif isinstance(step, LassoStep):
            steps.append((name, LassoLogisticCV(rule=step.rule, folds=step.folds, n_lambdas=step.n_lambdas,
                                                random_state=seed, keep_at_least=1)))
        elif isinstance(step, StabilityStep):
            steps.append((name, StabilitySelector(k=step.k, resamples=step.resamples,
                                                  threshold=step.threshold, random_state=seed)))
        elif isinstance(step, RfeStep):
            steps.append((name, make_rfe(step.k)))
        elif isinstance(step, RfecvStep):
            steps.append((name, make_rfecv(step.folds, step.min_features, seed)))
        elif isinstance(step, CorrelationStep):
            steps.append((name, CorrelationFilter(threshold=step.threshold, method=step.kind)))
        elif isinstance(step, OversampleStep):
            steps.append((name, RandomOverSampler(random_state=seed)))
    return steps


def features_into_model(pipeline: Pipeline) -> Pipeline:
    """The fitted steps before a pipeline's estimator without its samplers: what turns a table into
    the estimator's input (a sampler changes only which rows a fit sees)."""
    return Pipeline([(name, step) for name, step in pipeline.steps[:-1] if not hasattr(step, "fit_resample")])


def _front(recipe: Recipe, columns: list[str]) -> list[tuple[str, Any]]:
    """Column choice, harmonisation, scaling and the redundancy filter."""
    batch = recipe.preprocess.harmonise_by
    steps: list[tuple[str, Any]] = [("columns", ColumnSelector(columns + ([batch] if batch else [])))]
    if batch:
        steps.append(("harmonise", ComBatHarmoniser(batch_column=batch)))
    steps.append(("scale", make_scaler(recipe.preprocess.normalisation)))
    if recipe.preprocess.deep_pca is not None:
        steps.append(("deep_pca", DeepPca(recipe.preprocess.deep_pca)))
    corr = recipe.preprocess.correlation
    if corr is not None:
        steps.append(("correlation", CorrelationFilter(threshold=corr.threshold, method=corr.method)))
    return steps


def radscore_pipeline(recipe: Recipe, columns: list[str], seed: int = 0) -> Pipeline:
    """Features of one VOI -> preprocessing -> selection -> linear radscore.

    When the last selection step is the LASSO, its coefficients are the
    radscore (the source studies' mRMR + LASSO recipe); otherwise an
    L2-logistic regression on the selected features gives them. The radscore
    is the pipeline's ``decision_function``.
    """
    final_lasso = bool(recipe.selection) and isinstance(recipe.selection[-1], LassoStep)
    steps = _front(recipe, columns) + _selection_steps(recipe, final_lasso, seed)
    if final_lasso:
        last = recipe.selection[-1]
        steps.append(("radscore", LassoLogisticCV(rule=last.rule, folds=last.folds,
                                                  n_lambdas=last.n_lambdas, random_state=seed)))
    else:
        steps.append(("radscore", LogisticRegression(C=1.0, max_iter=5000)))
    return Pipeline(steps)


def logistic_on_inputs() -> LogisticRegression:
    """Unpenalised logistic regression, as R's ``glm(family = binomial)`` the studies used."""
    return LogisticRegression(C=np.inf, max_iter=10000)


class BalancedXGBClassifier(XGBClassifier):
    """XGBoost with classes weighted inversely to their frequency, as the other families'
    ``class_weight="balanced"`` (XGBoost itself only has ``scale_pos_weight``, for two classes)."""

    def fit(self, X: Any, y: Any, **kwargs: Any) -> BalancedXGBClassifier:
        if kwargs.get("sample_weight") is None:
            kwargs["sample_weight"] = compute_sample_weight("balanced", y)
        super().fit(X, y, **kwargs)
        return self


class PlainLGBMClassifier(LGBMClassifier):
    """LightGBM given plain arrays: it refuses feature names with JSON characters, and radiomics
    columns are named ``<voi>:<feature>``."""

    def fit(self, X: Any, y: Any, **kwargs: Any) -> PlainLGBMClassifier:
        super().fit(np.asarray(X, dtype=float), y, **kwargs)
        return self

    def predict_proba(self, X: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        return super().predict_proba(np.asarray(X, dtype=float), *args, **kwargs)

    def predict(self, X: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        return super().predict(np.asarray(X, dtype=float), *args, **kwargs)


_FAMILIES: dict[str, tuple[type, dict[str, Any], dict[str, list[Any]]]] = {
    # family: (estimator, fixed parameters, default grid)
    "logistic": (LogisticRegression, {"max_iter": 5000, "class_weight": "balanced"},
                 {"C": [0.01, 0.1, 1.0, 10.0]}),
    "svm": (SVC, {"probability": True, "class_weight": "balanced"},
            {"C": [0.1, 1.0, 10.0], "kernel": ["linear", "rbf"]}),
    "knn": (KNeighborsClassifier, {}, {"n_neighbors": [5, 9, 15]}),
    "decision_tree": (DecisionTreeClassifier, {"class_weight": "balanced"}, {"max_depth": [2, 3, 5]}),
    "random_forest": (RandomForestClassifier, {"class_weight": "balanced", "n_estimators": 200},
                      {"max_depth": [3, None]}),
    "extra_trees": (ExtraTreesClassifier, {"class_weight": "balanced", "n_estimators": 200},
                    {"max_depth": [3, None]}),
    # scikit-learn's histogram gradient boosting (the LightGBM algorithm, Ke et al., NeurIPS 2017);
    # XGBoost and LightGBM themselves below, as the fracture-type study compared them.
    "gradient_boosting": (HistGradientBoostingClassifier, {"class_weight": "balanced"},
                          {"learning_rate": [0.05, 0.1], "max_depth": [2, 3]}),
    "mlp": (MLPClassifier, {"max_iter": 2000, "early_stopping": False},
            {"hidden_layer_sizes": [(16,), (32, 16)], "alpha": [1e-3, 1e-1]}),
    "xgboost": (BalancedXGBClassifier, {"n_estimators": 200, "n_jobs": 1, "verbosity": 0},
                {"max_depth": [2, 3], "learning_rate": [0.05, 0.1]}),
    "lightgbm": (PlainLGBMClassifier, {"class_weight": "balanced", "n_estimators": 200, "n_jobs": 1, "verbose": -1},
                 {"num_leaves": [7, 15], "learning_rate": [0.05, 0.1]}),
}

CLASSIFIER_FAMILIES = tuple(_FAMILIES)


def classifier_pipeline(recipe: Recipe, columns: list[str], family: str, grid: dict[str, list[Any]],
                        n_classes: int, seed: int = 0) -> GridSearchCV:
    """All VOIs' features -> preprocessing -> selection -> one classifier family, grid-searched.

    The grid search runs a stratified 5-fold CV inside the training split
    (AUC; one-vs-rest macro AUC for more than two classes); more than two
    classes are fitted one-vs-rest.
    """
    estimator_cls, fixed, default_grid = _FAMILIES[family]
    params = dict(fixed)
    if "random_state" in estimator_cls().get_params():
        params["random_state"] = seed
    estimator = estimator_cls(**params)
    search_grid = grid or default_grid
    prefix = "clf__"
    if n_classes > 2:
        estimator = OneVsRestClassifier(estimator)
        prefix = "clf__estimator__"
    steps = _front(recipe, columns) + _selection_steps(recipe, final_lasso=False, seed=seed)
    steps.append(("clf", estimator))
    scoring = "roc_auc" if n_classes == 2 else "roc_auc_ovr"
    return GridSearchCV(Pipeline(steps), {prefix + k: v for k, v in search_grid.items()}, scoring=scoring,
                        cv=StratifiedKFold(5, shuffle=True, random_state=seed), n_jobs=1, error_score="raise")
