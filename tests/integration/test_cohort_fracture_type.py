"""The CT fracture-type study on a three-class phantom cohort (inference.phantom.cohort with
``fracture_types``): the fractured L1 of each patient is a wedge, biconcave or crush fracture of
grade 1-3, drawn into the image. Extraction (radiomics of the body + ResNet50 deep features) ->
the shipped three-class recipe (deep PCA fused early, Spearman filter, multinomial LASSO, |r| >
0.5 filter, classifier families) -> evaluation whose per-class figures are scikit-learn's, SHAP
figures and per-class nomograms.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, recall_score, roc_auc_score
from sklearn.preprocessing import label_binarize

from inference.cohort.evaluate import evaluate_fit
from inference.cohort.explain import shap_figures
from inference.cohort.export import ExportError, export_model
from inference.cohort.extract import ExtractionPlan, extract_cohort, table_from_extraction
from inference.cohort.fit import fit_cohort
from inference.cohort.nomogram import nomogram_figures
from inference.cohort.recipe import load_recipe, shipped_recipes
from inference.cohort.table import read_cohort_table
from inference.models import load_model
from inference.phantom.cohort import generate_cohort
from tests.unit.test_deep_features import weights  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration

TYPES = ("wedge", "biconcave", "crush")
TYPES_SORTED = tuple(sorted(TYPES))
N = 45
SHAPE = (80, 80, 48)
FAMILIES = {"logistic": {"C": [1.0]}, "xgboost": {"max_depth": [2]}, "lightgbm": {"num_leaves": [7]}}
"""Three of the recipe's nine families, one grid point each, and a short LASSO path keep the test
short (the recipe's own settings took 7 minutes on 2 cores); the other families run the same code."""


@pytest.fixture(scope="module")
def fracture_type_fit(tmp_path_factory, weights):  # noqa: F811
    root = tmp_path_factory.mktemp("fracture_types")
    cohort = generate_cohort(N, root / "cohort", seed=5, shape=SHAPE, fracture_types=TYPES)
    labels = pd.read_csv(cohort.labels)
    pd.DataFrame({"study_id": labels.patient_id, "image": labels.image_path, "mask": labels.mask_path,
                  "vertebrae": labels.vertebrae_path, "label": labels.fracture_type}).to_csv(
        root / "cohort" / "cohort.csv", index=False)
    plan = ExtractionPlan(profile="yu2025", vois=("body",), levels=("L1",), deep="resnet50",
                          deep_weights=str(weights))
    result = extract_cohort(read_cohort_table(root / "cohort" / "cohort.csv"), root / "features", plan,
                            workers=2, progress=False)
    assert result.done == N and not result.failures
    recipe = load_recipe(shipped_recipes()["ct-fracture-type-three-class"])
    recipe = recipe.model_copy(update={
        "classifiers": tuple(c.model_copy(update={"grid": FAMILIES[c.family]})
                             for c in recipe.classifiers if c.family in FAMILIES),
        "selection": tuple(step.model_copy(update={"folds": 3, "n_lambdas": 10}) if step.method == "lasso" else step
                           for step in recipe.selection)})
    table, _ = table_from_extraction(root / "features")
    return root, fit_cohort(table, recipe), labels


def test_the_whole_recipe_runs_on_three_classes(fracture_type_fit):
    _, fit, labels = fracture_type_fit
    assert fit.models.classes == sorted(TYPES) and not fit.binary
    assert sorted(labels.fracture_type.value_counts().to_list()) == [15, 15, 15]
    pipeline = fit.models.classifiers["logistic"]
    steps = pipeline.named_steps
    assert "deep_pca" in steps and steps["deep_pca"].deep_columns_  # 2,048 deep columns went in ...
    inputs = list(steps["select1_correlation"].get_feature_names_out())
    assert not any(":deep_0" in name for name in inputs)  # ... and only their components can come out
    assert steps["select0_lasso"].coef_.shape[0] == 3  # multinomial LASSO


def test_per_class_metrics_are_scikit_learns(fracture_type_fit, bench_report):
    _, fit, _ = fracture_type_fit
    evaluation = evaluate_fit(fit, bootstrap=100)
    bench_report("fracture-type phantom cohort, test macro AUC",
                 **{family: round(evaluation["scores"][f"clf:{family}"]["test"]["macro"], 3) for family in FAMILIES})
    classes = fit.models.classes
    for family in FAMILIES:
        figures = evaluation["scores"][f"clf:{family}"]["test"]
        test = fit.predictions[fit.predictions.partition == "test"]
        proba = test[[f"clf:{family}:{c}" for c in classes]].to_numpy()
        predicted = np.asarray(classes)[np.argmax(proba, axis=1)]
        y = test.y.to_numpy()
        assert figures["macro"] == pytest.approx(roc_auc_score(y, proba, multi_class="ovr", labels=classes), abs=1e-9)
        assert figures["micro"] == pytest.approx(
            roc_auc_score(label_binarize(y, classes=classes), proba, average="micro"), abs=1e-9)
        assert figures["f1_macro"] == pytest.approx(f1_score(y, predicted, average="macro"), abs=1e-9)
        for i, cls in enumerate(classes):
            per_class = figures["classes"][cls]
            assert per_class["auc"]["auc"] == pytest.approx(roc_auc_score(y == cls, proba[:, i]), abs=1e-9)
            assert per_class["sensitivity"]["estimate"] == pytest.approx(
                recall_score(y == cls, predicted == cls), abs=1e-9)
            assert per_class["specificity"]["estimate"] == pytest.approx(
                recall_score(y != cls, predicted != cls), abs=1e-9)
            assert per_class["f1"]["estimate"] == pytest.approx(f1_score(y == cls, predicted == cls), abs=1e-9)
    # the fracture type is drawn into the image: the shape of the body tells it
    assert max(evaluation["scores"][f"clf:{family}"]["test"]["macro"] for family in FAMILIES) > 0.7


def test_shap_figures_and_per_class_nomograms(fracture_type_fit):
    root, fit, _ = fracture_type_fit
    out = root / "report"
    out.mkdir()
    explained, _ = shap_figures(fit, out)
    assert {f"shap_{kind}_clf_{family}_{t}.png" for kind in ("bar", "beeswarm", "decision")
            for family in ("logistic", "xgboost") for t in TYPES} <= {p.name for p in explained}
    nomograms = nomogram_figures(fit, out)
    assert sorted(p.name for p in nomograms) == [f"nomogram_logistic_{t}.png" for t in sorted(TYPES)]
    assert all(p.stat().st_size > 10_000 for p in [*explained, *nomograms])
    with pytest.raises(ExportError, match="deep features"):
        export_model(fit, "fracture-type")


def test_the_logistic_classifier_exports_as_a_multiclass_model_the_node_scores_as_sklearn(
        fracture_type_fit, tmp_path):
    """Without deep features the three-class logistic classifier exports; the node's scoring of the
    file gives scikit-learn's probabilities for every subject, and the file says research use."""
    _, fit, _ = fracture_type_fit
    radiomics = fit.table[[c for c in fit.table.columns if ":deep_" not in c]]
    recipe = fit.recipe.model_copy(update={
        "preprocess": fit.recipe.preprocess.model_copy(update={"deep_pca": None}),
        "classifiers": tuple(c for c in fit.recipe.classifiers if c.family == "logistic")})
    site_fit = fit_cohort(radiomics, recipe)
    model = export_model(site_fit, "fracture-type-site", levels=("L1",), profile="yu2025")
    loaded = load_model(str(model.save(tmp_path / "fracture-type-site.json")))
    assert loaded.format_version == 2 and loaded.classifier.classes == tuple(sorted(TYPES))
    assert loaded.primary_output is None and loaded.categories == () and loaded.cohort["classes"] == {
        t: 15 for t in TYPES}
    pipeline = site_fit.models.classifiers["logistic"]
    expected = pipeline.predict_proba(radiomics)
    for row, probabilities in zip(radiomics.itertuples(index=False), expected, strict=True):
        features = {"body": {name.split(":", 1)[1]: value for name, value in zip(radiomics.columns, row)
                             if name.startswith("body:")}}
        score = loaded.score({"L1": features})
        assert score.class_probabilities == pytest.approx(dict(zip(TYPES_SORTED, probabilities)), abs=1e-9)
        assert score.predicted_class == TYPES_SORTED[int(np.argmax(probabilities))]
        assert score.probability is None and score.category is None and score.research_use
    with pytest.raises(ExportError, match="'logistic' classifier"):
        export_model(fit_cohort(radiomics, recipe.model_copy(update={"classifiers": tuple(
            c for c in fit.recipe.classifiers if c.family == "xgboost")})), "no-logistic")
