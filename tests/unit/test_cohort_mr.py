"""MR research extraction: given ROIs on any modality, N4 + z-score, CT-only steps refused, and the
MRI study's recipe (LASSO, random oversampling, RFECV) fitted inside the split."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from sklearn.metrics import roc_auc_score

from inference.cohort.export import ExportError, export_model
from inference.cohort.extract import ExtractionPlan, check_modality, extract_cohort
from inference.cohort.fit import fit_cohort
from inference.cohort.recipe import load_recipe, recipe_from_dict, shipped_recipes
from inference.cohort.table import CohortTableError, read_cohort_table
from inference.radiomics.preprocess import prepare_image
from inference.radiomics.profiles import get_profile
from tests.unit.mr_images import ROI_LABEL, t2_case, write_cohort

MR_RECIPE = "mr-vcf-osteoporotic-vs-malignant"


def _roi_median(image: sitk.Image, roi: sitk.Image) -> float:
    return float(np.median(sitk.GetArrayViewFromImage(image)[sitk.GetArrayViewFromImage(roi) > 0]))


def _spread(values: list[float]) -> float:
    """Coefficient of variation across cases."""
    return float(np.std(values) / abs(np.mean(values)))


def test_n4_and_z_score_make_the_same_tissue_agree_across_coils_and_scales(bench_report):
    """Six cases of the same anatomy with a different bias field and intensity scale each: the
    ROI's median differs by a factor of 5 raw; z-score alone leaves the bias field; N4 + z-score
    bring the cases within a few percent."""
    profile = get_profile("mr_t2")
    z_only = dataclasses.replace(profile, bias_correction=False)
    raw, scored, corrected = [], [], []
    for seed in range(6):
        image, labels = t2_case(seed)
        roi = labels == ROI_LABEL
        raw.append(_roi_median(image, roi))
        scored.append(_roi_median(*prepare_image(image, roi, z_only)))
        corrected.append(_roi_median(*prepare_image(image, roi, profile)))
    bench_report("MR normalisation, CV of the ROI median over 6 cases", raw=round(_spread(raw), 3),
                 z_score=round(_spread(scored), 3), n4_z_score=round(_spread(corrected), 3))
    assert _spread(raw) > 0.4
    assert _spread(corrected) < 0.05 < _spread(scored)


def test_resampling_keeps_the_extent_and_takes_the_roi_along():
    image, labels = t2_case(0)
    profile = dataclasses.replace(get_profile("mr_t2"), bias_correction=False, resample_mm=(2.0, 2.0, 4.0))
    new_image, new_roi = prepare_image(image, labels == ROI_LABEL, profile)
    assert new_image.GetSpacing() == (2.0, 2.0, 4.0) and new_image.GetSize() == (48, 64, 9)
    old_area = float(sitk.GetArrayFromImage(labels == ROI_LABEL).sum()) * 1.0  # mm2 on the middle slice
    assert float(sitk.GetArrayFromImage(new_roi).sum()) * 4.0 == pytest.approx(old_area, rel=0.1)


def test_an_mr_cohort_with_2d_rois_is_extracted_without_ct_steps(tmp_path):
    cohort = write_cohort(tmp_path / "mr", 4)
    rows = read_cohort_table(cohort, roi=True)
    plan = ExtractionPlan(profile="mr_t2", roi=True, roi_label=ROI_LABEL, modality="MR")
    result = extract_cohort(rows, tmp_path / "feat", plan, progress=False)
    assert result.done == 4 and not result.failures
    table = pd.read_csv(result.study_table, index_col="study_id")
    roi_columns = [c for c in table.columns if c.startswith("roi:")]
    assert len(roi_columns) > 1000 and "roi:original_firstorder_Median" in roi_columns
    assert "vbmd" not in table.columns and "node_vbmd" not in table.columns
    levels = pd.read_csv(tmp_path / "feat" / "levels.csv")
    assert set(levels.level) == {"roi"}
    # rerun: identical features (nothing random in N4, z-score or extraction)
    again = extract_cohort(rows, tmp_path / "again", plan, progress=False)
    pd.testing.assert_frame_equal(table, pd.read_csv(again.study_table, index_col="study_id"))


def test_a_wrong_roi_label_fails_that_study_with_its_reason(tmp_path):
    cohort = write_cohort(tmp_path / "mr", 2)
    plan = ExtractionPlan(profile="mr_t2", roi=True, roi_label=7, modality="MR")
    result = extract_cohort(read_cohort_table(cohort, roi=True), tmp_path / "feat", plan, progress=False)
    assert result.done == 0 and all("no voxel labelled 7" in reason for reason in result.failures.values())


@pytest.mark.parametrize(("plan", "message"), [
    (ExtractionPlan(profile="mr_t2", modality="MR"), "only given ROIs"),
    (ExtractionPlan(profile="che2025", roi=True, modality="MR"), "made for CT, not MR"),
    (ExtractionPlan(profile="mr_t2", roi=True), "made for MR, not CT"),
    (ExtractionPlan(profile="mr_t2", roi=True, modality="MR", deep="resnet50", deep_weights="w.pth"), "CT-only"),
    (ExtractionPlan(profile="mr_t2", roi=True, modality="PET"), "unknown modality"),
])
def test_ct_only_steps_refuse_mr(plan, message):
    with pytest.raises(ValueError, match=message):
        check_modality(plan)


def test_roi_mode_needs_a_mask_on_every_row(tmp_path):
    cohort = write_cohort(tmp_path / "mr", 2)
    text = cohort.read_text().replace("mr1_roi.nii.gz", "")
    cohort.write_text(text)
    with pytest.raises(CohortTableError, match="no ROI mask image"):
        read_cohort_table(cohort, roi=True)


def _noise_table(n: int, p: int, seed: int, positives: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"roi:n{j:03d}" for j in range(p)],
                         index=[f"S{i}" for i in range(n)])
    table["label"] = rng.permutation(np.r_[np.ones(positives, int), np.zeros(n - positives, int)])
    return table


def test_the_mri_recipe_oversamples_and_sizes_rfe_inside_the_split():
    """The shipped MRI recipe on an imbalanced table: the oversampler balances only the rows the
    fit sees (so the fitted RFECV saw as many of each class), the test rows are scored once each,
    and the number of RFE features is chosen by CV inside the training split."""
    rng = np.random.default_rng(3)
    table = _noise_table(150, 30, 3, 40)
    table["roi:signal"] = table["label"] * 1.5 + rng.normal(size=len(table))
    recipe = load_recipe(shipped_recipes()[MR_RECIPE])
    fit = fit_cohort(table, recipe)
    pipeline = fit.models.radscores["roi"]
    rfecv = pipeline.named_steps["select2_rfecv"]
    train = fit.predictions[fit.predictions.partition == "train"]
    assert len(rfecv.cv_results_["mean_test_score"]) == rfecv.n_features_in_  # sized by CV
    assert "roi:signal" in rfecv.get_feature_names_out()
    counts = np.bincount(train.y.astype(int))
    assert counts[0] > counts[1]  # imbalanced training rows; the sampler balanced what RFECV saw
    assert len(pipeline.named_steps["select1_oversample"].sample_indices_) == 2 * counts[0]
    test = fit.predictions[fit.predictions.partition == "test"]
    assert len(test) + len(train) == len(table) and roc_auc_score(test.y, test["radscore:roi"]) > 0.75
    with pytest.raises(ExportError, match="reader's ROI"):
        export_model(fit, "mr-site")


def test_leakage_oversampling_and_rfecv_inside_the_split_give_chance_auc_on_noise():
    """Pure noise, imbalanced: LASSO, oversampling and RFECV inside the training split leave the
    test AUC near 0.5 (oversampling before the split would put copies of a row on both sides)."""
    aucs = []
    for seed in range(3):
        table = _noise_table(120, 60, seed, 36)
        recipe = recipe_from_dict({
            "data": {"outcome": "label"}, "split": {"test_size": 0.4, "seed": seed},
            "selection": [{"method": "oversample"}, {"method": "rfecv", "folds": 5}],
            "radscore": {"vois": ["roi"]}})
        fit = fit_cohort(table, recipe)
        test = fit.predictions[fit.predictions.partition == "test"]
        aucs.append(roc_auc_score(test.y, test["radscore:roi"]))
    assert abs(np.mean(aucs) - 0.5) < 0.12


def test_an_roi_drawn_on_another_grid_is_refused(tmp_path):
    cohort = write_cohort(tmp_path / "mr", 1)
    roi = sitk.ReadImage(str(tmp_path / "mr" / "mr0_roi.nii.gz"))
    roi.SetOrigin((0.0, 0.0, 20.0))  # five slices further along
    sitk.WriteImage(roi, str(tmp_path / "mr" / "mr0_roi.nii.gz"))
    plan = ExtractionPlan(profile="mr_t2", roi=True, modality="MR")
    result = extract_cohort(read_cohort_table(cohort, roi=True), tmp_path / "feat", plan, progress=False)
    assert "is not the image's" in result.failures["MR0"]
