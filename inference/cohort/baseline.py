"""The baseline table of a cohort: each characteristic by group, with the test the papers used.

The source studies describe their cohorts (age, sex, BMI, vBMD, T-score,
radscores...) by group - fracture vs no fracture, or training vs test vs
external - with mean +/- SD or median [IQR] and a p value. Which test gives
the p value is decided per variable and written in the table by name:

- a continuous variable in **two groups**: Student's t-test when every group
  looks normal (Shapiro-Wilk p > 0.05) and the variances are equal (Levene
  p > 0.05), Welch's t-test when normal with unequal variances, the
  Mann-Whitney U test otherwise;
- in **three or more groups**: one-way ANOVA when every group looks normal,
  the Kruskal-Wallis H test otherwise;
- a **categorical** variable (text, or numbers with at most
  ``max_categories`` values such as sex 0/1): Pearson's chi-squared test,
  or Fisher's exact test for a 2 x 2 table with an expected count below 5.

Every test is scipy's (``scipy.stats``), two-sided; nothing is recomputed by
hand. Missing values are left out of each variable's test and counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats as sps

NORMALITY_ALPHA = 0.05
"""Shapiro-Wilk and Levene p values above this count as normal / equal variances."""

STUDENT_T = "Student's t-test"
WELCH_T = "Welch's t-test"
MANN_WHITNEY = "Mann-Whitney U test"
ANOVA = "one-way ANOVA"
KRUSKAL = "Kruskal-Wallis H test"
CHI_SQUARED = "Pearson's chi-squared test"
FISHER = "Fisher's exact test"


class BaselineError(ValueError):
    """A table or a request the baseline table cannot be made from (names the column)."""


@dataclass(frozen=True)
class GroupSummary:
    """One variable in one group."""

    n: int
    """Rows of the group with a value."""
    missing: int
    mean: float | None = None
    sd: float | None = None
    median: float | None = None
    q1: float | None = None
    q3: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    """Categorical: rows per category."""

    def text(self, normal: bool) -> str:
        """As a baseline table shows it: mean +/- SD, median [Q1, Q3], or n (%) per category."""
        if self.counts:
            return "; ".join(f"{k}: {v} ({100 * v / self.n:.1f}%)" if self.n else f"{k}: 0"
                             for k, v in self.counts.items())
        if self.n == 0:
            return "-"
        if normal:
            return f"{self.mean:.2f} ± {self.sd:.2f}"
        return f"{self.median:.2f} [{self.q1:.2f}, {self.q3:.2f}]"


@dataclass(frozen=True)
class BaselineRow:
    """One variable of the baseline table."""

    variable: str
    kind: Literal["continuous", "categorical"]
    groups: dict[str, GroupSummary]
    test: str
    """The test's name (one of the module constants), or "" where no test could be run."""
    statistic: float | None
    p_value: float | None
    normal: bool
    """Continuous: every group passed Shapiro-Wilk (so means are shown, else medians)."""
    note: str = ""


def _is_categorical(values: pd.Series, max_categories: int) -> bool:
    present = values.dropna()
    return not pd.api.types.is_numeric_dtype(present) or present.nunique() <= max_categories


def _looks_normal(samples: Sequence[np.ndarray]) -> bool:
    """Shapiro-Wilk in every group (3 to 5,000 values; outside that range, normality is not claimed)."""
    for sample in samples:
        if not 3 <= len(sample) <= 5000 or np.ptp(sample) == 0:
            return False
        if sps.shapiro(sample).pvalue <= NORMALITY_ALPHA:
            return False
    return True


def _continuous(name: str, groups: dict[str, pd.Series]) -> BaselineRow:
    samples = {g: v.dropna().to_numpy(dtype=float) for g, v in groups.items()}
    summaries = {g: GroupSummary(
        n=len(s), missing=int(groups[g].isna().sum()),
        mean=float(np.mean(s)) if len(s) else None, sd=float(np.std(s, ddof=1)) if len(s) > 1 else None,
        median=float(np.median(s)) if len(s) else None,
        q1=float(np.percentile(s, 25)) if len(s) else None, q3=float(np.percentile(s, 75)) if len(s) else None)
        for g, s in samples.items()}
    usable = [s for s in samples.values() if len(s) >= 2]
    normal = _looks_normal(list(samples.values()))
    if len(usable) < 2 or len(usable) < len(samples):
        return BaselineRow(name, "continuous", summaries, "", None, None, normal,
                           note="fewer than two values in a group: no test")
    if len(samples) == 2:
        a, b = usable
        if normal:
            equal = sps.levene(a, b).pvalue > NORMALITY_ALPHA
            result = sps.ttest_ind(a, b, equal_var=equal)
            test = STUDENT_T if equal else WELCH_T
        else:
            result, test = sps.mannwhitneyu(a, b, alternative="two-sided"), MANN_WHITNEY
    elif normal:
        result, test = sps.f_oneway(*usable), ANOVA
    else:
        result, test = sps.kruskal(*usable), KRUSKAL
    return BaselineRow(name, "continuous", summaries, test, float(result.statistic), float(result.pvalue), normal)


def _categorical(name: str, groups: dict[str, pd.Series]) -> BaselineRow:
    categories = sorted({str(v) for s in groups.values() for v in s.dropna()})
    summaries = {}
    table = []
    for g, values in groups.items():
        present = values.dropna().astype(str)
        counts = {c: int((present == c).sum()) for c in categories}
        summaries[g] = GroupSummary(n=len(present), missing=int(values.isna().sum()), counts=counts)
        table.append([counts[c] for c in categories])
    observed = np.array(table)
    observed = observed[:, observed.sum(axis=0) > 0]
    if observed.shape[1] < 2 or (observed.sum(axis=1) == 0).any():
        return BaselineRow(name, "categorical", summaries, "", None, None, False,
                           note="a single category, or an empty group: no test")
    chi2, p, _, expected = sps.chi2_contingency(observed, correction=False)
    if observed.shape == (2, 2) and (expected < 5).any():
        result = sps.fisher_exact(observed)
        return BaselineRow(name, "categorical", summaries, FISHER, float(result.statistic), float(result.pvalue),
                           False, note="expected count below 5")
    note = "expected count below 5 in a cell" if (expected < 5).any() else ""
    return BaselineRow(name, "categorical", summaries, CHI_SQUARED, float(chi2), float(p), False, note=note)


def baseline_table(frame: pd.DataFrame, group: str, variables: Sequence[str] | None = None, *,
                   categorical: Sequence[str] = (), max_categories: int = 5) -> list[BaselineRow]:
    """One :class:`BaselineRow` per variable (default: every column but ``group``), groups in sorted order.

    Raises:
        BaselineError: ``group`` or a variable is not a column, or fewer than two groups.
    """
    if group not in frame.columns:
        raise BaselineError(f"no group column {group!r}; columns: {', '.join(map(str, frame.columns[:20]))}")
    variables = [c for c in frame.columns if c != group] if variables is None else list(variables)
    missing = [v for v in [*variables, *categorical] if v not in frame.columns]
    if missing:
        raise BaselineError(f"no column {missing[0]!r}")
    labels = frame[group].dropna()
    if labels.nunique() < 2:
        raise BaselineError(f"group column {group!r} has fewer than two groups")
    names = sorted(labels.unique(), key=lambda v: (str(type(v)), v))
    rows = []
    for variable in variables:
        groups = {str(g): frame.loc[frame[group] == g, variable] for g in names}
        if variable in categorical or _is_categorical(frame[variable], max_categories):
            rows.append(_categorical(variable, groups))
        else:
            rows.append(_continuous(variable, groups))
    return rows


def baseline_frame(rows: Sequence[BaselineRow]) -> pd.DataFrame:
    """The table as people read it: a first row with each group's size, then one row per variable
    (one column per group, then test, statistic, p and note)."""
    if not rows:
        return pd.DataFrame(columns=["variable", "test", "statistic", "p", "note"])
    sizes = {g: str(s.n + s.missing) for g, s in rows[0].groups.items()}
    records: list[dict[str, Any]] = [{"variable": "n", **sizes, "test": "", "statistic": None, "p": None,
                                      "note": ""}]
    for row in rows:
        records.append({"variable": row.variable, **{g: s.text(row.normal) for g, s in row.groups.items()},
                        "test": row.test, "statistic": row.statistic, "p": row.p_value, "note": row.note})
    return pd.DataFrame.from_records(records)


def baseline_json(rows: Sequence[BaselineRow]) -> list[dict[str, Any]]:
    """JSON-able rows (NaN as null)."""
    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        return value

    return [clean(asdict(row)) for row in rows]
