"""inference.cohort: selection, preprocessing, splitting and the fit pipeline (no leakage)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import f1_score, recall_score, roc_auc_score
from sklearn.preprocessing import StandardScaler

from inference.cohort import preprocess, select, split
from inference.cohort.evaluate import evaluate_fit
from inference.cohort.fit import fit_cohort
from inference.cohort.recipe import RecipeError, recipe_from_dict
from inference.cohort.report import write_report


def synthetic_table(n: int = 240, p: int = 25, seed: int = 0, signal: float = 1.2) -> pd.DataFrame:
    """A study-level table: cortical/cancellous features, vBMD, age, sex, centre; the
    outcome depends on two cortical features, one cancellous feature and vBMD."""
    rng = np.random.default_rng(seed)
    cols = {}
    for voi in ("cortical", "cancellous"):
        for j in range(p):
            cols[f"{voi}:f{j:02d}"] = rng.normal(10 * (j + 1), j + 1, n)
    frame = pd.DataFrame(cols, index=[f"S{i:04d}" for i in range(n)])
    frame["vbmd"] = rng.normal(120, 30, n)
    frame["age"] = rng.normal(68, 8, n).round()
    frame["sex"] = rng.choice(["F", "M"], n)
    frame["centre"] = rng.choice(["A", "B"], n)
    z = lambda c: (frame[c] - frame[c].mean()) / frame[c].std()  # noqa: E731
    logit = -1.0 + signal * (z("cortical:f00") - z("cortical:f03") + z("cancellous:f01")) - 0.8 * z("vbmd")
    frame["fracture"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame.index.name = "study_id"
    return frame


RECIPE = {
    "data": {"outcome": "fracture", "covariates": ["vbmd", "age", "sex", "centre"]},
    "split": {"method": "holdout", "test_size": 0.3, "seed": 1},
    "preprocess": {"normalisation": "z-score", "correlation": {"method": "spearman", "threshold": 0.9}},
    "selection": [{"method": "mrmr", "k": 10}, {"method": "lasso", "rule": "1se", "folds": 5, "n_lambdas": 20}],
    "models": [{"name": "vertebral", "inputs": ["cortical", "cancellous"]},
               {"name": "combined", "inputs": ["cortical", "cancellous", "vbmd"]},
               {"name": "density", "inputs": ["vbmd"]}],
    "export": {"primary": "combined"},
}


def test_recipe_errors_name_the_key():
    with pytest.raises(RecipeError, match="models.x: unknown inputs"):
        recipe_from_dict({"models": [{"name": "x", "inputs": ["nope"]}]})
    with pytest.raises(RecipeError, match="selection.0"):
        recipe_from_dict({"selection": [{"method": "magic"}]})
    with pytest.raises(RecipeError, match="split.test_size"):
        recipe_from_dict({"split": {"test_size": 1.5}})


def test_holdout_fit_scores_train_and_test_and_learns_the_signal():
    table = synthetic_table()
    fit = fit_cohort(table, recipe_from_dict(RECIPE))
    pred = fit.predictions
    test = pred[pred.partition == "test"]
    assert len(test) == 72 and len(pred) == 240
    assert set(test.id).isdisjoint(set(pred[pred.partition == "train"].id))
    assert roc_auc_score(test.y, test["model:combined"]) > 0.75
    # the radscores (mRMR + LASSO 1-SE) keep informative features only
    for voi, informative in (("cortical", {"cortical:f00", "cortical:f03"}), ("cancellous", {"cancellous:f01"})):
        lasso = fit.models.radscores[voi].named_steps["radscore"]
        names = fit.models.radscores[voi][:-1].get_feature_names_out()
        kept = {n for n, c in zip(names, lasso.coef_[0], strict=True) if c != 0}
        assert kept and kept <= informative


def test_every_step_is_fitted_on_the_training_split_only():
    table = synthetic_table()
    fit = fit_cohort(table, recipe_from_dict(RECIPE))
    train_ids = fit.predictions.loc[fit.predictions.partition == "train", "id"]
    scaler = fit.models.radscores["cortical"].named_steps["scale"]
    expected = table.loc[train_ids, [c for c in table.columns if c.startswith("cortical:")]].mean()
    np.testing.assert_allclose(scaler.mean_, expected.to_numpy(), rtol=1e-12)
    assert not np.allclose(scaler.mean_, table[[c for c in table.columns if c.startswith("cortical:")]].mean())


def test_leakage_selection_inside_the_split_gives_chance_auc_on_noise():
    """Pure-noise features: the recipe's LASSO selection runs inside the training split and
    the test AUC stays near 0.5; choosing the features with the same LASSO on all rows first
    (the classic leak) and then fitting on the training split inflates the test AUC."""
    rng = np.random.default_rng(7)
    n, p = 120, 400
    table = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"cortical:n{j:03d}" for j in range(p)],
                         index=[f"S{i}" for i in range(n)])
    table["fracture"] = rng.permutation(np.repeat([0, 1], n // 2))
    lasso = {"method": "lasso", "rule": "min", "folds": 5, "n_lambdas": 15}
    ours_aucs, leaky_aucs = [], []
    for seed in range(2):
        common = {"data": {"outcome": "fracture"}, "split": {"test_size": 0.4, "seed": seed},
                  "radscore": {"vois": ["cortical"]}}
        fit = fit_cohort(table, recipe_from_dict({**common, "selection": [lasso]}))
        test = fit.predictions[fit.predictions.partition == "test"]
        ours_aucs.append(roc_auc_score(test.y, test["radscore:cortical"]))
        x = StandardScaler().set_output(transform="pandas").fit_transform(table.drop(columns="fracture"))
        chosen = select.LassoLogisticCV(rule="min", folds=5, n_lambdas=15).fit(x, table["fracture"])
        leaked = table[[*chosen.get_feature_names_out(), "fracture"]]
        leaky = fit_cohort(leaked, recipe_from_dict(common))
        test = leaky.predictions[leaky.predictions.partition == "test"]
        leaky_aucs.append(roc_auc_score(test.y, test["radscore:cortical"]))
    assert abs(np.mean(ours_aucs) - 0.5) < 0.1
    assert np.mean(leaky_aucs) > 0.75 > np.mean(ours_aucs) + 0.15


def test_lasso_path_follows_glmnet_conventions():
    """glmnet: minimise -(1/n) loglik + lambda ||b||_1; scikit-learn C = 1/(n lambda).
    lambda_max = max|x'(y - ybar)|/n zeroes every coefficient; at any lambda the KKT
    conditions hold: |x_j'(y - p)|/n = lambda for non-zero b_j, <= lambda for zero b_j."""
    rng = np.random.default_rng(2)
    n = 150
    x = StandardScaler().fit_transform(rng.normal(size=(n, 12)))
    y = (x[:, 0] - x[:, 1] + rng.normal(size=n) > 0).astype(int)
    top = select.lambda_max(x, y)
    assert not select.lasso_logistic(top * 1.001, n).fit(x, y).coef_.any()
    assert select.lasso_logistic(top * 0.95, n).fit(x, y).coef_.any()
    lam = top * 0.2
    model = select.lasso_logistic(lam, n).fit(x, y)
    gradient = x.T @ (y - model.predict_proba(x)[:, 1]) / n
    nonzero = model.coef_[0] != 0
    np.testing.assert_allclose(np.abs(gradient[nonzero]), lam, rtol=1e-4)
    assert np.all(np.sign(gradient[nonzero]) == np.sign(model.coef_[0][nonzero]))
    assert np.all(np.abs(gradient[~nonzero]) <= lam * (1 + 1e-6))
    cv = select.LassoLogisticCV(rule="1se", folds=5, n_lambdas=20).fit(x, y)
    assert cv.lambda_1se_ >= cv.lambda_min_
    assert cv.support_[0] and cv.support_[1]


def test_icc_matches_shrout_fleiss_example():
    # Shrout & Fleiss (1979), Table 2: 6 targets x 4 judges; ICC(2,1) = .29, ICC(3,1) = .71
    ratings = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])
    assert preprocess.icc(ratings, "ICC(2,1)") == pytest.approx(0.29, abs=0.005)
    assert preprocess.icc(ratings, "ICC(3,1)") == pytest.approx(0.71, abs=0.005)


def test_reliability_filter_keeps_stable_features():
    rng = np.random.default_rng(0)
    base = pd.DataFrame({"stable": rng.normal(size=50), "noisy": rng.normal(size=50)})
    repeat = base + pd.DataFrame({"stable": rng.normal(0, 0.1, 50), "noisy": rng.normal(0, 3, 50)})
    kept = preprocess.reliable_features([base, repeat], threshold=0.75)
    assert list(kept) == ["stable"] and kept["stable"] > 0.9


def test_correlation_filter_drops_the_redundant_twin():
    rng = np.random.default_rng(0)
    a = rng.normal(size=100)
    x = pd.DataFrame({"a": a, "a_twin": a + rng.normal(0, 0.01, 100), "b": rng.normal(size=100)})
    y = (a > 0).astype(int)
    kept = preprocess.CorrelationFilter(0.9, "pearson").fit(x, y).get_feature_names_out()
    assert len(kept) == 2 and "b" in kept


def test_combat_removes_a_centre_shift_with_training_estimates():
    rng = np.random.default_rng(0)
    n = 200
    centre = np.repeat(["A", "B"], n // 2)
    x = pd.DataFrame(rng.normal(size=(n, 5)), columns=[f"f{i}" for i in range(5)])
    x.loc[centre == "B"] = x.loc[centre == "B"] * 2 + 5
    x["centre"] = centre
    train = np.r_[0:70, 100:170]
    harm = preprocess.ComBatHarmoniser("centre").fit(x.iloc[train])
    out = harm.transform(x)
    assert list(out.columns) == [f"f{i}" for i in range(5)]
    gap_before = abs(x.loc[centre == "B", "f0"].mean() - x.loc[centre == "A", "f0"].mean())
    gap_after = abs(out.loc[centre == "B", "f0"].mean() - out.loc[centre == "A", "f0"].mean())
    assert gap_before > 4 and gap_after < 0.5


def test_propensity_matching_balances_age():
    rng = np.random.default_rng(1)
    n = 400
    age = rng.normal(65, 10, n)
    case = (rng.random(n) < 1 / (1 + np.exp(-(age - 72) / 4))).astype(int)
    frame = pd.DataFrame({"age": age, "sex": rng.choice(["F", "M"], n)})
    keep = split.propensity_match(frame, case, ["age", "sex"], ratio=2, caliper=0.2)
    before = split.standardised_mean_difference(frame, case, "age")
    after = split.standardised_mean_difference(frame.iloc[keep], case[keep], "age")
    assert abs(after) < 0.25 < abs(before)
    assert case[keep].sum() * 2 >= (1 - case[keep]).sum() >= case[keep].sum()


def test_kfold_gives_out_of_fold_scores_for_every_subject():
    table = synthetic_table(n=150, p=8)
    recipe = recipe_from_dict({**RECIPE, "split": {"method": "kfold", "folds": 3, "seed": 0},
                               "selection": [{"method": "lasso", "rule": "min", "folds": 3, "n_lambdas": 10}]})
    fit = fit_cohort(table, recipe)
    test = fit.predictions[fit.predictions.partition == "test"]
    assert sorted(test.id) == sorted(table.index) and set(test.fold) == {0, 1, 2}


@pytest.mark.parametrize("step", [{"method": "stability", "k": 5, "resamples": 20},
                                  {"method": "rfe", "k": 5}])
def test_other_selectors_find_the_signal(step):
    table = synthetic_table(n=200, p=10, signal=1.5)
    recipe = recipe_from_dict({**RECIPE, "selection": [step], "preprocess": {"normalisation": "max-abs"}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = fit_cohort(table, recipe)
    names = set(fit.models.radscores["cortical"][:-1].get_feature_names_out())
    assert "cortical:f00" in names or "cortical:f03" in names


def test_classifier_families_with_grid_search_and_multiclass(tmp_path):
    table = synthetic_table(n=150, p=5)
    base = {**RECIPE, "selection": [], "models": [], "export": {},
            "classifiers": [{"family": "random_forest", "grid": {"max_depth": [2, "none"], "n_estimators": [20]}},
                            {"family": "logistic", "grid": {"C": [0.1, 1.0]}},
                            {"family": "knn", "grid": {"n_neighbors": [9]}}]}
    fit = fit_cohort(table, recipe_from_dict(base))
    test = fit.predictions[fit.predictions.partition == "test"]
    assert roc_auc_score(test.y, test["clf:logistic"]) > 0.7
    assert fit.models.classifiers["random_forest"].named_steps["clf"].max_depth in (2, None)
    three = table.assign(fracture=np.digitize(table["cortical:f00"], np.quantile(table["cortical:f00"], [1 / 3, 2 / 3])))
    fit3 = fit_cohort(three, recipe_from_dict({**base, "classifiers": [{"family": "logistic", "grid": {"C": [1.0]}}]}))
    assert {"clf:logistic:0", "clf:logistic:1", "clf:logistic:2"} <= set(fit3.predictions.columns)
    evaluation = evaluate_fit(fit3, bootstrap=100)
    assert evaluation["classes"] == ["0", "1", "2"]
    test_auc = evaluation["scores"]["clf:logistic"]["test"]
    assert 0.7 < test_auc["macro"] <= 1 and 0.7 < test_auc["micro"] <= 1
    test = fit3.predictions[fit3.predictions.partition == "test"]
    predicted = np.argmax(test[["clf:logistic:0", "clf:logistic:1", "clf:logistic:2"]].to_numpy(), axis=1)
    assert test_auc["f1_macro"] == pytest.approx(f1_score(test.y, predicted, average="macro"), abs=1e-12)
    for cls in (0, 1, 2):
        per_class = test_auc["classes"][str(cls)]
        assert per_class["f1"]["estimate"] == pytest.approx(f1_score(test.y == cls, predicted == cls), abs=1e-12)
        assert per_class["sensitivity"]["estimate"] == pytest.approx(
            recall_score(test.y == cls, predicted == cls), abs=1e-12)
        assert per_class["auc"]["auc"] == pytest.approx(roc_auc_score(test.y == cls, test[f"clf:logistic:{cls}"]))
        assert per_class["f1"]["ci_low"] <= per_class["f1"]["estimate"] <= per_class["f1"]["ci_high"]
    html = write_report(fit3.predictions, evaluation, tmp_path).read_text()
    assert "macro AUC" in html and "classifier logistic" in html and (tmp_path / "roc_clf_logistic_test.png").is_file()


def test_the_documented_recipe_example_is_valid():
    import tomllib

    from inference.cohort import recipe as recipe_module

    doc = recipe_module.__doc__
    block = doc.split("Example (every key shown)::", 1)[1].split("Inputs of a logistic model", 1)[0]
    example = "\n".join(line[4:] for line in block.splitlines())
    parsed = recipe_from_dict(tomllib.loads(example))
    assert parsed.split.matching.ratio == 2 and parsed.selection[1].rule == "1se"
    assert parsed.classifiers[0].grid["max_depth"] == [3, None]


def test_the_lasso_selects_for_three_classes_with_a_multinomial_fit():
    """The three-class studies run LASSO on three classes (glmnet's multinomial family)."""
    rng = np.random.default_rng(7)
    x = pd.DataFrame(rng.normal(size=(240, 15)), columns=[f"f{j:02d}" for j in range(15)])
    logits = np.column_stack([np.zeros(240), 2.0 * x.f00, -2.0 * x.f00 + 2.0 * x.f01])
    y = np.array([rng.choice(3, p=np.exp(row) / np.exp(row).sum()) for row in logits])
    lasso = select.LassoLogisticCV(rule="1se", folds=5, n_lambdas=15).fit(x, y)
    assert lasso.coef_.shape == (3, 15) and set(x.columns[lasso.support_]) >= {"f00", "f01"}
    assert lasso.support_.sum() <= 6 and lasso.coef_path_.shape == (15, 15)
    proba = lasso.predict_proba(x)
    assert np.allclose(proba.sum(axis=1), 1) and (lasso.predict(x) == y).mean() > 0.6
    with pytest.raises(ValueError, match="at least two outcome classes"):
        select.LassoLogisticCV().fit(x, np.zeros(240))
    table = synthetic_table(n=180, p=6)
    three = table.assign(fracture=np.digitize(table["cortical:f00"], np.quantile(table["cortical:f00"], [0.33, 0.66])))
    recipe = recipe_from_dict({**RECIPE, "models": [], "export": {},
                               "selection": [{"method": "lasso", "rule": "min", "folds": 4, "n_lambdas": 10}],
                               "classifiers": [{"family": "logistic", "grid": {"C": [1.0]}}]})
    fit = fit_cohort(three, recipe)
    chosen = fit.models.classifiers["logistic"].named_steps["select0_lasso"]
    assert "cortical:f00" in set(chosen.feature_names_in_[chosen.support_])


def test_rfecv_and_a_correlation_filter_as_selection_steps():
    """RFE with a linear SVM sized by 5-fold CV (the MRI study), and a |r| > 0.5 filter after the
    LASSO (the fracture-type study), both fitted inside the training split."""
    table = synthetic_table(n=200, p=8)
    table["cortical:copy"] = table["cortical:f00"] * 2 + 1  # perfectly redundant with an informative feature
    recipe = recipe_from_dict({**RECIPE, "preprocess": {"normalisation": "z-score"}, "models": [], "export": {},
                               "selection": [{"method": "rfecv", "folds": 5},
                                             {"method": "correlation", "kind": "pearson", "threshold": 0.5}],
                               "classifiers": [{"family": "logistic", "grid": {"C": [1.0]}}]})
    fit = fit_cohort(table, recipe)
    steps = fit.models.classifiers["logistic"].named_steps
    rfecv, corr = steps["select0_rfecv"], steps["select1_correlation"]
    assert 1 <= rfecv.n_features_ < 17 and len(rfecv.cv_results_["mean_test_score"]) == 17
    kept = corr.get_feature_names_out()
    assert not {"cortical:f00", "cortical:copy"} <= set(kept)
    chosen = fit.models.classifiers["logistic"][:-1].transform(table.drop(columns=["fracture"]))
    assert (chosen.corr().abs().to_numpy()[~np.eye(chosen.shape[1], dtype=bool)] <= 0.5).all()


def test_a_nomogram_reads_the_models_own_probability(tmp_path):
    from inference.cohort.fit import logistic_inputs
    from inference.cohort.nomogram import nomogram_figures, nomogram_of

    fit = fit_cohort(synthetic_table(), recipe_from_dict(RECIPE))
    train = fit.predictions[fit.predictions.partition == "train"]
    inputs = logistic_inputs(fit.table.drop(columns=["fracture"]).loc[train.id], fit.models.radscores)
    columns = ["cortical", "cancellous", "vbmd"]
    nomogram = nomogram_of(fit.models.logistic["combined"], inputs[columns])
    totals = nomogram.total_points({c: inputs[c].to_numpy() for c in columns})
    np.testing.assert_allclose(nomogram.probability(totals), train["model:combined"], rtol=0, atol=1e-9)
    assert max(axis.spread for axis in nomogram.inputs) * nomogram.points_per_unit == pytest.approx(100)
    assert nomogram.probability(nomogram.points_at_probability(0.3)) == pytest.approx(0.3)
    paths = nomogram_figures(fit, tmp_path)
    assert [p.name for p in paths] == ["nomogram_vertebral.png", "nomogram_combined.png", "nomogram_density.png"]


def test_xgboost_lightgbm_and_shap_figures(tmp_path):
    """The fracture-type study's boosted trees among the families, and its SHAP figures: SHAP values add up
    to each model's own log-odds."""
    from inference.cohort.explain import _explain, shap_figures

    table = synthetic_table(n=160, p=5)
    recipe = recipe_from_dict({**RECIPE, "selection": [], "export": {},
                               "classifiers": [{"family": "xgboost", "grid": {"max_depth": [2]}},
                                               {"family": "lightgbm", "grid": {"num_leaves": [7]}},
                                               {"family": "logistic", "grid": {"C": [1.0]}},
                                               {"family": "knn", "grid": {"n_neighbors": [9]}}]})
    fit = fit_cohort(table, recipe)
    test = fit.predictions[fit.predictions.partition == "test"]
    assert roc_auc_score(test.y, test["clf:xgboost"]) > 0.65 and roc_auc_score(test.y, test["clf:lightgbm"]) > 0.65
    rows = table.drop(columns=["fracture"]).loc[test.id]
    for family in ("xgboost", "logistic"):
        pipeline = fit.models.classifiers[family]
        shown = pd.DataFrame(pipeline[:-1].transform(rows))
        values, expected = _explain(pipeline[-1], pd.DataFrame(pipeline[:-1].transform(table.drop(columns=["fracture"]))),
                                    shown)
        p = pipeline.predict_proba(rows)[:, 1]
        np.testing.assert_allclose(values.sum(axis=1) + expected, np.log(p / (1 - p)), atol=1e-4)
    paths, left_out = shap_figures(fit, tmp_path)
    names = {p.name for p in paths}
    assert {"shap_bar_clf_xgboost.png", "shap_beeswarm_clf_lightgbm.png", "shap_decision_model_combined.png"} <= names
    assert left_out == ["clf:knn (no fast exact SHAP explainer)"]
    three = table.assign(fracture=np.digitize(table["cortical:f00"], np.quantile(table["cortical:f00"], [1 / 3, 2 / 3])))
    fit3 = fit_cohort(three, recipe_from_dict({**recipe.model_dump(), "models": [], "classifiers": [
        {"family": "xgboost", "grid": {"max_depth": [2]}}, {"family": "lightgbm", "grid": {"num_leaves": [7]}}]}))
    assert {"clf:xgboost:2", "clf:lightgbm:0"} <= set(fit3.predictions.columns)
