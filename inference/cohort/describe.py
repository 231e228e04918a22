"""``cohort describe``: the baseline table and the by-group figures of a cohort, as files.

Writes ``baseline.csv`` (the table as a paper prints it), ``baseline.json``
(every figure, the test and its statistic), one ``<column>_by_<group>.png``
(violin and box plot) per column given as a score, and ``describe.html``
with all of it embedded. The tests are those of
:mod:`inference.cohort.baseline`, named in the table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from jinja2 import Environment, select_autoescape

from inference.cohort.baseline import (
    ANOVA, CHI_SQUARED, FISHER, KRUSKAL, MANN_WHITNEY, NORMALITY_ALPHA, STUDENT_T, WELCH_T, BaselineError,
    baseline_frame, baseline_json, baseline_table,
)
from inference.cohort.report import embedded_png, file_part, plot_by_group

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:80em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.3em .6em;text-align:left}
th{background:#eee}img{max-width:32%;margin:.2em}.note{color:#555;font-size:.9em}
</style></head><body>
<h1>{{ title }}</h1>
<p class="note">Groups by <code>{{ group }}</code>. Continuous: mean ± SD where every group passes Shapiro-Wilk
(p &gt; {{ alpha }}), else median [Q1, Q3]; categorical: n (%). Tests, two-sided: {{ tests }}.</p>
<table><tr>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in rows %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>{% endfor %}</table>
{% for fig in figures %}<img alt="{{ fig.alt }}" src="data:image/png;base64,{{ fig.data }}">{% endfor %}
</body></html>
"""

_TESTS = (f"{STUDENT_T} or {WELCH_T} (normal; Levene decides) else {MANN_WHITNEY} for two groups; "
          f"{ANOVA} (normal) else {KRUSKAL} for three or more; {CHI_SQUARED}, or {FISHER} for a 2 x 2 table "
          "with an expected count below 5")


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def describe_cohort(frame: pd.DataFrame, group: str, out_dir: str | Path, *, variables: Sequence[str] | None = None,
                    categorical: Sequence[str] = (), scores: Sequence[str] = (),
                    title: str = "Baseline characteristics") -> Path:
    """Write the baseline table, the by-group figures and ``describe.html``; return the HTML path.

    Raises:
        BaselineError: see :func:`inference.cohort.baseline.baseline_table`; a score column that is
            missing or not numeric.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = baseline_table(frame, group, variables, categorical=categorical)
    table = baseline_frame(rows)
    table.to_csv(out / "baseline.csv", index=False)
    (out / "baseline.json").write_text(json.dumps({"group": group, "rows": baseline_json(rows)}, indent=1) + "\n")
    figures = []
    for score in scores:
        if score not in frame.columns or not pd.api.types.is_numeric_dtype(frame[score]):
            raise BaselineError(f"score column {score!r} is missing or not numeric")
        path = out / f"{file_part(score)}_by_{file_part(group)}.png"
        figures.append(embedded_png(plot_by_group(frame, score, group, path)))
    page = Environment(autoescape=select_autoescape(default=True)).from_string(_TEMPLATE).render(
        title=title, group=group, alpha=NORMALITY_ALPHA, tests=_TESTS, columns=list(table.columns),
        rows=[[_cell(v) for v in record] for record in table.itertuples(index=False)], figures=figures)
    path = out / "describe.html"
    path.write_text(page, encoding="utf-8")
    return path
