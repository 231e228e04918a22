"""inference.cohort.stats against reference implementations' published outputs.

DeLong: pROC's own expected values (xrobin/pROC tests/testthat/test-var.R and
test-roc.test.R) on its aSAH data set (tests/data/asah.csv, see
asah.SOURCE.md). Decision curve: dcurves' R output for ``famhistory`` on its
``df_binary`` data (MSKCC-Epi-Bio/dcurves dcurves/data/r_dca_famhistory.csv).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from sklearn.metrics import brier_score_loss, roc_auc_score

from inference.cohort import stats

ASAH = Path(__file__).resolve().parents[1] / "data" / "asah.csv"


@pytest.fixture(scope="module")
def asah() -> pd.DataFrame:
    return pd.read_csv(ASAH)


def _poor(asah: pd.DataFrame) -> np.ndarray:
    return (asah["outcome"] == "Poor").to_numpy().astype(int)


# pROC tests/testthat/test-var.R: var(roc(aSAH$outcome, aSAH$<marker>))
PROC_VAR = {"wfns": 0.00146991470882363, "ndka": 0.0031908105493913, "s100b": 0.00266868245717244}
# pROC helper-deLongPlacementsCpp-expected.R: theta (the AUC)
PROC_AUC = {"wfns": 0.823678861788618, "ndka": 0.611957994579946, "s100b": 0.731368563685637}


@pytest.mark.parametrize("marker", sorted(PROC_VAR))
def test_delong_auc_and_variance_match_proc(asah, marker):
    est = stats.delong_auc(_poor(asah), asah[marker])
    assert est.auc == pytest.approx(PROC_AUC[marker], abs=1e-12)
    assert stats.auc(_poor(asah), asah[marker]) == pytest.approx(PROC_AUC[marker], abs=1e-12)
    assert est.variance == pytest.approx(PROC_VAR[marker], abs=1e-12, rel=1e-9)
    assert est.ci_low == pytest.approx(est.auc - 1.959963984540054 * np.sqrt(PROC_VAR[marker]), abs=1e-9)


def test_delong_ci_matches_proc_printed_interval(asah):
    # pROC documentation: roc(aSAH$outcome, aSAH$s100b, ci=TRUE) -> "95% CI: 0.6301-0.8326 (DeLong)"
    est = stats.delong_auc(_poor(asah), asah["s100b"])
    assert (round(est.ci_low, 4), round(est.ci_high, 4)) == (0.6301, 0.8326)


# pROC tests/testthat/test-roc.test.R: roc.test(r.a, r.b) with defaults (paired DeLong)
PROC_PAIRED = [
    ("wfns", "s100b", 2.20898359144091, 0.0271757822291882, 0.0104061769564846, 0.174214419249478),
    ("wfns", "ndka", 2.79777591868904, 0.00514557970691098, 0.0634011709339876, 0.3600405634833566),
    ("ndka", "s100b", -1.39077002573558, 0.164295175223054, -0.2876917446341914, 0.0488706064228094),
]


@pytest.mark.parametrize(("a", "b", "z", "p", "lo", "hi"), PROC_PAIRED)
def test_paired_delong_test_matches_proc(asah, a, b, z, p, lo, hi):
    t = stats.delong_test(_poor(asah), asah[a], asah[b])
    assert t.z == pytest.approx(z, abs=1e-9)
    assert t.p_value == pytest.approx(p, abs=1e-9)
    assert t.ci_low == pytest.approx(lo, abs=1e-9)
    assert t.ci_high == pytest.approx(hi, abs=1e-9)
    reverse = stats.delong_test(_poor(asah), asah[b], asah[a])
    assert reverse.z == pytest.approx(-z, abs=1e-9)


def test_delong_test_of_a_score_with_itself_is_null(asah):
    t = stats.delong_test(_poor(asah), asah["wfns"], asah["wfns"])
    assert (t.z, t.p_value) == (0.0, 1.0)


def test_bad_outcome_coding_is_refused():
    with pytest.raises(ValueError, match="0/1"):
        stats.delong_auc([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="both"):
        stats.delong_auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        stats.delong_auc([0, 1, 1], [0.1, np.nan, 0.3])


def test_bootstrap_interval_is_close_to_delong(asah):
    y, s = _poor(asah), asah["s100b"].to_numpy()
    boot = stats.bootstrap_ci(y, s, n_resamples=1000, seed=1)
    delong = stats.delong_auc(y, s)
    assert boot.estimate == pytest.approx(delong.auc)
    assert abs(boot.ci_low - delong.ci_low) < 0.03 and abs(boot.ci_high - delong.ci_high) < 0.03


def test_youden_metrics_match_proc_best_threshold(asah):
    # pROC: coords(roc(aSAH$outcome, aSAH$s100b), "best") -> threshold 0.205,
    # specificity 0.8055556, sensitivity 0.6341463 (pROC documentation example).
    m = stats.youden_metrics(_poor(asah), asah["s100b"])
    assert m.threshold == pytest.approx(0.22)  # lowest observed score at or above pROC's midpoint 0.205
    assert m.sensitivity == pytest.approx(0.6341463, abs=1e-7)
    assert m.specificity == pytest.approx(0.8055556, abs=1e-7)
    assert m.tp + m.fn == 41 and m.tn + m.fp == 72
    assert m.confusion_matrix == [[m.tn, m.fp], [m.fn, m.tp]]


def test_calibration_of_true_risks_is_good_and_of_shifted_risks_is_bad():
    rng = np.random.default_rng(3)
    risk = rng.uniform(0.02, 0.9, 4000)
    y = (rng.random(4000) < risk).astype(int)
    good = stats.calibration(y, risk)
    assert good.brier == pytest.approx(brier_score_loss(y, risk))
    assert good.hosmer_lemeshow_df == 8 and good.hosmer_lemeshow_p > 0.01
    assert good.slope == pytest.approx(1.0, abs=0.1) and abs(good.intercept) < 0.1
    bad = stats.calibration(y, np.clip(risk * 0.5, 0, 1))
    assert bad.hosmer_lemeshow_p < 1e-6 and bad.intercept > 0.3


def _df_binary_famhistory() -> tuple[np.ndarray, np.ndarray]:
    """The cancer x famhistory table of dcurves' df_binary: n 750, 105 cancers;
    famhistory positive in 24 cancers and 91 non-cancers (dcurves' r_dca_famhistory.csv:
    pos_rate 0.14, tp_rate 0.032, fp_rate 0.121333)."""
    y = np.array([1] * 105 + [0] * 645)
    fam = np.array([1] * 24 + [0] * 81 + [1] * 91 + [0] * 554)
    return y, fam


# (threshold, net benefit of famhistory, net benefit of treat-all) from r_dca_famhistory.csv
DCURVES_FAMHISTORY = [
    (0.01, 0.030774410774410774, 0.13131313131313133),
    (0.05, 0.025614035087719297, 0.09473684210526317),
    (0.10, 0.018518518518518517, 0.04444444444444445),
    (0.14, 0.012248062015503873, 0.0),
    (0.20, 0.0016666666666666635, -0.07499999999999998),
    (0.21, -2.531645569620253e-4, -0.08860759493670883),
    (0.35, -0.033333333333333354, -0.32307692307692315),
    (0.50, -0.08933333333333335, -0.72),
    (0.60, -0.15, -1.15),
]


def test_decision_curve_matches_dcurves_example():
    y, fam = _df_binary_famhistory()
    pts = [t for t, _, _ in DCURVES_FAMHISTORY]
    curve = stats.decision_curve(y, fam.astype(float), pts)
    for i, (t, nb_fam, nb_all) in enumerate(DCURVES_FAMHISTORY):
        assert stats.net_benefit(y, fam == 1, t) == pytest.approx(nb_fam, abs=1e-12)
        assert curve.model[i] == pytest.approx(nb_fam, abs=1e-12)  # risk 0/1 >= pt treats famhistory
        assert curve.treat_all[i] == pytest.approx(nb_all, abs=1e-12)
        assert curve.treat_none[i] == 0.0


def test_multiclass_auc_macro_and_micro():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    logits = rng.normal(size=(600, 3)) + 1.5 * np.eye(3)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    got = stats.multiclass_auc(y, proba, classes=[0, 1, 2])
    assert got.macro == pytest.approx(roc_auc_score(y, proba, multi_class="ovr", average="macro"))
    assert 0.7 < got.micro < 1.0


def test_calibration_line_and_brier_equal_statsmodels_and_scikit_learn():
    rng = np.random.default_rng(4)
    p = rng.uniform(0.02, 0.95, 400)
    y = (rng.random(400) < np.clip(1.3 * p - 0.1, 0, 1)).astype(int)
    result = stats.calibration(y, p)
    logit = np.log(p / (1 - p))
    fitted = sm.Logit(y, sm.add_constant(logit)).fit(disp=0, tol=1e-12, maxiter=100)
    assert result.intercept == pytest.approx(fitted.params[0], abs=1e-9)
    assert result.slope == pytest.approx(fitted.params[1], abs=1e-9)
    assert result.brier == pytest.approx(brier_score_loss(y, p), abs=1e-12)
