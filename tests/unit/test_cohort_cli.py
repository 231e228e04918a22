"""``scpnode cohort fit | evaluate | export | calibrate`` on files, as a site would run them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inference.models import load_model
from scpnode.cli import main
from tests.unit.test_cohort_export import published_cohort
from tests.unit.test_cohort_fit import synthetic_table

RECIPE_TOML = """
[data]
outcome = "fracture"
covariates = ["vbmd", "age", "sex", "centre"]

[split]
method = "holdout"
test_size = 0.3
seed = 4

[preprocess]
normalisation = "z-score"
[preprocess.correlation]
method = "spearman"
threshold = 0.9

[[selection]]
method = "mrmr"
k = 8
[[selection]]
method = "lasso"
rule = "1se"
folds = 5
n_lambdas = 15

[[models]]
name = "density"
inputs = ["vbmd"]
[[models]]
name = "vertebral"
inputs = ["cortical", "cancellous"]
[[models]]
name = "combined"
inputs = ["cortical", "cancellous", "vbmd"]

[export]
primary = "combined"
categories = [0.2, 0.5]
"""


def test_fit_evaluate_export_chain(tmp_path, capsys):
    features = tmp_path / "features.csv"
    synthetic_table(n=200, p=10).to_csv(features)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE_TOML)
    fit_dir = tmp_path / "fit"
    assert main(["cohort", "fit", str(features), str(recipe), "--out", str(fit_dir)]) == 0
    assert main(["cohort", "evaluate", str(fit_dir), "--bootstrap", "100"]) == 0
    out = capsys.readouterr().out
    assert "model:combined: test AUC" in out
    for name in ("report.html", "evaluation.json", "roc_test.png", "calibration_test.png", "dca_test.png",
                 "roc_train.png"):
        assert (fit_dir / name).stat().st_size > 1000, name
    evaluation = json.loads((fit_dir / "evaluation.json").read_text())
    assert {c["a"] for c in evaluation["comparisons"]} >= {"model:density"}
    assert evaluation["scores"]["model:combined"]["test"]["auc_bootstrap"]["n_resamples"] == 100
    model_file = tmp_path / "site-a.json"
    assert main(["cohort", "export", str(fit_dir), "--model-id", "site-a", "--version", "1.2.0",
                 "--out", str(model_file)]) == 0
    model = load_model(str(model_file))
    assert model.version == "1.2.0" and model.calibrated
    assert set(model.performance["auc_test"]) >= {"model:combined", "model:density"}


def test_bad_recipe_and_missing_fit_are_one_line_errors(tmp_path, capsys):
    features = tmp_path / "features.csv"
    synthetic_table(n=40, p=5).to_csv(features)
    recipe = tmp_path / "bad.toml"
    recipe.write_text('[split]\nmethod = "bootstrap"\n')
    assert main(["cohort", "fit", str(features), str(recipe), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("scpnode cohort:") and "split.method" in err and "\n" not in err
    assert main(["cohort", "export", str(tmp_path), "--model-id", "x", "--out", str(tmp_path / "m.json")]) == 2
    assert "run 'cohort fit' first" in capsys.readouterr().err


def test_calibrate_then_evaluate(tmp_path):
    table, _ = published_cohort(200, seed=9)
    features = tmp_path / "features.csv"
    table.to_csv(features, index_label="study_id")
    out = tmp_path / "cal"
    assert main(["cohort", "calibrate", str(features), "--model-id", "che2025-site", "--outcome", "fracture",
                 "--out", str(out)]) == 0
    model = load_model(str(out / "che2025-site.json"))
    assert model.calibrated and 0 < model.operating_threshold < 1
    assert main(["cohort", "evaluate", str(out), "--bootstrap", "50"]) == 0
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert np.isfinite(evaluation["scores"]["model:combined"]["test"]["auc"]["auc"])


def test_extract_refuses_a_bad_cohort_table(tmp_path, capsys):
    cohort = tmp_path / "cohort.csv"
    cohort.write_text("study_id,image,label\nA,missing.nii.gz,1\nA,missing.nii.gz,\n")
    assert main(["cohort", "extract", str(cohort), "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert "image 'missing.nii.gz' not found" in err and "duplicate study_id 'A'" in err


@pytest.mark.parametrize("step", ["fit", "evaluate", "export", "extract", "calibrate"])
def test_every_step_has_help(step, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["cohort", step, "--help"])
    assert exc.value.code == 0 and "usage: scpnode cohort" in capsys.readouterr().out


THREE_CLASS_TOML = """
[data]
outcome = "type"

[split]
method = "holdout"
test_size = 0.3
seed = 4

[preprocess]
normalisation = "z-score"

[[selection]]
method = "lasso"
rule = "min"
folds = 3
n_lambdas = 10

[radscore]
vois = ["cortical", "cancellous"]

[[classifiers]]
family = "logistic"
grid = {C = [1.0]}
"""


def test_a_three_class_fit_exports_a_research_model_on_the_levels_extracted(tmp_path, capsys):
    table = synthetic_table(n=150, p=4, seed=3).drop(columns=["fracture", "vbmd", "age", "sex", "centre"])
    table["type"] = np.select([table["cortical:f00"] < 9, table["cancellous:f01"] > 21], ["wedge", "crush"],
                              "biconcave")
    features = tmp_path / "features.csv"
    table.to_csv(features)
    (tmp_path / "features.provenance.json").write_text(json.dumps({"profile": "yu2025", "levels": ["L1"]}))
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(THREE_CLASS_TOML)
    fit_dir = tmp_path / "fit"
    assert main(["cohort", "fit", str(features), str(recipe), "--out", str(fit_dir)]) == 0
    assert main(["cohort", "evaluate", str(fit_dir), "--bootstrap", "50"]) == 0
    model_file = tmp_path / "types.json"
    assert main(["cohort", "export", str(fit_dir), "--model-id", "types", "--out", str(model_file)]) == 0
    assert "classes biconcave, crush, wedge on L1; research use only" in capsys.readouterr().out
    model = load_model(str(model_file))
    assert model.levels == ("L1",) and model.profile == "yu2025" and model.classifier is not None
    assert model.combination.min_levels == 1 and model.provenance["intended_use"] == "research"
    assert set(model.performance["classes_test"]) == {"biconcave", "crush", "wedge"}
    assert 0.5 < model.performance["macro_auc_test"] <= 1.0
