"""Feature preprocessing steps, as scikit-learn transformers fitted on the training split.

- :func:`make_scaler`: max-abs, z-score or percentile scaling;
- :class:`ComBatHarmoniser`: ComBat harmonisation across centres (Johnson et
  al., Biostatistics 2007;8:118; Fortin et al., NeuroImage 2018;167:104) with
  the maintained ``neuroCombat`` package;
- :class:`CorrelationFilter`: drops one feature of every pair correlated above
  a threshold (Pearson or Spearman);
- :func:`icc` / :func:`reliable_features`: intraclass correlation between
  repeated extractions (a second reader, or perturbed masks) and the filter
  ICC > threshold (Koo & Li, J Chiropr Med 2016;15:155).

Transformers take and return pandas DataFrames so feature names survive to
the exported model.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.preprocessing import MaxAbsScaler, RobustScaler, StandardScaler
from sklearn.utils.validation import check_is_fitted

EXPORTABLE_SCALERS = {"z-score": StandardScaler, "max-abs": MaxAbsScaler}
"""Scalers the node's model file can express (``Normalisation.method``)."""


def make_scaler(method: str) -> TransformerMixin:
    """The scikit-learn scaler for a recipe ``normalisation``.

    ``percentile`` centres on the median and scales by the 5th-95th
    percentile range (``RobustScaler(quantile_range=(5, 95))``), robust to the
    outliers radiomics features often have.
    """
    if method == "z-score":
        scaler: TransformerMixin = StandardScaler()
    elif method == "max-abs":
        scaler = MaxAbsScaler()
    elif method == "percentile":
        scaler = RobustScaler(quantile_range=(5.0, 95.0))
    else:
        raise ValueError(f"unknown normalisation {method!r}; known: z-score, max-abs, percentile")
    return scaler.set_output(transform="pandas")


class ComBatHarmoniser(TransformerMixin, BaseEstimator):
    """ComBat across the batches named by column ``batch_column`` (dropped from the output).

    ``fit`` estimates the location/scale batch effects on the training split
    (empirical Bayes, parametric priors) with ``neuroCombat.neuroCombat``;
    ``transform`` applies those estimates to any rows. A batch that was not in the
    training split cannot be harmonised and raises ValueError.
    """

    def __init__(self, batch_column: str = "centre"):
        self.batch_column = batch_column

    def fit(self, X: pd.DataFrame, y: object = None) -> ComBatHarmoniser:
        from neuroCombat import neuroCombat

        features, batch = self._split(X)
        if batch.nunique() < 2:
            raise ValueError(f"ComBat needs at least two values of {self.batch_column!r} in the training split")
        covars = pd.DataFrame({"batch": batch.astype(str).to_numpy()})
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints progress
            result = neuroCombat(dat=features.to_numpy(float).T, covars=covars, batch_col="batch")
        self.estimates_ = result["estimates"]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        # The package's own neuroCombatFromTraining fails on NumPy >= 2
        # (int() of a 1-element array); this is its adjustment, written out:
        # standardise with the pooled training mean/variance, remove the
        # batch's empirical-Bayes location (gamma*) and scale (delta*), restore.
        check_is_fitted(self, "estimates_")
        features, batch = self._split(X)
        est = self.estimates_
        known = [str(b) for b in est["batches"]]
        unknown = sorted(set(batch.astype(str)) - set(known))
        if unknown:
            raise ValueError(f"ComBat: {self.batch_column} value(s) {unknown} were not in the training split")
        which = np.array([known.index(b) for b in batch.astype(str)])
        dat = features.to_numpy(float).T
        stand_mean = (est["stand.mean"][:, 0] + est["mod.mean"].mean(axis=1))[:, None]
        sd = np.sqrt(est["var.pooled"])
        z = (dat - stand_mean) / sd
        z = (z - est["gamma.star"][which].T) / np.sqrt(est["delta.star"][which].T)
        return pd.DataFrame((z * sd + stand_mean).T, index=X.index, columns=features.columns)

    def get_feature_names_out(self, input_features: Sequence[str] | None = None) -> np.ndarray:
        return np.asarray([c for c in self.feature_names_in_ if c != self.batch_column], dtype=object)

    def _split(self, X: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
        if self.batch_column not in X.columns:
            raise ValueError(f"ComBat: batch column {self.batch_column!r} missing")
        return X.drop(columns=[self.batch_column]), X[self.batch_column]


class DropColumns(TransformerMixin, BaseEstimator):
    """Drops named columns (e.g. the batch column when no harmonisation is asked for)."""

    def __init__(self, columns: Sequence[str] = ()):
        self.columns = columns

    def fit(self, X: pd.DataFrame, y: object = None) -> DropColumns:
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        return X.drop(columns=[c for c in self.columns if c in X.columns])

    def get_feature_names_out(self, input_features: Sequence[str] | None = None) -> np.ndarray:
        return np.asarray([c for c in self.feature_names_in_ if c not in self.columns], dtype=object)


class CorrelationFilter(TransformerMixin, BaseEstimator):
    """Keeps a feature only if its |correlation| with every kept feature is <= ``threshold``.

    Features are visited in decreasing order of relevance (absolute
    correlation with the outcome when ``y`` is given - with the closest
    class's indicator for more than two classes - else in column order), so
    of a redundant pair the one more related to the outcome is kept - the
    usual rule in the radiomics studies.
    """

    def __init__(self, threshold: float = 0.9, method: str = "spearman"):
        self.threshold = threshold
        self.method = method

    def fit(self, X: pd.DataFrame, y: Sequence[int] | None = None) -> CorrelationFilter:
        frame = pd.DataFrame(X)
        corr = frame.corr(method=self.method).abs().fillna(0.0).to_numpy()
        order = np.arange(frame.shape[1])
        if y is not None:
            # relevance to a class label is the strongest |correlation| with one class's indicator:
            # for two classes the |correlation| with the outcome, and for more no order of the
            # classes is assumed (a class index would rank fracture types as if they were a scale)
            labels = np.asarray(y)
            relevance = np.max([frame.corrwith(pd.Series((labels == c).astype(float), index=frame.index),
                                               method=self.method).abs().fillna(0.0).to_numpy()
                                for c in np.unique(labels)], axis=0)
            order = np.argsort(-relevance, kind="stable")
        kept: list[int] = []
        for j in order:
            if all(corr[j, k] <= self.threshold for k in kept):
                kept.append(j)
        self.support_ = np.zeros(frame.shape[1], dtype=bool)
        self.support_[kept] = True
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "support_")
        return pd.DataFrame(X).loc[:, self.support_]

    def get_feature_names_out(self, input_features: Sequence[str] | None = None) -> np.ndarray:
        return self.feature_names_in_[self.support_]


class DeepPca(TransformerMixin, BaseEstimator):
    """Early fusion: the deep features (columns with ``deep_`` after the VOI prefix) replaced by their first
    ``n_components`` principal components (``<voi>:deep_pc01`` ...), the radiomics columns kept as they are.

    Fitted on the training split only, like every step of the pipeline; with fewer rows or deep
    columns than ``n_components``, as many components as they allow.
    """

    def __init__(self, n_components: int = 32):
        self.n_components = n_components

    def fit(self, X: pd.DataFrame, y: Sequence[int] | None = None) -> DeepPca:
        frame = pd.DataFrame(X)
        self.deep_columns_ = [c for c in frame.columns if str(c).split(":", 1)[-1].startswith("deep_")]
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        if self.deep_columns_:
            n = min(self.n_components, len(self.deep_columns_), len(frame))
            self.pca_ = PCA(n_components=n).fit(frame[self.deep_columns_].to_numpy(float))
            voi = str(self.deep_columns_[0]).split(":", 1)[0] + ":" if ":" in str(self.deep_columns_[0]) else ""
            self.component_names_ = [f"{voi}deep_pc{k + 1:02d}" for k in range(n)]
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "feature_names_in_")
        frame = pd.DataFrame(X)
        if not self.deep_columns_:
            return frame
        components = self.pca_.transform(frame[self.deep_columns_].to_numpy(float))
        kept = frame.drop(columns=self.deep_columns_)
        return pd.concat([kept, pd.DataFrame(components, index=frame.index, columns=self.component_names_)], axis=1)

    def get_feature_names_out(self, input_features: Sequence[str] | None = None) -> np.ndarray:
        kept = [c for c in self.feature_names_in_ if c not in set(self.deep_columns_)]
        return np.asarray(kept + list(getattr(self, "component_names_", [])), dtype=object)


def icc(ratings: np.ndarray, kind: str = "ICC(3,1)") -> float:
    """Intraclass correlation of an (n subjects x k repeats) matrix.

    ``ICC(2,1)``: two-way random effects, absolute agreement, single rater;
    ``ICC(3,1)``: two-way mixed effects, consistency, single rater (Shrout &
    Fleiss, Psychol Bull 1979;86:420; the forms pingouin and R's irr report).
    Mean squares from the two-way ANOVA without replication.
    """
    x = np.asarray(ratings, dtype=float)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError("ICC needs an (n subjects >= 2) x (k repeats >= 2) matrix")
    n, k = x.shape
    grand = x.mean()
    ss_rows = k * np.sum((x.mean(axis=1) - grand) ** 2)
    ss_cols = n * np.sum((x.mean(axis=0) - grand) ** 2)
    ss_err = np.sum((x - grand) ** 2) - ss_rows - ss_cols
    msr = ss_rows / (n - 1)
    msc = ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    if kind == "ICC(3,1)":
        denom = msr + (k - 1) * mse
        return float((msr - mse) / denom) if denom > 0 else float("nan")
    if kind == "ICC(2,1)":
        denom = msr + (k - 1) * mse + k * (msc - mse) / n
        return float((msr - mse) / denom) if denom > 0 else float("nan")
    raise ValueError(f"unknown ICC form {kind!r}; known: ICC(2,1), ICC(3,1)")


def reliable_features(repeats: Sequence[pd.DataFrame], threshold: float = 0.75,
                      kind: str = "ICC(3,1)") -> dict[str, float]:
    """ICC of every feature present in all ``repeats`` (rows: the same subjects, aligned by index).

    Returns ``{feature: icc}`` for the features with ICC > ``threshold``.
    """
    if len(repeats) < 2:
        raise ValueError("reliability needs at least two extractions of the same subjects")
    index = repeats[0].index
    for r in repeats[1:]:
        index = index.intersection(r.index)
    if len(index) < 2:
        raise ValueError("reliability: fewer than two subjects in common between the extractions")
    columns = [c for c in repeats[0].columns if all(c in r.columns for r in repeats[1:])]
    out: dict[str, float] = {}
    for column in columns:
        matrix = np.column_stack([r.loc[index, column].to_numpy(float) for r in repeats])
        if not np.all(np.isfinite(matrix)):
            continue
        value = icc(matrix, kind)
        if value > threshold:
            out[column] = value
    return out
