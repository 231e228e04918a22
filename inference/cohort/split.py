"""Which subjects train and which test: stratified splits and propensity-score matching."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split


@dataclass(frozen=True)
class Split:
    """Row positions of one train/test partition (``fold`` numbers k-fold partitions)."""

    train: np.ndarray
    test: np.ndarray
    fold: int = 0


def holdout_split(y: Sequence[int], test_size: float = 0.3, seed: int = 42,
                  groups: Sequence[str] | None = None) -> Split:
    """Stratified random train/test split (the outcome's proportions kept in both).

    With ``groups`` (a patient per row), the rows of a group stay together:
    the test part is the first fold of a stratified group K-fold with
    ``round(1 / test_size)`` folds, so its size is close to ``test_size``.
    """
    idx = np.arange(len(y))
    if groups is None:
        train, test = train_test_split(idx, test_size=test_size, stratify=np.asarray(y), random_state=seed)
        return Split(np.sort(train), np.sort(test))
    cv = StratifiedGroupKFold(max(2, round(1 / test_size)), shuffle=True, random_state=seed)
    train, test = next(cv.split(idx, np.asarray(y), np.asarray(groups)))
    return Split(np.sort(train), np.sort(test))


def kfold_splits(y: Sequence[int], folds: int = 5, seed: int = 42,
                 groups: Sequence[str] | None = None) -> Iterator[Split]:
    """Stratified K-fold partitions; every subject is tested exactly once (with ``groups``, every
    group in one fold)."""
    if groups is None:
        parts = StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), np.asarray(y))
    else:
        parts = StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(
            np.zeros(len(y)), np.asarray(y), np.asarray(groups))
    for k, (train, test) in enumerate(parts):
        yield Split(train, test, fold=k)


def _design(frame: pd.DataFrame, covariates: Sequence[str]) -> np.ndarray:
    """Covariates as numbers: categorical columns one-hot coded, numeric ones standardised."""
    parts = []
    for name in covariates:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column):
            values = column.to_numpy(float)
            sd = values.std() or 1.0
            parts.append(((values - values.mean()) / sd)[:, None])
        else:
            parts.append(pd.get_dummies(column.astype(str), drop_first=True).to_numpy(float))
    return np.hstack(parts)


def propensity_match(frame: pd.DataFrame, treated: Sequence[int], covariates: Sequence[str],
                     ratio: int = 2, caliper: float | None = 0.2, seed: int = 0) -> np.ndarray:
    """Row positions of cases and their matched controls (1:``ratio``), without replacement.

    The propensity score is a logistic regression of case status on the
    covariates; matching is greedy nearest-neighbour on its logit, cases in
    random order, within ``caliper`` x SD(logit) (Austin, Pharm Stat
    2011;10:150 recommends 0.2). Cases without enough controls in the caliper
    keep those they got; cases with none are dropped.

    Raises:
        ValueError: missing covariate values (impute or drop those rows first).
    """
    missing = [c for c in covariates if frame[c].isna().any()]
    if missing:
        raise ValueError(f"propensity matching: covariates with missing values: {missing}")
    t = np.asarray(treated).astype(int)
    x = _design(frame, covariates)
    ps = LogisticRegression(C=np.inf, max_iter=5000).fit(x, t).predict_proba(x)[:, 1]
    logit = np.log(np.clip(ps, 1e-9, 1 - 1e-9) / np.clip(1 - ps, 1e-9, 1))
    width = np.inf if caliper is None else caliper * logit.std()
    rng = np.random.default_rng(seed)
    cases = rng.permutation(np.flatnonzero(t == 1))
    available = set(np.flatnonzero(t == 0).tolist())
    keep: list[int] = []
    for case in cases:
        if not available:
            break
        pool = np.fromiter(available, dtype=int)
        distance = np.abs(logit[pool] - logit[case])
        nearest = pool[np.argsort(distance, kind="stable")[:ratio]]
        nearest = [j for j in nearest if abs(logit[j] - logit[case]) <= width]
        if nearest:
            keep.append(int(case))
            keep.extend(int(j) for j in nearest)
            available.difference_update(nearest)
    return np.sort(np.asarray(keep, dtype=int))


def standardised_mean_difference(frame: pd.DataFrame, treated: Sequence[int], column: str) -> float:
    """SMD of a numeric covariate between cases and controls (balance after matching)."""
    t = np.asarray(treated).astype(bool)
    a, b = frame.loc[t, column].to_numpy(float), frame.loc[~t, column].to_numpy(float)
    pooled = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    return float((a.mean() - b.mean()) / pooled) if pooled > 0 else 0.0
