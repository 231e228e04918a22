"""Feature selection, as scikit-learn estimators fitted inside the training split.

- :class:`MrmrSelector`: minimum-redundancy maximum-relevance top-k (Peng,
  Long & Ding, IEEE TPAMI 2005;27:1226), the difference scheme (MID):
  relevance = mutual information with the outcome (scikit-learn's k-NN
  estimator), redundancy = mean mutual information with the features already
  chosen, taken as the Gaussian value -log(1 - r^2)/2 of their Pearson r so
  both terms are in nats.
- :class:`LassoLogisticCV`: L1-penalised logistic regression on a glmnet
  lambda path with K-fold CV of the binomial deviance, at lambda.min or the
  one-standard-error rule (Friedman, Hastie & Tibshirani, J Stat Softw
  2010;33(1)). It is both a selector (non-zero coefficients) and the radscore
  estimator (radscore = intercept + sum(coef x feature)).
- :class:`StabilitySelector`: L2-logistic stability selection - the features
  most often among the top-k |coefficients| over half-sample resamples
  (Meinshausen & Buehlmann, JRSS-B 2010;72:417).
- :func:`make_rfe`: recursive feature elimination with a linear SVM
  (Guyon et al., Mach Learn 2002;46:389), scikit-learn's ``RFE``.

**lambda <-> C.** glmnet minimises ``-(1/n) loglik(b0, b) + lambda * ||b||_1``;
scikit-learn's ``LogisticRegression`` minimises ``C * sum(logloss) + ||b||_1``.
Dividing the latter by ``C * n`` gives the former with ``lambda = 1 / (n C)``,
so ``C = 1 / (n * lambda)``. The path starts at glmnet's ``lambda_max =
max_j |x_j' (y - ybar)| / n`` (the smallest lambda with every coefficient zero,
on standardised x) and ends at ``lambda_min_ratio * lambda_max`` (0.01 when
n < p, else 1e-4), log-spaced, as glmnet does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.feature_selection import RFE, RFECV, SelectorMixin, mutual_info_classif
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC
from sklearn.utils.validation import check_is_fitted


class _FrameSelector(SelectorMixin, BaseEstimator):
    """A selector that keeps DataFrame columns and names (``support_`` set by ``fit``)."""

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "support_")
        return self.support_

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame):
            return X.loc[:, self._get_support_mask()]
        return super().transform(X)

    def _remember(self, X: pd.DataFrame) -> np.ndarray:
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        return np.asarray(X, dtype=float)


class MrmrSelector(_FrameSelector):
    """Top-``k`` features by mRMR (MID: relevance - redundancy), greedy forward."""

    def __init__(self, k: int = 20, random_state: int = 0):
        self.k = k
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y: Sequence[int]) -> MrmrSelector:
        x = self._remember(X)
        y = np.asarray(y)
        p = x.shape[1]
        relevance = mutual_info_classif(x, y, random_state=self.random_state)
        r = np.nan_to_num(np.corrcoef(x, rowvar=False), nan=0.0) if p > 1 else np.ones((1, 1))
        pairwise_mi = -0.5 * np.log(np.clip(1.0 - r**2, 1e-12, 1.0))
        chosen = [int(np.argmax(relevance))]
        while len(chosen) < min(self.k, p):
            remaining = [j for j in range(p) if j not in chosen]
            redundancy = pairwise_mi[np.ix_(remaining, chosen)].mean(axis=1)
            score = relevance[remaining] - redundancy
            chosen.append(remaining[int(np.argmax(score))])
        self.ranking_ = np.asarray(chosen)
        self.support_ = np.zeros(p, dtype=bool)
        self.support_[chosen] = True
        return self


def lambda_max(X: np.ndarray, y: np.ndarray) -> float:
    """glmnet's largest lambda of the logistic LASSO path (all coefficients zero)."""
    x = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    return float(np.max(np.abs(x.T @ (y - y.mean()))) / len(y))


def lasso_logistic(lam: float, n: int, class_weight: str | None = None) -> LogisticRegression:
    """The scikit-learn estimator solving glmnet's logistic LASSO at ``lambda`` for ``n`` samples.

    liblinear is used for speed; it penalises the intercept like a feature,
    so ``intercept_scaling=100`` makes that penalty negligible (the intercept
    gradient stays below 1e-4), matching glmnet's unpenalised intercept.
    """
    return LogisticRegression(l1_ratio=1.0, C=1.0 / (n * lam), solver="liblinear",
                              intercept_scaling=100.0, tol=1e-8, max_iter=1000, class_weight=class_weight)


def multinomial_lasso(lam: float, n: int) -> LogisticRegression:
    """The multinomial LASSO at ``lambda`` for ``n`` samples (glmnet's ``family = "multinomial"``), by saga,
    whose intercepts are not penalised."""
    return LogisticRegression(l1_ratio=1.0, C=1.0 / (n * lam), solver="saga", tol=1e-4, max_iter=5000)


def _deviance(y: np.ndarray, p: np.ndarray) -> float:
    """Binomial (``p`` a vector) or multinomial (``p`` one column per class, ``y`` class indices) deviance."""
    if p.ndim == 2:
        return float(-2 * np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1.0))))
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-2 * np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


class LassoLogisticCV(_FrameSelector, ClassifierMixin):
    """Logistic LASSO with the penalty chosen by K-fold CV (lambda.min or 1-SE); multinomial for more
    than two classes (then ``coef_`` has one row per class and a feature is kept when any class uses it).

    After ``fit``: ``lambdas_`` (the path), ``coef_path_`` (coefficients on all
    rows at each lambda, for the coefficient-path figure), ``cv_mean_``/``cv_se_``
    (deviance per lambda), ``lambda_min_``, ``lambda_1se_``, ``lambda_`` (the one used),
    ``coef_``/``intercept_`` on all input features (zeros where dropped) and
    ``support_`` (non-zero coefficients; empty when no feature beats the
    null model at the chosen lambda). Expects standardised features, as
    glmnet standardises internally.

    ``keep_at_least=1`` (a selection step in front of a classifier, which needs an input)
    keeps, where the chosen lambda keeps nothing, the feature that enters the path first.
    """

    def __init__(self, rule: str = "1se", folds: int = 10, n_lambdas: int = 50,
                 lambda_min_ratio: float | None = None, random_state: int = 0, keep_at_least: int = 0):
        self.rule = rule
        self.folds = folds
        self.n_lambdas = n_lambdas
        self.lambda_min_ratio = lambda_min_ratio
        self.random_state = random_state
        self.keep_at_least = keep_at_least

    def fit(self, X: pd.DataFrame, y: Sequence[int]) -> LassoLogisticCV:
        if self.rule not in ("min", "1se"):
            raise ValueError(f"rule must be 'min' or '1se', got {self.rule!r}")
        x = self._remember(X)
        self.classes_, y = np.unique(np.asarray(y), return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError("the logistic LASSO needs at least two outcome classes")
        multinomial = len(self.classes_) > 2
        estimator = multinomial_lasso if multinomial else lasso_logistic
        n, p = x.shape
        ratio = self.lambda_min_ratio or (0.01 if n < p else 1e-4)
        if multinomial:  # glmnet's: the largest |gradient| of any class at the null model
            onehot = np.eye(len(self.classes_))[y]
            top = float(np.max(np.abs(x.T @ (onehot - onehot.mean(axis=0)))) / n)
        else:
            top = lambda_max(x, y)
        self.lambdas_ = top * np.logspace(0, np.log10(ratio), self.n_lambdas)
        folds = min(self.folds, int(np.bincount(y).min()))
        if folds < 2:
            raise ValueError("too few events for cross-validating the LASSO")
        cv = StratifiedKFold(folds, shuffle=True, random_state=self.random_state)
        dev = np.zeros((folds, len(self.lambdas_)))
        for f, (tr, te) in enumerate(cv.split(x, y)):
            for i, lam in enumerate(self.lambdas_):
                proba = estimator(lam, len(tr)).fit(x[tr], y[tr]).predict_proba(x[te])
                dev[f, i] = _deviance(y[te], proba if multinomial else proba[:, 1])
        self.cv_mean_ = dev.mean(axis=0)
        self.cv_se_ = dev.std(axis=0, ddof=1) / np.sqrt(folds)
        best = int(np.argmin(self.cv_mean_))
        self.lambda_min_ = float(self.lambdas_[best])
        within = np.flatnonzero(self.cv_mean_ <= self.cv_mean_[best] + self.cv_se_[best])
        self.lambda_1se_ = float(self.lambdas_[within.min()])  # the path decreases: smallest index = largest lambda
        self.lambda_ = self.lambda_min_ if self.rule == "min" else self.lambda_1se_
        # the path of a multinomial fit: the largest |coefficient| over the classes of each feature
        self.coef_path_ = np.vstack([np.abs(estimator(lam, n).fit(x, y).coef_).max(axis=0) if multinomial
                                     else estimator(lam, n).fit(x, y).coef_[0] for lam in self.lambdas_])
        final = estimator(self.lambda_, n).fit(x, y)
        self.coef_ = final.coef_.copy()
        self.intercept_ = final.intercept_.copy()
        self.support_ = np.any(self.coef_ != 0, axis=0)
        if self.keep_at_least and not self.support_.any():
            entered = np.flatnonzero(np.any(self.coef_path_ != 0, axis=1))
            row = self.coef_path_[entered[0]] if entered.size else np.zeros(p)
            self.support_[np.argsort(-np.abs(row), kind="stable")[:self.keep_at_least]] = True
        return self

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """The radscore ``intercept + X @ coef`` (two classes); one column per class otherwise."""
        check_is_fitted(self, "coef_")
        scores = np.asarray(X, dtype=float) @ self.coef_.T + self.intercept_
        return scores[:, 0] if len(self.classes_) == 2 else scores

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        scores = self.decision_function(X)
        if scores.ndim == 1:
            p = 1.0 / (1.0 + np.exp(-scores))
            return np.column_stack([1 - p, p])
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        return scores / scores.sum(axis=1, keepdims=True)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class StabilitySelector(_FrameSelector):
    """Features in the top-``k`` |L2-logistic coefficients| in >= ``threshold`` of half-samples.

    If fewer than one feature passes the threshold, the ``k`` most frequently
    chosen features are kept (never an empty selection).
    """

    def __init__(self, k: int = 10, resamples: int = 100, threshold: float = 0.6, random_state: int = 0):
        self.k = k
        self.resamples = resamples
        self.threshold = threshold
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y: Sequence[int]) -> StabilitySelector:
        x = self._remember(X)
        y = np.asarray(y).astype(int)
        rng = np.random.default_rng(self.random_state)
        counts = np.zeros(x.shape[1])
        k = min(self.k, x.shape[1])
        for _ in range(self.resamples):
            idx = np.concatenate([rng.choice(np.flatnonzero(y == c), max(1, int(np.sum(y == c)) // 2),
                                             replace=False) for c in np.unique(y)])
            coef = LogisticRegression(C=1.0, max_iter=2000).fit(x[idx], y[idx]).coef_[0]
            counts[np.argsort(-np.abs(coef))[:k]] += 1
        self.frequencies_ = counts / self.resamples
        self.support_ = self.frequencies_ >= self.threshold
        if not self.support_.any():
            self.support_[np.argsort(-self.frequencies_)[:k]] = True
        return self


def make_rfe(k: int) -> RFE:
    """RFE with a linear SVM down to ``k`` features (one eliminated per step)."""
    return RFE(LinearSVC(C=1.0, max_iter=20000), n_features_to_select=k, step=1).set_output(transform="pandas")


def make_rfecv(folds: int = 5, min_features: int = 1, seed: int = 0) -> RFECV:
    """RFE with a linear SVM, the number of features chosen by stratified K-fold CV (AUC; one-vs-rest
    macro AUC for more than two classes): scikit-learn's ``RFECV``."""
    return RFECV(LinearSVC(C=1.0, max_iter=20000), step=1, min_features_to_select=min_features,
                 cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                 scoring=_auc_for_any_classes).set_output(transform="pandas")


def _auc_for_any_classes(estimator: Any, X: pd.DataFrame, y: np.ndarray) -> float:
    """AUC of the decision function (macro one-vs-rest AUC for more than two classes)."""
    scores = estimator.decision_function(X)
    if scores.ndim == 1:
        return float(roc_auc_score(y, scores))
    return float(roc_auc_score(y, scores, multi_class="ovr", labels=estimator.classes_))


def selected_names(selector: TransformerMixin, names: Sequence[str]) -> list[str]:
    """Names kept by a fitted selector."""
    return [n for n, keep in zip(names, selector.get_support(), strict=True) if keep]
