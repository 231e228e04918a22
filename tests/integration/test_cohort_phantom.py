"""The research chain on a phantom cohort with a known risk model (inference.phantom.cohort):
extract (the node's measurement and radiomics on the phantom labels) -> fit -> evaluate ->
export -> the node loads the model and scores a new phantom with the research side's probability.

The cohort's outcome depends on vBMD and trabecular heterogeneity (plus age and sex), so a
vertebral model (cortical + cancellous radscores) must beat a density-only model on the test
split, and its AUC interval must cover the AUC of the true risk on the same subjects.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from inference.cohort.evaluate import evaluate_fit
from inference.cohort.export import export_model
from inference.cohort.extract import (
    ExtractionPlan, extract_cohort, extract_study, segmentation_from_labels, table_from_extraction,
)
from inference.cohort.fit import fit_cohort, score_rows
from inference.cohort.recipe import load_recipe, recipe_from_dict
from inference.cohort.report import write_report
from inference.cohort.stats import delong_auc
from inference.cohort.table import read_cohort_table, read_feature_table, study_level
from inference.measure import measure_study
from inference.models import load_model
from inference.phantom.cohort import generate_cohort
from inference.volume import load_volume

pytestmark = pytest.mark.integration

SHAPE = (96, 96, 56)  # CI-sized phantoms; the benchmark uses the default matrix
N = 150
FEATURES = ("original_firstorder_Mean", "original_firstorder_StandardDeviation", "original_firstorder_Entropy",
            "original_glcm_Contrast", "original_glcm_Correlation", "original_glszm_ZoneEntropy")
RECIPE = {
    "data": {"outcome": "label", "covariates": ["vbmd", "age", "sex"]},
    "split": {"method": "holdout", "test_size": 0.4, "seed": 11},
    "preprocess": {"normalisation": "z-score"},
    "selection": [{"method": "lasso", "rule": "min", "folds": 5, "n_lambdas": 20}],
    "models": [{"name": "density", "inputs": ["vbmd"]},
               {"name": "vertebral", "inputs": ["cortical", "cancellous"]},
               {"name": "combined", "inputs": ["cortical", "cancellous", "vbmd"]}],
    "export": {"primary": "vertebral", "categories": [0.2, 0.5]},
}


def cohort_csv(labels_csv, out):
    labels = pd.read_csv(labels_csv)
    table = pd.DataFrame({"study_id": labels.patient_id, "image": labels.image_path, "mask": labels.mask_path,
                          "vertebrae": labels.vertebrae_path, "label": labels.outcome, "age": labels.age,
                          "sex": labels.sex})
    table.to_csv(out, index=False)
    return out


@pytest.fixture(scope="module")
def phantom_fit(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom_cohort")
    cohort = generate_cohort(N, root / "cohort", seed=21, shape=SHAPE)
    rows = read_cohort_table(cohort_csv(cohort.labels, root / "cohort" / "cohort.csv"))
    plan = ExtractionPlan(profile="che2025", features=FEATURES, vois=("cortical", "cancellous"))
    result = extract_cohort(rows, root / "features", plan, workers=2, progress=False)
    assert result.done == N and not result.failures
    table = read_feature_table(result.study_table)
    fit = fit_cohort(table, recipe_from_dict(RECIPE))
    truth = pd.read_csv(cohort.labels).set_index("patient_id")["risk"]
    return root, fit, truth, plan


def test_extraction_is_resumable_and_records_provenance(phantom_fit):
    root, _, _, plan = phantom_fit
    rows = read_cohort_table(root / "cohort" / "cohort.csv")
    again = extract_cohort(rows, root / "features", plan, workers=1, progress=False)
    assert again.done == N and len(again.skipped) == N  # nothing recomputed
    provenance = json.loads(again.provenance.read_text())
    assert provenance["plan"]["features"] == list(FEATURES) and provenance["software"]["pyradiomics"] != "unknown"
    long = pd.read_csv(again.long_table)
    assert set(long.level) <= {"T11", "T12", "L1", "L2"} and set(long.voi) == {"cortical", "cancellous"}


def test_vertebral_model_beats_density_and_covers_the_truth(phantom_fit, output_dir, bench_report):
    _, fit, truth, _ = phantom_fit
    evaluation = evaluate_fit(fit, bootstrap=200)
    test = fit.predictions[fit.predictions.partition == "test"]
    vertebral = evaluation["scores"]["model:vertebral"]["test"]["auc"]
    density = evaluation["scores"]["model:density"]["test"]["auc"]
    truth_auc = delong_auc(test["y"], truth.loc[test["id"]].to_numpy()).auc
    bench_report("cohort phantom (test split)", n_test=len(test), vertebral_auc=round(vertebral["auc"], 3),
                 density_auc=round(density["auc"], 3), truth_auc=round(truth_auc, 3))
    assert vertebral["auc"] > density["auc"]
    assert vertebral["ci_low"] <= truth_auc <= vertebral["ci_high"]
    report = write_report(fit.predictions, evaluation, output_dir, title="Phantom cohort")
    assert report.is_file() and (output_dir / "roc_test.png").is_file()


def test_node_scores_a_new_phantom_like_the_research_side(phantom_fit, tmp_path):
    _, fit, _, plan = phantom_fit
    model = export_model(fit, "phantom-site", "1.0.0", profile="che2025")
    loaded = load_model(str(model.save(tmp_path / "phantom-site.json")))
    new = generate_cohort(1, tmp_path / "new", seed=99, shape=SHAPE)
    row = read_cohort_table(cohort_csv(new.labels, tmp_path / "new" / "cohort.csv"))[0]
    # research side: the cohort extraction and the fitted pipelines
    document = extract_study(row, plan)
    per_level = pd.DataFrame([{"study_id": row.study_id, "level": lv, "voi": voi, **values}
                              for lv, entry in document["levels"].items() for voi, values in entry["features"].items()])
    study = study_level(per_level).assign(vbmd=document["vbmd_mg_cm3"], age=row.covariates["age"],
                                           sex=row.covariates["sex"])
    research = score_rows(fit.models, study, fit.recipe).iloc[0]
    # node side: load the CT and labels, measure and score with the exported model
    image = load_volume(row.image)
    labels = segmentation_from_labels(sitk.ReadImage(str(row.vertebrae)), sitk.ReadImage(str(row.mask)))
    node = measure_study(image, labels, loaded)
    assert node.score is not None and node.score.probability is not None
    assert node.score.probability == pytest.approx(research["model:vertebral"], abs=1e-9)
    assert node.score.probabilities["combined"] == pytest.approx(research["model:combined"], abs=1e-9)
    assert np.isfinite(node.score.radscores["cancellous"])


@pytest.mark.parametrize("name", ["thoracolumbar-che2025", "lumbar-osteoporosis-1197", "postmenopausal-ovcf-per-vertebra"])
def test_the_shipped_reproduction_recipes_run_end_to_end(phantom_fit, tmp_path, name):
    """Each study's recipe, on the phantom cohort's own extraction. The phantoms reach L3, so the
    lumbar recipes run on L1-L3 here (a real cohort extracts L1-L4 as the recipes say)."""
    root, _, truth, _ = phantom_fit
    recipe = load_recipe(name)
    if recipe.data.level_combination == "mean":
        folder = root / "features"
    else:
        folder = root / "lumbar"
        if not (folder / "levels.csv").is_file():
            rows = read_cohort_table(root / "cohort" / "cohort.csv")
            plan = ExtractionPlan(profile="yu2025", features=FEATURES, vois=("body",), levels=("L1", "L2", "L3"))
            assert extract_cohort(rows, folder, plan, workers=2, progress=False).done == N
        recipe = recipe.model_copy(update={"data": recipe.data.model_copy(update={"levels": ("L1", "L2", "L3")})})
    table, notes = table_from_extraction(folder, recipe.data.level_combination, levels=recipe.data.levels,
                                         exclude_fractured=recipe.data.exclude_fractured)
    recipe = recipe.model_copy(update={"selection": tuple(s.model_copy(update={"folds": 5}) if s.method == "lasso"
                                                          else s for s in recipe.selection)})
    fit = fit_cohort(table, recipe)
    evaluation = evaluate_fit(fit, bootstrap=100)
    test = fit.predictions[fit.predictions.partition == "test"]
    first = recipe.models[0].name
    assert evaluation["scores"][f"model:{first}"]["test"]["auc"]["auc"] > 0.6
    if recipe.data.level_combination == "per-vertebra":
        patients = table["patient_id"]
        train = fit.predictions[fit.predictions.partition == "train"]
        assert set(patients[test.id]).isdisjoint(set(patients[train.id]))
        assert set(table.level) == {"L1", "L2", "L3"} and (table.genant_grade.fillna(0) < 1).all()
    if recipe.data.level_combination == "concatenate":
        assert sum(c.startswith("body:") for c in table.columns) == 3 * len(FEATURES)
