"""Statistics of a diagnostic/prognostic score on a labelled cohort.

What the source studies computed in R (pROC, ResourceSelection, rmda/dcurves)
and SPSS, as plain functions on numpy arrays:

- ROC AUC with DeLong's variance and 95 % CI, and the paired DeLong test
  between two scores on the same subjects (DeLong, DeLong & Clarke-Pearson,
  Biometrics 1988;44:837), computed with the mid-rank placement values of
  Sun & Xu (IEEE Signal Process Lett 2014;21:1389). The conventions follow
  pROC (Robin et al., BMC Bioinformatics 2011;12:77): sample variances with
  n - 1, a Wald interval clipped to [0, 1], and ties counted as one half;
  ``tests/unit/test_cohort_stats.py`` checks them against pROC's outputs.
- percentile bootstrap CIs (stratified resampling of cases and controls);
- accuracy, sensitivity, specificity, PPV, NPV and the confusion matrix at
  the Youden threshold (J = sensitivity + specificity - 1, Youden 1950);
- calibration: binned observed vs predicted, Brier score, Hosmer-Lemeshow
  goodness of fit over deciles of risk (Hosmer & Lemeshow 1980; g - 2 d.f.),
  calibration intercept and slope (Cox 1958);
- decision curve analysis: net benefit of the model, treat-all and
  treat-none (Vickers & Elkin, Med Decis Making 2006;26:565), with the
  ``risk >= threshold`` convention of dcurves.

Only binary outcomes coded 0/1 (1 = event) are accepted here; the multi-class
summary (:func:`multiclass_auc`) takes one-vs-rest probabilities.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score, roc_curve

_Z95 = float(sps.norm.ppf(0.975))


def _binary(y: Sequence[int] | np.ndarray) -> np.ndarray:
    """``y`` as a 0/1 int array; ValueError unless both classes are present."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError("outcome must be one-dimensional")
    values = set(np.unique(arr).tolist())
    if not values <= {0, 1, True, False}:
        raise ValueError(f"outcome must be coded 0/1, got values {sorted(values)}")
    arr = arr.astype(int)
    if arr.min() == arr.max():
        raise ValueError("outcome needs both events (1) and non-events (0)")
    return arr


def _scores(score: Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    arr = np.asarray(score, dtype=float)
    if arr.shape != (n,):
        raise ValueError(f"score must have one value per subject ({n}), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("score contains NaN or infinite values")
    return arr


@dataclass(frozen=True)
class _Placements:
    """DeLong structural components of one score: V10 per case, V01 per control."""

    auc: float
    v10: np.ndarray
    v01: np.ndarray


def _placements(y: np.ndarray, score: np.ndarray) -> _Placements:
    """Placement values by mid-ranks (Sun & Xu 2014, Algorithm 1).

    V10[i] is the fraction of controls below case i (ties count 1/2), V01[j]
    the fraction of cases above control j; their means are both the AUC.
    """
    cases, controls = score[y == 1], score[y == 0]
    m, n = len(cases), len(controls)
    rank_all = rankdata(np.concatenate([cases, controls]))
    rank_cases, rank_controls = rankdata(cases), rankdata(controls)
    v10 = (rank_all[:m] - rank_cases) / n
    v01 = 1.0 - (rank_all[m:] - rank_controls) / m
    return _Placements(auc=float(v10.mean()), v10=v10, v01=v01)


def auc(y: Sequence[int] | np.ndarray, score: Sequence[float] | np.ndarray) -> float:
    """ROC AUC by mid-ranks (the Mann-Whitney statistic; ties count one half).

    Same value as ``sklearn.metrics.roc_auc_score``, without its input
    validation, which dominates the time of a 1,000-resample bootstrap.
    """
    y = np.asarray(y)
    score = np.asarray(score, dtype=float)
    ranks = rankdata(score)
    n_events = int(np.sum(y == 1))
    n_nonevents = len(y) - n_events
    return float((ranks[y == 1].sum() - n_events * (n_events + 1) / 2) / (n_events * n_nonevents))


@dataclass(frozen=True)
class AucEstimate:
    """AUC with DeLong's variance and Wald confidence interval."""

    auc: float
    variance: float
    ci_low: float
    ci_high: float
    n_events: int
    n_nonevents: int

    @property
    def se(self) -> float:
        return float(np.sqrt(self.variance))


def delong_auc(y: Sequence[int] | np.ndarray, score: Sequence[float] | np.ndarray,
               confidence: float = 0.95) -> AucEstimate:
    """AUC of ``score`` for ``y`` (higher score = event) with DeLong's variance.

    Same numbers as pROC's ``auc``, ``var`` and ``ci.auc(method="delong")``
    for ``roc(y, score, direction = "<")``.
    """
    y = _binary(y)
    score = _scores(score, len(y))
    p = _placements(y, score)
    variance = float(np.var(p.v10, ddof=1) / len(p.v10) + np.var(p.v01, ddof=1) / len(p.v01))
    z = float(sps.norm.ppf(0.5 + confidence / 2))
    half = z * np.sqrt(variance)
    return AucEstimate(
        auc=p.auc, variance=variance,
        ci_low=max(0.0, p.auc - half), ci_high=min(1.0, p.auc + half),
        n_events=len(p.v10), n_nonevents=len(p.v01),
    )


@dataclass(frozen=True)
class DelongTest:
    """Paired DeLong test of AUC(score1) - AUC(score2) on the same subjects."""

    auc1: float
    auc2: float
    difference: float
    z: float
    p_value: float
    ci_low: float
    ci_high: float


def delong_test(y: Sequence[int] | np.ndarray, score1: Sequence[float] | np.ndarray,
                score2: Sequence[float] | np.ndarray, confidence: float = 0.95) -> DelongTest:
    """Two-sided paired DeLong test, as pROC's ``roc.test(roc1, roc2, method = "delong")``.

    The variance of the difference is ``S10/m + S01/n`` with S the 2 x 2
    sample covariance matrices of the placement values (DeLong 1988, eq. 5).
    """
    y = _binary(y)
    p1 = _placements(y, _scores(score1, len(y)))
    p2 = _placements(y, _scores(score2, len(y)))
    s10 = np.cov(np.vstack([p1.v10, p2.v10]), ddof=1)
    s01 = np.cov(np.vstack([p1.v01, p2.v01]), ddof=1)
    cov = s10 / len(p1.v10) + s01 / len(p1.v01)
    var_diff = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    diff = p1.auc - p2.auc
    if var_diff <= 0:
        z, p_value = 0.0, 1.0
    else:
        z = diff / np.sqrt(var_diff)
        p_value = float(2 * sps.norm.sf(abs(z)))
    half = float(sps.norm.ppf(0.5 + confidence / 2)) * np.sqrt(max(var_diff, 0.0))
    return DelongTest(auc1=p1.auc, auc2=p2.auc, difference=diff, z=float(z), p_value=p_value,
                      ci_low=diff - half, ci_high=diff + half)


@dataclass(frozen=True)
class BootstrapInterval:
    estimate: float
    ci_low: float
    ci_high: float
    n_resamples: int


def bootstrap_ci(y: Sequence[int] | np.ndarray, score: Sequence[float] | np.ndarray,
                 statistic: Callable[[np.ndarray, np.ndarray], float] = auc,
                 n_resamples: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> BootstrapInterval:
    """Percentile bootstrap CI of ``statistic(y, score)``.

    Resampling is stratified (events and non-events resampled separately, as
    pROC's default ``boot.stratified = TRUE``) so every resample has both
    classes and the prevalence stays fixed.
    """
    y = _binary(y)
    score = np.asarray(score, dtype=float)
    strata = [np.flatnonzero(y == 1), np.flatnonzero(y == 0)]
    return _stratified_bootstrap(y, score, strata, statistic, n_resamples, confidence, seed)


def _stratified_bootstrap(y: np.ndarray, score: np.ndarray, strata: Sequence[np.ndarray],
                          statistic: Callable[[np.ndarray, np.ndarray], float], n_resamples: int,
                          confidence: float, seed: int) -> BootstrapInterval:
    """Percentile bootstrap of ``statistic(y, score)``, each resample drawn within each stratum (row positions)."""
    rng = np.random.default_rng(seed)
    values = np.empty(n_resamples)
    for i in range(n_resamples):
        idx = np.concatenate([rng.choice(members, len(members)) for members in strata])
        values[i] = statistic(y[idx], score[idx])
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return BootstrapInterval(estimate=float(statistic(y, score)), ci_low=float(low),
                             ci_high=float(high), n_resamples=n_resamples)


@dataclass(frozen=True)
class ThresholdMetrics:
    """Classification at one threshold (score >= threshold = positive)."""

    threshold: float
    accuracy: float
    sensitivity: float
    specificity: float
    ppv: float
    npv: float
    f1: float
    """Harmonic mean of PPV and sensitivity, ``2 TP / (2 TP + FP + FN)`` (as ``sklearn.metrics.f1_score``)."""
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def confusion_matrix(self) -> list[list[int]]:
        """[[TN, FP], [FN, TP]] (rows: true 0/1, columns: predicted 0/1), as scikit-learn."""
        return [[self.tn, self.fp], [self.fn, self.tp]]


def metrics_at(y: Sequence[int] | np.ndarray, score: Sequence[float] | np.ndarray,
               threshold: float) -> ThresholdMetrics:
    y = _binary(y)
    score = _scores(score, len(y))
    pred = score >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    tn = int(np.sum(~pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    return ThresholdMetrics(
        threshold=float(threshold), accuracy=(tp + tn) / len(y),
        sensitivity=ratio(tp, tp + fn), specificity=ratio(tn, tn + fp),
        ppv=ratio(tp, tp + fp), npv=ratio(tn, tn + fn), f1=ratio(2 * tp, 2 * tp + fp + fn),
        tp=tp, fp=fp, tn=tn, fn=fn,
    )


def youden_threshold(y: Sequence[int] | np.ndarray, score: Sequence[float] | np.ndarray) -> float:
    """The observed score maximising sensitivity + specificity - 1.

    Thresholds are the observed scores (positive when score >= threshold);
    on ties of J the lowest threshold with the maximum wins, as
    ``sklearn.metrics.roc_curve`` orders them.
    """
    y = _binary(y)
    fpr, tpr, thresholds = roc_curve(y, _scores(score, len(y)), drop_intermediate=False)
    j = tpr - fpr
    finite = np.isfinite(thresholds)
    best = np.flatnonzero(finite & (j == j[finite].max()))
    return float(thresholds[best[-1]])


def youden_metrics(y: Sequence[int] | np.ndarray, score: Sequence[float] | np.ndarray) -> ThresholdMetrics:
    """:func:`metrics_at` the Youden threshold of these data."""
    return metrics_at(y, score, youden_threshold(y, score))


@dataclass(frozen=True)
class Calibration:
    """Agreement of predicted probabilities with observed outcomes."""

    bin_predicted: list[float]
    bin_observed: list[float]
    bin_counts: list[int]
    brier: float
    hosmer_lemeshow: float
    hosmer_lemeshow_df: int
    hosmer_lemeshow_p: float
    intercept: float
    slope: float


def calibration(y: Sequence[int] | np.ndarray, probability: Sequence[float] | np.ndarray,
                groups: int = 10) -> Calibration:
    """Binned calibration, Brier score, Hosmer-Lemeshow test and calibration slope.

    Groups are deciles of predicted risk (equal counts, ties kept together by
    sorting). HL = sum over groups of (O - E)^2 / (E (1 - E/n_g)), compared
    with chi-square on g - 2 degrees of freedom. The calibration slope and
    intercept come from the logistic regression of y on logit(p) (unpenalised).
    """
    y = _binary(y)
    p = _scores(probability, len(y))
    if np.any((p < 0) | (p > 1)):
        raise ValueError("probabilities must lie in [0, 1]")
    order = np.argsort(p, kind="stable")
    chunks = [c for c in np.array_split(order, min(groups, len(y))) if len(c)]
    pred, obs, counts, hl = [], [], [], 0.0
    for idx in chunks:
        expected = float(p[idx].sum())
        observed = float(y[idx].sum())
        n_g = len(idx)
        pred.append(expected / n_g)
        obs.append(observed / n_g)
        counts.append(n_g)
        denom = expected * (1 - expected / n_g)
        if denom > 0:
            hl += (observed - expected) ** 2 / denom
    dof = max(len(chunks) - 2, 1)
    intercept, slope = _calibration_line(y, p)
    return Calibration(
        bin_predicted=pred, bin_observed=obs, bin_counts=counts,
        brier=float(np.mean((p - y) ** 2)), hosmer_lemeshow=float(hl), hosmer_lemeshow_df=dof,
        hosmer_lemeshow_p=float(sps.chi2.sf(hl, dof)), intercept=intercept, slope=slope,
    )


def _calibration_line(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Intercept and slope of logit P(y) = a + b * logit(p) (Cox 1958), by Newton-Raphson.

    Written out (a two-parameter maximum likelihood) because scikit-learn's
    LogisticRegression always penalises or needs ``penalty=None`` plus a
    solver tolerance; this converges to machine precision in a few steps.
    """
    eps = 1e-12
    lp = np.log(np.clip(p, eps, 1 - eps) / np.clip(1 - p, eps, 1))
    design = np.column_stack([np.ones_like(lp), lp])
    beta = np.array([0.0, 1.0])
    for _ in range(50):
        mu = 1 / (1 + np.exp(-np.clip(design @ beta, -500, 500)))
        w = mu * (1 - mu)
        hessian = design.T @ (design * w[:, None])
        step = np.linalg.lstsq(hessian, design.T @ (y - mu), rcond=None)[0]
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(beta[0]), float(beta[1])


@dataclass(frozen=True)
class DecisionCurve:
    """Net benefit over threshold probabilities (Vickers & Elkin 2006)."""

    thresholds: list[float]
    model: list[float]
    treat_all: list[float]
    treat_none: list[float]


def net_benefit(y: Sequence[int] | np.ndarray, treat: Sequence[bool] | np.ndarray,
                threshold: float) -> float:
    """NB = TP/n - FP/n * pt / (1 - pt) for the decision ``treat`` at threshold ``pt``."""
    y = _binary(y)
    treat = np.asarray(treat, dtype=bool)
    n = len(y)
    tp = np.sum(treat & (y == 1)) / n
    fp = np.sum(treat & (y == 0)) / n
    if threshold >= 1:
        return float("-inf") if fp > 0 else float(tp)
    return float(tp - fp * threshold / (1 - threshold))


def decision_curve(y: Sequence[int] | np.ndarray, probability: Sequence[float] | np.ndarray,
                   thresholds: Sequence[float] | np.ndarray | None = None) -> DecisionCurve:
    """Net benefit of treating when ``probability >= pt``, and of treat-all / treat-none."""
    y = _binary(y)
    p = _scores(probability, len(y))
    pts = np.arange(0.01, 1.0, 0.01) if thresholds is None else np.asarray(thresholds, dtype=float)
    everyone = np.ones(len(y), dtype=bool)
    return DecisionCurve(
        thresholds=[float(t) for t in pts],
        model=[net_benefit(y, p >= t, t) for t in pts],
        treat_all=[net_benefit(y, everyone, t) for t in pts],
        treat_none=[0.0 for _ in pts],
    )


@dataclass(frozen=True)
class MulticlassAuc:
    macro: float
    micro: float
    per_class: dict[str, float]


def multiclass_auc(y: Sequence[int] | np.ndarray, probabilities: np.ndarray,
                   classes: Sequence[int | str]) -> MulticlassAuc:
    """One-vs-rest AUCs, their unweighted mean (macro) and the pooled (micro) AUC."""
    y = np.asarray(y)
    proba = np.asarray(probabilities, dtype=float)
    onehot = np.column_stack([(y == c).astype(int) for c in classes])
    per_class = {str(c): float(roc_auc_score(onehot[:, i], proba[:, i])) for i, c in enumerate(classes)}
    return MulticlassAuc(
        macro=float(np.mean(list(per_class.values()))),
        micro=float(roc_auc_score(onehot.ravel(), proba.ravel())),
        per_class=per_class,
    )


def multiclass_bootstrap_ci(y: Sequence[int | str] | np.ndarray, probabilities: np.ndarray,
                            statistic: Callable[[np.ndarray, np.ndarray], float], n_resamples: int = 1000,
                            confidence: float = 0.95, seed: int = 0) -> BootstrapInterval:
    """Percentile bootstrap CI of ``statistic(y, probabilities)`` for more than two classes, resampling
    within each class (the multi-class form of :func:`bootstrap_ci`'s stratification)."""
    y = np.asarray(y)
    proba = np.asarray(probabilities, dtype=float)
    strata = [np.flatnonzero(y == c) for c in np.unique(y)]
    return _stratified_bootstrap(y, proba, strata, statistic, n_resamples, confidence, seed)
