"""The baseline table (``cohort describe``): the right test per variable, and the same p values as
statsmodels, an implementation independent of the scipy calls the table makes."""

from __future__ import annotations

import html
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.contingency_tables import Table
from statsmodels.stats.oneway import anova_oneway
from statsmodels.stats.weightstats import ttest_ind

from inference.cohort.baseline import (
    ANOVA, CHI_SQUARED, FISHER, KRUSKAL, MANN_WHITNEY, STUDENT_T, WELCH_T, BaselineError, baseline_frame,
    baseline_table,
)
from inference.cohort.describe import describe_cohort
from scpnode.cli import main

TOLERANCE = 1e-9


def _cohort(seed: int = 3, n: int = 80) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    group = np.repeat([0, 1], n // 2)
    return pd.DataFrame({
        "fracture": group,
        "age": rng.normal(66, 7, n) + 4 * group,                                    # normal, equal variances
        "vbmd": np.where(group == 1, rng.normal(95, 35, n), rng.normal(130, 8, n)),  # normal, unequal variances
        "days_in_hospital": rng.exponential(3, n) * (1 + group),                     # skewed
        "sex": rng.choice(["F", "M"], n, p=[0.7, 0.3]),
        "site": rng.choice(["A", "B", "C"], n),
        "steroids": np.r_[np.zeros(n // 2 - 2), np.ones(2), np.zeros(n // 2 - 6), np.ones(6)].astype(int),
    })


def _row(rows, name):
    return next(r for r in rows if r.variable == name)


def test_each_variable_gets_its_test_and_the_p_value_of_an_independent_implementation():
    frame = _cohort()
    rows = baseline_table(frame, "fracture")
    a, b = (frame[frame.fracture == g] for g in (0, 1))

    age = _row(rows, "age")
    assert age.test == STUDENT_T and age.normal
    assert age.p_value == pytest.approx(ttest_ind(a.age, b.age, usevar="pooled")[1], abs=TOLERANCE)

    vbmd = _row(rows, "vbmd")
    assert vbmd.test == WELCH_T
    assert vbmd.p_value == pytest.approx(ttest_ind(a.vbmd, b.vbmd, usevar="unequal")[1], abs=TOLERANCE)

    days = _row(rows, "days_in_hospital")
    assert days.test == MANN_WHITNEY and not days.normal
    # the normal approximation with tie and continuity correction, written out (R's wilcox.test, exact=FALSE)
    x, y = a.days_in_hospital.to_numpy(), b.days_in_hospital.to_numpy()
    ranks = sps.rankdata(np.r_[x, y])
    u = ranks[: len(x)].sum() - len(x) * (len(x) + 1) / 2
    mean, sd = len(x) * len(y) / 2, np.sqrt(len(x) * len(y) * (len(x) + len(y) + 1) / 12)
    z = (abs(u - mean) - 0.5) / sd
    assert days.p_value == pytest.approx(2 * sps.norm.sf(z), abs=TOLERANCE)

    sex = _row(rows, "sex")
    counts = pd.crosstab(frame.fracture, frame.sex).to_numpy()
    assert sex.test == CHI_SQUARED and sex.kind == "categorical"
    assert sex.p_value == pytest.approx(Table(counts).test_nominal_association().pvalue, abs=TOLERANCE)
    assert sex.groups["0"].counts == dict(zip(["F", "M"], counts[0].tolist(), strict=True))

    steroids = _row(rows, "steroids")  # 2 x 2 with expected counts below 5
    assert steroids.test == FISHER and "expected count below 5" in steroids.note
    assert steroids.p_value == pytest.approx(sps.fisher_exact(pd.crosstab(frame.fracture, frame.steroids))[1],
                                             abs=TOLERANCE)


def test_three_groups_use_anova_or_kruskal_wallis():
    frame = _cohort(seed=5, n=90)
    frame["site"] = np.repeat(["A", "B", "C"], 30)
    rows = baseline_table(frame, "site", ["age", "days_in_hospital"])
    samples = [frame.loc[frame.site == s, "age"] for s in "ABC"]
    assert _row(rows, "age").test == ANOVA
    assert _row(rows, "age").p_value == pytest.approx(
        anova_oneway(samples, use_var="equal").pvalue, abs=TOLERANCE)
    days = _row(rows, "days_in_hospital")
    assert days.test == KRUSKAL
    assert days.p_value == pytest.approx(
        sps.kruskal(*[frame.loc[frame.site == s, "days_in_hospital"] for s in "ABC"]).pvalue, abs=TOLERANCE)


def test_missing_values_are_counted_and_left_out():
    frame = _cohort()
    frame.loc[frame.index[:5], "age"] = np.nan
    age = _row(baseline_table(frame, "fracture", ["age"]), "age")
    assert age.groups["0"].missing == 5 and age.groups["0"].n == 35
    table = baseline_frame([age])
    assert list(table.columns) == ["variable", "0", "1", "test", "statistic", "p", "note"]
    assert table.iloc[0]["0"] == "40" and "±" in table.iloc[1]["0"]


def test_bad_requests_name_the_column():
    frame = _cohort()
    with pytest.raises(BaselineError, match="no group column 'outcome'"):
        baseline_table(frame, "outcome")
    with pytest.raises(BaselineError, match="no column 'bmi'"):
        baseline_table(frame, "fracture", ["bmi"])
    with pytest.raises(BaselineError, match="fewer than two groups"):
        baseline_table(frame[frame.fracture == 1], "fracture")


def test_describe_writes_the_table_the_figures_and_a_page_naming_the_tests(tmp_path):
    frame = _cohort()
    frame["radscore"] = frame.vbmd / -40
    page = describe_cohort(frame, "fracture", tmp_path, scores=["radscore"]).read_text()
    assert all(name in html.unescape(page) for name in (STUDENT_T, WELCH_T, MANN_WHITNEY, FISHER, CHI_SQUARED))
    assert (tmp_path / "radscore_by_fracture.png").stat().st_size > 5000
    document = json.loads((tmp_path / "baseline.json").read_text())
    assert {r["variable"] for r in document["rows"]} >= {"age", "sex", "radscore"}
    assert pd.read_csv(tmp_path / "baseline.csv").iloc[0]["variable"] == "n"


def test_describe_on_the_command_line(tmp_path, capsys):
    frame = _cohort()
    frame.insert(0, "study_id", [f"S{i}" for i in range(len(frame))])
    frame["cortical:f00"] = 1.0  # feature columns are not described unless asked for
    frame.to_csv(tmp_path / "features.csv", index=False)
    assert main(["cohort", "describe", str(tmp_path / "features.csv"), "--group", "fracture",
                 "--scores", "vbmd", "--out", str(tmp_path / "desc")]) == 0
    table = pd.read_csv(tmp_path / "desc" / "baseline.csv")
    assert "cortical:f00" not in set(table.variable) and "vbmd" in set(table.variable)
    assert main(["cohort", "describe", str(tmp_path / "features.csv"), "--group", "nope",
                 "--out", str(tmp_path / "x")]) == 2
    assert "no group column 'nope'" in capsys.readouterr().err
