"""Export to the node's model file and calibration of the published model: the node
(inference.models.load_model + RadscoreModel.score) gives the research side's probability."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from inference.cohort.calibrate import CalibrationError, calibrate_model
from inference.cohort.evaluate import evaluate_fit, performance_summary
from inference.cohort.export import ExportError, export_model
from inference.cohort.fit import fit_cohort
from inference.cohort.recipe import recipe_from_dict
from inference.models import load_model
from tests.unit.test_cohort_fit import RECIPE, synthetic_table

LEVELS = ("T11", "T12", "L1", "L2")


def per_level(row: pd.Series, offsets: np.ndarray) -> dict[str, dict[str, dict[str, float]]]:
    """Per-level features whose level mean is the study-level value (offsets sum to zero)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for li, level in enumerate(LEVELS):
        out[level] = {}
        for column, value in row.items():
            if ":" in str(column):
                voi, feature = str(column).split(":", 1)
                out[level].setdefault(voi, {})[feature] = float(value) + offsets[li] * (1 + abs(float(value)) * 0.01)
    return out


def test_exported_model_scores_like_the_research_side(tmp_path):
    table = synthetic_table()
    fit = fit_cohort(table, recipe_from_dict(RECIPE))
    evaluation = evaluate_fit(fit, bootstrap=50)
    model = export_model(fit, "site-test", "2.0.0", performance=performance_summary(evaluation, "combined"))
    path = model.save(tmp_path / "site-test.json")
    loaded = load_model(str(path))
    assert loaded.calibrated and loaded.primary_output == "combined"
    assert loaded.performance["auc_test"]["model:combined"]["auc"] > 0.7
    assert loaded.cohort["subjects"] == 240 and "vbmd" in loaded.cohort["covariates"]
    test = fit.predictions[fit.predictions.partition == "test"].set_index("id")
    offsets = np.array([-1.5, 0.5, 2.0, -1.0])
    for sid in test.index[:10]:
        row = table.loc[sid].drop(["fracture", "vbmd", "age", "sex", "centre"])
        score = loaded.score(per_level(row, offsets), vbmd_mg_cm3=float(table.loc[sid, "vbmd"]))
        assert score.probability == pytest.approx(test.loc[sid, "model:combined"], abs=1e-9)
        assert score.probabilities["vertebral"] == pytest.approx(test.loc[sid, "model:vertebral"], abs=1e-9)
        assert score.radscores["cortical"] == pytest.approx(test.loc[sid, "radscore:cortical"], abs=1e-9)
        assert score.category in {"low", "intermediate", "high"}


def test_export_refuses_what_the_node_cannot_apply():
    table = synthetic_table(n=160, p=6)
    for preprocess, message in (({"normalisation": "percentile"}, "percentile"),
                                ({"harmonise_by": "centre"}, "ComBat")):
        fit = fit_cohort(table, recipe_from_dict({**RECIPE, "preprocess": preprocess}))
        with pytest.raises(ExportError, match=message):
            export_model(fit, "x")
    fit = fit_cohort(table, recipe_from_dict({**RECIPE, "models": [{"name": "aged", "inputs": ["cortical", "age"]}],
                                              "export": {"primary": "aged"}}))
    with pytest.raises(ExportError, match="inputs not on the node"):
        export_model(fit, "x")


def published_cohort(n: int, seed: int) -> tuple[pd.DataFrame, dict[str, float]]:
    """A study-level table with the published model's features; the outcome follows the
    published radscores under the max-abs scaling the paper states (hidden constants: each
    feature's largest absolute value in the cohort), plus vBMD."""
    published = load_model("che2025-published")
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}
    truth: dict[str, float] = {}
    radscore = {voi: np.zeros(n) for voi in published.radscores}
    for voi, formula in published.radscores.items():
        for term in formula.terms:
            values = rng.normal(rng.uniform(-50, 50), rng.uniform(0.5, 20), n)
            cols[f"{voi}:{term.feature}"] = values
            truth[f"{voi}:{term.feature}"] = float(np.abs(values).max())
            radscore[voi] += 20 * term.coefficient * values / truth[f"{voi}:{term.feature}"]
    frame = pd.DataFrame(cols, index=[f"P{i:04d}" for i in range(n)])
    frame["vbmd"] = rng.normal(120, 30, n)
    logit = -1.0 + 1.5 * radscore["cortical"] + 1.5 * radscore["cancellous"] - 0.03 * (frame["vbmd"] - 120)
    frame["fracture"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame, truth


def test_calibrating_the_published_model_keeps_its_coefficients_and_the_node_agrees(tmp_path):
    published = load_model("che2025-published")
    assert not published.calibrated
    table, truth = published_cohort(400, seed=5)
    model, predictions = calibrate_model(published, table, "fracture", model_id="che2025-site", categories=(0.2, 0.5))
    assert model.calibrated and model.id == "che2025-site"
    train_ids = predictions.loc[predictions.partition == "train", "id"]
    for voi, formula in model.radscores.items():
        assert [t.coefficient for t in formula.terms] == [t.coefficient for t in published.radscores[voi].terms]
        for term in formula.terms:  # max-abs, as the paper states: the largest |value| of the calibration rows
            column = table.loc[train_ids, f"{voi}:{term.feature}"]
            assert term.normalisation.method == "max-abs" and term.normalisation.center is None
            assert term.normalisation.scale == pytest.approx(column.abs().max(), rel=1e-12)
            assert term.normalisation.scale <= truth[f"{voi}:{term.feature}"]
    loaded = load_model(str(model.save(tmp_path / "che2025-site.json")))
    test = predictions[predictions.partition == "test"].set_index("id")
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(test["y"], test["model:combined"]) > 0.75
    for sid in test.index[:5]:
        row = table.loc[sid].drop(["fracture", "vbmd"])
        score = loaded.score(per_level(row, np.array([1.0, -1.0, 0.5, -0.5])), vbmd_mg_cm3=float(table.loc[sid, "vbmd"]))
        assert score.probability == pytest.approx(test.loc[sid, "model:combined"], abs=1e-9)


def test_calibration_needs_the_published_features():
    table, _ = published_cohort(60, seed=1)
    with pytest.raises(CalibrationError, match="lacks"):
        calibrate_model(load_model("che2025-published"), table.drop(columns=table.columns[0]), "fracture",
                        model_id="x")
