"""Nomograms of fitted logistic models: points per input, total points, predicted probability.

The construction is the usual one (Iasonos et al., J Clin Oncol 2008;26:1364;
R's ``rms::nomogram``): each input's contribution ``b_j * x_j`` over its
observed range is scaled so that the input with the widest range of
contribution spans 0-100 points; a subject's total points map back to the
linear predictor, and the probability is its logistic transform. So reading
the nomogram gives exactly the model's probability (:meth:`Nomogram.probability`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from inference.cohort.fit import CohortFit, logistic_inputs  # noqa: E402
from inference.cohort.models import features_into_model  # noqa: E402
from inference.cohort.report import file_part, save_figure  # noqa: E402

PROBABILITY_TICKS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
MIN_LABEL_GAP = 6.0
"""Least distance between two tick labels of an axis, on the 0-100 width of the figure."""


@dataclass(frozen=True)
class NomogramInput:
    """One input's axis: its observed range and its coefficient."""

    name: str
    coefficient: float
    low: float
    high: float

    @property
    def least(self) -> float:
        """The smallest contribution ``b * x`` over the range."""
        return min(self.coefficient * self.low, self.coefficient * self.high)

    @property
    def spread(self) -> float:
        """The width of the contribution's range."""
        return abs(self.coefficient) * (self.high - self.low)


@dataclass(frozen=True)
class Nomogram:
    """A logistic model ``logit p = intercept + sum b_j x_j`` laid out as points."""

    intercept: float
    inputs: tuple[NomogramInput, ...]

    @property
    def points_per_unit(self) -> float:
        """Points per unit of linear predictor (the widest input spans 100 points)."""
        widest = max(i.spread for i in self.inputs)
        return 100.0 / widest if widest > 0 else 0.0

    def points(self, name: str, value: float | np.ndarray) -> float | np.ndarray:
        """The points of one input at ``value``."""
        spec = next(i for i in self.inputs if i.name == name)
        return (spec.coefficient * np.asarray(value, dtype=float) - spec.least) * self.points_per_unit

    def total_points(self, values: Mapping[str, float | np.ndarray]) -> np.ndarray:
        """Total points of subjects given their inputs."""
        return sum(np.asarray(self.points(i.name, values[i.name]), dtype=float) for i in self.inputs)

    def probability(self, total_points: float | np.ndarray) -> np.ndarray:
        """The predicted probability at a total of points."""
        linear = self.intercept + sum(i.least for i in self.inputs) + np.asarray(total_points) / self.points_per_unit
        return 1.0 / (1.0 + np.exp(-linear))

    def points_at_probability(self, probability: float) -> float:
        """The total points where the model predicts ``probability``."""
        logit = np.log(probability / (1 - probability))
        return float((logit - self.intercept - sum(i.least for i in self.inputs)) * self.points_per_unit)


def nomogram_of(estimator: object, inputs: pd.DataFrame) -> Nomogram:
    """The nomogram of a fitted binary logistic regression (scikit-learn) on ``inputs``' columns,
    each axis spanning the 1st to 99th percentile of the observed values."""
    coefficients = np.asarray(estimator.coef_[0], dtype=float)  # type: ignore[attr-defined]
    axes = tuple(NomogramInput(str(name), float(b), float(np.percentile(inputs[name], 1)),
                               float(np.percentile(inputs[name], 99)))
                 for name, b in zip(inputs.columns, coefficients, strict=True))
    return Nomogram(float(estimator.intercept_[0]), axes)  # type: ignore[attr-defined]


def plot_nomogram(nomogram: Nomogram, title: str, path: Path) -> Path:
    """Draw the nomogram: a points ruler, one axis per input, total points and probability."""
    rows = ["Points", *(i.name for i in nomogram.inputs), "Total points", "Probability"]
    fig, ax = plt.subplots(figsize=(8, 0.7 * len(rows) + 1))
    top_total = sum(i.spread for i in nomogram.inputs) * nomogram.points_per_unit
    scale = 100.0 / max(top_total, 1e-9)  # total points drawn on the same width as the 0-100 ruler

    def axis(y: float, positions: np.ndarray, labels: list[str]) -> None:
        ax.hlines(y, positions.min(), positions.max(), color="black", linewidth=1)
        last = -np.inf
        for x, label in sorted(zip(positions, labels, strict=True)):
            ax.vlines(x, y, y + 0.12, color="black", linewidth=1)
            if x - last >= MIN_LABEL_GAP:  # a short axis (a steep model) would print labels over each other
                ax.text(x, y + 0.18, label, ha="center", va="bottom", fontsize=7)
                last = x

    y = len(rows) - 1
    axis(y, np.linspace(0, 100, 11), [f"{v:.0f}" for v in np.linspace(0, 100, 11)])
    for spec in nomogram.inputs:
        y -= 1
        values = np.linspace(spec.low, spec.high, 6)
        axis(y, np.asarray(nomogram.points(spec.name, values), dtype=float), [f"{v:.3g}" for v in values])
    y -= 1
    totals = np.linspace(0, top_total, 9)
    axis(y, totals * scale, [f"{v:.0f}" for v in totals])
    y -= 1
    shown = [p for p in PROBABILITY_TICKS if 0 <= nomogram.points_at_probability(p) <= top_total]
    if shown:
        axis(y, np.array([nomogram.points_at_probability(p) * scale for p in shown]), [f"{p:g}" for p in shown])
    ax.set_yticks(range(len(rows)), list(reversed(rows)), fontsize=8)
    ax.set_xlim(-5, 105)
    ax.set_ylim(-0.6, len(rows) - 0.3)
    ax.set_xticks([])
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"Nomogram, {title}")
    return save_figure(fig, path)


def nomogram_figures(fit: CohortFit, out_dir: Path) -> list[Path]:
    """Nomograms on the training rows: ``nomogram_<model>.png`` for every logistic model of a binary
    fit; for more than two classes, ``nomogram_logistic_<class>.png`` for each one-vs-rest logistic
    regression of the ``logistic`` classifier family (its probability of that class against the
    rest, before the classes' probabilities are scaled to sum to 1)."""
    train_ids = fit.predictions.loc[fit.predictions.partition == "train", "id"].drop_duplicates()
    table = fit.table.drop(columns=[fit.recipe.data.outcome]).loc[train_ids]
    if not fit.binary:
        return _class_nomograms(fit, table, out_dir)
    if not fit.models.radscores:
        return []
    inputs = logistic_inputs(table, fit.models.radscores)
    return [plot_nomogram(nomogram_of(fit.models.logistic[spec.name], inputs.loc[:, list(spec.inputs)]),
                          spec.name, out_dir / f"nomogram_{spec.name}.png") for spec in fit.recipe.models]


def _class_nomograms(fit: CohortFit, table: pd.DataFrame, out_dir: Path) -> list[Path]:
    pipeline = fit.models.classifiers.get("logistic")
    if pipeline is None:
        return []
    inputs = pd.DataFrame(features_into_model(pipeline).transform(table))
    return [plot_nomogram(nomogram_of(estimator, inputs), f"logistic, {cls} vs rest",
                          out_dir / f"nomogram_logistic_{file_part(cls)}.png")
            for cls, estimator in zip(fit.models.classes, pipeline[-1].estimators_, strict=True)]
