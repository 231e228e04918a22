"""Figures (PNG) and one self-contained HTML report of an evaluation.

``write_report(predictions, evaluation, out_dir)`` writes ``roc_<partition>.png``,
``calibration_<partition>.png``, ``dca_<partition>.png`` and ``report.html``
(figures embedded as base64, so the file can be mailed or archived alone).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from jinja2 import Environment, select_autoescape  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from inference.cohort.evaluate import PARTITIONS, score_columns  # noqa: E402

_PAGE_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.3em .6em;text-align:right}
th{background:#eee}td:first-child,th:first-child{text-align:left}img{max-width:32%;margin:.2em}
.note{color:#555;font-size:.9em}
</style></head><body>
<h1>{{ title }}</h1>
"""
"""Head of both report pages (the binary and the multi-class one)."""

_TEMPLATE = _PAGE_HEAD + """<p class="note">{{ summary }}</p>
{% for partition in partitions %}
<h2>{{ partition|capitalize }} partition</h2>
<table><tr><th>score</th><th>n (events)</th><th>AUC</th><th>95% CI (DeLong)</th><th>95% CI (bootstrap)</th>
<th>threshold (train Youden)</th><th>accuracy</th><th>sensitivity</th><th>specificity</th><th>PPV</th><th>NPV</th>
<th>F1</th><th>confusion [[TN,FP],[FN,TP]]</th><th>Brier</th><th>HL p</th><th>cal. slope</th></tr>
{% for row in tables[partition] %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>{% endfor %}
</table>
{% for fig in figures[partition] %}<img alt="{{ fig.alt }}" src="data:image/png;base64,{{ fig.data }}">{% endfor %}
{% endfor %}
{% if comparisons %}<h2>Paired DeLong tests</h2>
<table><tr><th>score A</th><th>score B</th><th>partition</th><th>AUC A</th><th>AUC B</th><th>difference (95% CI)</th><th>Z</th><th>p</th></tr>
{% for c in comparisons %}<tr><td>{{ c.a }}</td><td>{{ c.b }}</td><td>{{ c.partition }}</td><td>{{ "%.3f"|format(c.auc1) }}</td>
<td>{{ "%.3f"|format(c.auc2) }}</td><td>{{ "%.3f (%.3f, %.3f)"|format(c.difference, c.ci_low, c.ci_high) }}</td>
<td>{{ "%.2f"|format(c.z) }}</td><td>{{ "%.4f"|format(c.p_value) }}</td></tr>{% endfor %}</table>{% endif %}
{% for section in sections %}<h2>{{ section.title }}</h2>
{% for fig in section.figures %}<img alt="{{ fig.alt }}" src="data:image/png;base64,{{ fig.data }}">{% endfor %}
{% endfor %}
{% if importance %}<h2>Permutation importance (decrease of test AUC)</h2>
{% for name, values in importance.items() %}<h3>{{ name }}</h3><table><tr><th>input</th><th>importance</th></tr>
{% for k, v in values.items() %}<tr><td>{{ k }}</td><td>{{ "%.4f"|format(v) }}</td></tr>{% endfor %}</table>{% endfor %}{% endif %}
</body></html>
"""


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _label(column: str) -> str:
    kind, _, name = column.partition(":")
    return {"model": "model ", "radscore": "radscore ", "clf": "classifier "}.get(kind, "") + name


def plot_roc(pred: pd.DataFrame, evaluation: dict[str, Any], partition: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    part = pred[pred.partition == partition]
    for column in score_columns(pred):
        entry = evaluation["scores"][column].get(partition)
        if entry is None:
            continue
        fpr, tpr, _ = roc_curve(part["y"], part[column])
        auc = entry["auc"]
        ax.plot(fpr, tpr, label=f"{_label(column)}: {auc['auc']:.3f} ({auc['ci_low']:.3f}-{auc['ci_high']:.3f})")
    return _save_roc(fig, ax, f"ROC, {partition} (AUC, 95% CI DeLong)", path)


def _save_roc(fig: Any, ax: Any, title: str, path: Path) -> Path:
    """Chance line, axes, legend; then save."""
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=7)
    return save_figure(fig, path)


def plot_calibration(evaluation: dict[str, Any], partition: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    for column, entry in evaluation["scores"].items():
        cal = entry.get(partition, {}).get("calibration")
        if cal is None:
            continue
        ax.plot(cal["bin_predicted"], cal["bin_observed"], marker="o", markersize=3,
                label=f"{_label(column)}: Brier {cal['brier']:.3f}, HL p {cal['hosmer_lemeshow_p']:.2f}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="ideal")
    ax.set(xlabel="predicted probability (decile mean)", ylabel="observed event rate",
           title=f"Calibration, {partition}", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=7)
    return save_figure(fig, path)


def plot_decision_curve(evaluation: dict[str, Any], partition: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    reference = None
    for column, entry in evaluation["scores"].items():
        dca = entry.get(partition, {}).get("decision_curve")
        if dca is None:
            continue
        reference = dca
        ax.plot(dca["thresholds"], dca["model"], label=_label(column))
    if reference is not None:
        ax.plot(reference["thresholds"], reference["treat_all"], color="black", linewidth=1, label="treat all")
        ax.plot(reference["thresholds"], reference["treat_none"], color="grey", linewidth=1, label="treat none")
        prevalence = max(reference["treat_all"][0], 0.01)
        ax.set_ylim(-0.05, prevalence * 1.15 + 0.01)
    ax.set(xlabel="threshold probability", ylabel="net benefit", title=f"Decision curve, {partition}", xlim=(0, 1))
    ax.legend(loc="upper right", fontsize=7)
    return save_figure(fig, path)


def plot_lasso_path(selector: Any, title: str, path: Path) -> Path:
    """Coefficients along the LASSO path (a fitted :class:`~inference.cohort.select.LassoLogisticCV`),
    with lambda-min and lambda-1SE marked, as glmnet's ``plot(fit, xvar = "lambda")``."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    log_lambda = np.log(selector.lambdas_)
    for j in range(selector.coef_path_.shape[1]):
        if np.any(selector.coef_path_[:, j] != 0):
            ax.plot(log_lambda, selector.coef_path_[:, j], linewidth=1)
    _mark_lambdas(ax, selector)
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set(xlabel="log(lambda)", ylabel="coefficient", title=f"LASSO coefficient path, {title}")
    ax.legend(loc="upper right", fontsize=7)
    return save_figure(fig, path)


def plot_lasso_cv(selector: Any, title: str, path: Path) -> Path:
    """Cross-validated deviance (mean +/- 1 SE) along the path, lambda-min and lambda-1SE marked,
    as glmnet's ``plot(cv.glmnet(...))``."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.errorbar(np.log(selector.lambdas_), selector.cv_mean_, yerr=selector.cv_se_, fmt="o", markersize=3,
                color="tab:red", ecolor="grey", elinewidth=0.8, capsize=2)
    _mark_lambdas(ax, selector)
    ax.set(xlabel="log(lambda)", ylabel="binomial deviance (CV)", title=f"LASSO cross-validation, {title}")
    ax.legend(loc="upper left", fontsize=7)
    return save_figure(fig, path)


def _mark_lambdas(ax: Any, selector: Any) -> None:
    ax.axvline(np.log(selector.lambda_min_), color="black", linestyle="--", linewidth=1,
               label=f"lambda-min {selector.lambda_min_:.4g}")
    ax.axvline(np.log(selector.lambda_1se_), color="black", linestyle=":", linewidth=1,
               label=f"lambda-1SE {selector.lambda_1se_:.4g}")


def plot_by_group(frame: pd.DataFrame, column: str, group: str, path: Path) -> Path:
    """Violin with a box plot inside of one column by group (the radscore by fracture status)."""
    names = sorted(frame[group].dropna().unique(), key=lambda v: (str(type(v)), v))
    samples = [frame.loc[frame[group] == g, column].dropna().to_numpy(dtype=float) for g in names]
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2.5, 4.5))
    shown = [i for i, s in enumerate(samples) if len(s) > 1]
    if shown:
        ax.violinplot([samples[i] for i in shown], positions=[i + 1 for i in shown], showextrema=False)
    ax.boxplot(samples, positions=range(1, len(names) + 1), widths=0.15, showfliers=True)
    ax.set_xticks(range(1, len(names) + 1), [f"{g}\n(n={len(s)})" for g, s in zip(names, samples, strict=True)])
    ax.set(xlabel=group, ylabel=column, title=f"{column} by {group}")
    return save_figure(fig, path)


def save_figure(fig: Any, path: Path) -> Path:
    """Write a figure as PNG and close it."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def file_part(name: object) -> str:
    """A model, class or column name as part of a file name (``clf:xgboost:wedge`` -> ``clf_xgboost_wedge``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("_") or "column"


def _row(column: str, entry: dict[str, Any]) -> list[str]:
    at = entry["at_threshold"]
    auc, boot = entry["auc"], entry["auc_bootstrap"]
    cal = entry.get("calibration") or {}
    return [_label(column), f"{entry['n']} ({entry['events']})", _fmt(auc["auc"]),
            f"{_fmt(auc['ci_low'])}-{_fmt(auc['ci_high'])}", f"{_fmt(boot['ci_low'])}-{_fmt(boot['ci_high'])}",
            _fmt(at["threshold"], 4), _fmt(at["accuracy"]), _fmt(at["sensitivity"]), _fmt(at["specificity"]),
            _fmt(at["ppv"]), _fmt(at["npv"]), _fmt(at.get("f1")), str(at["confusion_matrix"]), _fmt(cal.get("brier")),
            _fmt(cal.get("hosmer_lemeshow_p")), _fmt(cal.get("slope"))]


def lasso_figures(radscores: dict[str, Any], out_dir: Path) -> list[Path]:
    """``lasso_path_<voi>.png`` and ``lasso_cv_<voi>.png`` for every radscore pipeline with a LASSO step."""
    from inference.cohort.select import LassoLogisticCV

    paths = []
    for voi, pipeline in radscores.items():
        lassos = [step for _, step in pipeline.steps if isinstance(step, LassoLogisticCV)]
        for n, lasso in enumerate(lassos):
            suffix = voi if len(lassos) == 1 else f"{voi}_{n + 1}"
            paths.append(plot_lasso_path(lasso, voi, out_dir / f"lasso_path_{suffix}.png"))
            paths.append(plot_lasso_cv(lasso, voi, out_dir / f"lasso_cv_{suffix}.png"))
    return paths


def write_report(predictions: pd.DataFrame, evaluation: dict[str, Any], out_dir: str | Path,
                 title: str = "Cohort model evaluation", summary: str = "",
                 sections: Sequence[tuple[str, Sequence[Path]]] = ()) -> Path:
    """Write the PNG figures and ``report.html`` into ``out_dir``; returns the HTML path.

    ``sections``: more figures (already written), as (heading, PNG paths), after the partitions.

    Multi-class evaluations get the HTML tables of macro/micro AUC only.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = Environment(autoescape=select_autoescape(default=True))
    if not evaluation.get("binary", True):
        return _write_multiclass_report(predictions, evaluation, out, title, summary)
    partitions = [p for p in PARTITIONS if (predictions.partition == p).any()]
    figures: dict[str, list[dict[str, str]]] = {}
    tables: dict[str, list[list[str]]] = {}
    for partition in partitions:
        paths = [plot_roc(predictions, evaluation, partition, out / f"roc_{partition}.png"),
                 plot_calibration(evaluation, partition, out / f"calibration_{partition}.png"),
                 plot_decision_curve(evaluation, partition, out / f"dca_{partition}.png")]
        figures[partition] = [embedded_png(p) for p in paths]
        tables[partition] = [_row(c, e[partition]) for c, e in evaluation["scores"].items() if partition in e]
    page = env.from_string(_TEMPLATE).render(
        title=title, summary=summary, partitions=partitions, tables=tables, figures=figures,
        comparisons=evaluation.get("comparisons", []), importance=evaluation.get("importance", {}),
        sections=[{"title": heading, "figures": [embedded_png(p) for p in paths]} for heading, paths in sections])
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def embedded_png(path: Path) -> dict[str, str]:
    """A PNG file as the templates embed it: ``{"alt": stem, "data": base64}``."""
    return {"alt": path.stem, "data": base64.b64encode(path.read_bytes()).decode("ascii")}


_MULTICLASS_TEMPLATE = _PAGE_HEAD + """<p class="note">{{ summary }} One-vs-rest per class; the predicted class is the most probable one; 95% CIs by
bootstrap resampling within each class (AUC: DeLong).</p>
{% for block in blocks %}
<h2>{{ block.name }}, {{ block.partition }} partition</h2>
<table><tr><th>macro AUC</th><th>micro AUC</th><th>accuracy</th><th>macro F1</th><th>micro F1</th></tr>
<tr><td>{{ block.macro }}</td><td>{{ block.micro }}</td><td>{{ block.accuracy }}</td><td>{{ block.f1_macro }}</td>
<td>{{ block.f1_micro }}</td></tr></table>
<table><tr><th>class</th><th>AUC (DeLong 95% CI)</th><th>sensitivity</th><th>specificity</th><th>F1</th></tr>
{% for row in block.rows %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>{% endfor %}</table>
<img alt="{{ block.figure.alt }}" src="data:image/png;base64,{{ block.figure.data }}">
{% endfor %}
</body></html>
"""


def _ci(entry: dict[str, Any]) -> str:
    return f"{_fmt(entry['estimate'])} ({_fmt(entry['ci_low'])}-{_fmt(entry['ci_high'])})"


def plot_class_roc(pred: pd.DataFrame, score: str, classes: Sequence[str], partition: str, path: Path) -> Path:
    """One-vs-rest ROC curve of every class for one multi-class score."""
    fig, ax = plt.subplots(figsize=(5, 5))
    part = pred[pred.partition == partition]
    for cls in classes:
        fpr, tpr, _ = roc_curve(part["y"].astype(str) == cls, part[f"{score}:{cls}"])
        ax.plot(fpr, tpr, label=f"class {cls}")
    return _save_roc(fig, ax, f"{_label(score)}, {partition}: per-class ROC", path)


def _write_multiclass_report(predictions: pd.DataFrame, evaluation: dict[str, Any], out: Path, title: str,
                             summary: str) -> Path:
    classes = evaluation["classes"]
    blocks = []
    for name, entry in evaluation["scores"].items():
        for partition in PARTITIONS:
            result = entry.get(partition)
            if result is None:
                continue
            figure = plot_class_roc(predictions, name, classes, partition,
                                    out / f"roc_{file_part(name)}_{partition}.png")
            rows = [[cls, f"{_fmt(c['auc']['auc'])} ({_fmt(c['auc']['ci_low'])}-{_fmt(c['auc']['ci_high'])})",
                     _ci(c["sensitivity"]), _ci(c["specificity"]), _ci(c["f1"])]
                    for cls, c in result["classes"].items()]
            blocks.append({"name": _label(name), "partition": partition, "macro": _ci(result["macro_bootstrap"]),
                           "micro": _fmt(result["micro"]), "accuracy": _fmt(result["accuracy"]),
                           "f1_macro": _ci(result["f1_macro_bootstrap"]), "f1_micro": _fmt(result["f1_micro"]),
                           "rows": rows, "figure": embedded_png(figure)})
    page = Environment(autoescape=select_autoescape(default=True)).from_string(_MULTICLASS_TEMPLATE).render(
        title=title, summary=summary, blocks=blocks)
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
