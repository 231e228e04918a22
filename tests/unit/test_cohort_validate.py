"""External validation (``cohort validate``): the fitted pipeline scores a second cohort as it is."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from inference.cohort import stats
from inference.cohort.fit import fit_cohort
from inference.cohort.recipe import recipe_from_dict
from inference.cohort.evaluate import ReferenceStandard, evaluate_fit
from inference.cohort.validate import ValidationError, validate_fit
from scpnode.cli import main
from tests.unit.test_cohort_cli import RECIPE_TOML
from tests.unit.test_cohort_fit import RECIPE, synthetic_table


@pytest.fixture(scope="module")
def fitted():
    return fit_cohort(synthetic_table(), recipe_from_dict(RECIPE))


def test_the_frozen_pipeline_scores_the_external_cohort_at_the_training_cut_off(fitted):
    external = synthetic_table(n=150, seed=11)
    predictions, document = validate_fit(fitted, external, ReferenceStandard("vbmd", "lower"), bootstrap=200)
    rows = predictions[predictions.partition == "external"]
    assert len(rows) == 150 and list(rows.id) == list(external.index)
    assert (predictions.partition == "train").sum() == (fitted.predictions.partition == "train").sum()

    # nothing refitted: the external probabilities are the training estimators' own
    inputs = external.drop(columns=["fracture"])
    radscores = {voi: pipe.decision_function(inputs) for voi, pipe in fitted.models.radscores.items()}
    combined = fitted.models.logistic["combined"].predict_proba(
        np.column_stack([radscores["cortical"], radscores["cancellous"], inputs.vbmd]))[:, 1]
    np.testing.assert_allclose(rows["model:combined"], combined, rtol=0, atol=1e-12)

    entry = document["scores"]["model:combined"]
    train = fitted.predictions[fitted.predictions.partition == "train"]
    assert entry["youden_threshold_train"] == stats.youden_threshold(train.y, train["model:combined"])
    y, s = rows.y.to_numpy(), rows["model:combined"].to_numpy()
    at = entry["external"]["at_threshold"]
    predicted = s >= entry["youden_threshold_train"]
    assert at["f1"] == pytest.approx(f1_score(y, predicted), abs=1e-12)
    assert at["sensitivity"] == pytest.approx(recall_score(y, predicted), abs=1e-12)
    assert at["ppv"] == pytest.approx(precision_score(y, predicted), abs=1e-12)
    assert entry["external"]["auc"]["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert entry["external"]["auc"]["auc"] > 0.7
    assert "calibration" in entry["external"] and "decision_curve" in entry["external"]

    reference = document["reference"]
    assert reference["auc"]["external"]["auc"] == pytest.approx(roc_auc_score(y, -external.vbmd), abs=1e-12)
    versus = next(c for c in document["comparisons"] if c["a"] == "model:combined" and c["b"] == "reference:vbmd")
    expected = stats.delong_test(y, s, -external.vbmd.to_numpy())
    assert versus["partition"] == "external" and versus["p_value"] == pytest.approx(expected.p_value, abs=1e-12)
    assert any(c["a"] == "model:vertebral" and c["b"] == "model:combined" for c in document["comparisons"])


def test_an_external_table_the_fit_cannot_score_is_refused_by_name(fitted):
    external = synthetic_table(n=60, seed=12)
    with pytest.raises(ValidationError, match="lacks 1 column.*cortical:f07"):
        validate_fit(fitted, external.drop(columns=["cortical:f07"]))
    with pytest.raises(ValidationError, match="values the fit did not see: 2"):
        validate_fit(fitted, external.assign(fracture=external.fracture * 2))
    with pytest.raises(ValidationError, match="no reference column 'tscore'"):
        validate_fit(fitted, external, ReferenceStandard("tscore"))
    with pytest.raises(ValidationError, match="only one outcome class"):
        validate_fit(fitted, external.assign(fracture=1))
    holes = external.copy()
    holes.loc[holes.index[0], "age"] = np.nan
    with pytest.raises(ValidationError, match="missing values in column.*age"):
        validate_fit(fitted, holes)


def test_validate_and_the_lasso_figures_on_the_command_line(tmp_path, capsys):
    synthetic_table(seed=2).to_csv(tmp_path / "features.csv")
    synthetic_table(n=120, seed=21).to_csv(tmp_path / "external.csv")
    (tmp_path / "recipe.toml").write_text(RECIPE_TOML)
    assert main(["cohort", "fit", str(tmp_path / "features.csv"), str(tmp_path / "recipe.toml"),
                 "--out", str(tmp_path / "fit")]) == 0
    assert main(["cohort", "evaluate", str(tmp_path / "fit"), "--bootstrap", "50"]) == 0
    assert (tmp_path / "fit" / "lasso_path_cortical.png").is_file()
    assert "LASSO: coefficient path" in (tmp_path / "fit" / "report.html").read_text()
    capsys.readouterr()
    assert main(["cohort", "validate", str(tmp_path / "fit"), str(tmp_path / "external.csv"), "--reference",
                 "vbmd", "--bootstrap", "50", "--out", str(tmp_path / "val")]) == 0
    printed = capsys.readouterr().out
    assert "external AUC" in printed and "reference vbmd (lower = event)" in printed
    document = json.loads((tmp_path / "val" / "validation.json").read_text())  # strict JSON: no NaN
    assert document["external"]["n"] == 120
    assert "External partition" in (tmp_path / "val" / "report.html").read_text()
    assert main(["cohort", "validate", str(tmp_path / "fit"), str(tmp_path / "features.csv"), "--reference",
                 "bmd", "--out", str(tmp_path / "x")]) == 2
    assert "no reference column 'bmd'" in capsys.readouterr().err


def test_evaluate_compares_every_score_with_the_reference_on_both_partitions(fitted):
    document = evaluate_fit(fitted, bootstrap=50, reference=ReferenceStandard("vbmd"))
    for partition in ("train", "test"):
        part = fitted.predictions[fitted.predictions.partition == partition]
        oriented = -fitted.table.loc[part.id, "vbmd"].to_numpy()
        assert document["reference"]["auc"][partition]["auc"] == pytest.approx(roc_auc_score(part.y, oriented))
        versus = next(c for c in document["comparisons"]
                      if c["a"] == "radscore:cortical" and c["b"] == "reference:vbmd" and c["partition"] == partition)
        assert versus["p_value"] == pytest.approx(
            stats.delong_test(part.y, part["radscore:cortical"], oriented).p_value, abs=1e-12)
    assert {c["partition"] for c in document["comparisons"] if c["b"] == "model:combined"} == {"train", "test"}
    with pytest.raises(ValueError, match="no reference column 'tscore'"):
        evaluate_fit(fitted, bootstrap=50, reference=ReferenceStandard("tscore"))


def _three_classes(table):
    cut = np.quantile(table["cortical:f00"], [1 / 3, 2 / 3])
    names = np.array(["wedge", "biconcave", "crush"])
    return table.assign(fracture=names[np.digitize(table["cortical:f00"], cut)])


def test_a_three_class_fit_is_validated_per_class_on_an_external_cohort():
    recipe = recipe_from_dict({**RECIPE, "selection": [], "models": [], "export": {},
                               "classifiers": [{"family": "logistic", "grid": {"C": [1.0]}}]})
    fit3 = fit_cohort(_three_classes(synthetic_table(n=150, p=5)), recipe)
    external = _three_classes(synthetic_table(n=120, p=5, seed=12))
    predictions, document = validate_fit(fit3, external, bootstrap=100)
    rows = predictions[predictions.partition == "external"]
    figures = document["scores"]["clf:logistic"]["external"]
    classes = fit3.models.classes
    proba = rows[[f"clf:logistic:{c}" for c in classes]].to_numpy()
    assert figures["macro"] == pytest.approx(roc_auc_score(rows.y, proba, multi_class="ovr", labels=classes),
                                             abs=1e-9)
    predicted = np.asarray(classes)[np.argmax(proba, axis=1)]
    for i, cls in enumerate(classes):
        per_class = figures["classes"][cls]
        assert per_class["auc"]["auc"] == pytest.approx(roc_auc_score(rows.y == cls, proba[:, i]), abs=1e-9)
        assert per_class["f1"]["estimate"] == pytest.approx(f1_score(rows.y == cls, predicted == cls), abs=1e-9)
    assert sum(document["external"]["per_class"].values()) == 120 and figures["macro"] > 0.7
    with pytest.raises(ValidationError, match="no subject of class"):
        validate_fit(fit3, external[external.fracture != "crush"])
    with pytest.raises(ValidationError, match="binary risk score"):
        validate_fit(fit3, external, ReferenceStandard("vbmd", "lower"))


def test_a_three_class_validation_on_the_command_line(tmp_path, capsys):
    _three_classes(synthetic_table(n=150, p=5)).to_csv(tmp_path / "features.csv")
    _three_classes(synthetic_table(n=90, p=5, seed=13)).to_csv(tmp_path / "external.csv")
    (tmp_path / "recipe.toml").write_text(
        '[data]\noutcome = "fracture"\n[split]\ntest_size = 0.3\n[radscore]\nvois = ["cortical"]\n'
        '[[classifiers]]\nfamily = "logistic"\ngrid = {C = [1.0]}\n')
    assert main(["cohort", "fit", str(tmp_path / "features.csv"), str(tmp_path / "recipe.toml"),
                 "--out", str(tmp_path / "fit")]) == 0
    capsys.readouterr()
    assert main(["cohort", "validate", str(tmp_path / "fit"), str(tmp_path / "external.csv"), "--bootstrap", "50",
                 "--out", str(tmp_path / "val")]) == 0
    assert "clf:logistic: external macro AUC" in capsys.readouterr().out
    document = json.loads((tmp_path / "val" / "validation.json").read_text())
    assert set(document["external"]["per_class"]) == {"wedge", "biconcave", "crush"}
    assert "External validation" in (tmp_path / "val" / "report.html").read_text()
