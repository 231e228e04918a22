"""Radiomics extraction: equality with pyradiomics, reproducibility, published names, model-driven extraction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from radiomics.featureextractor import RadiomicsFeatureExtractor

from inference.cohort.table import combine_levels
from inference.models import load_model
from inference.radiomics import PROFILES, RadiomicsError, extract_features
from inference.radiomics.transforms import SITK_TRANSFORMS

LUMBAR = "real_ct/lumbar_crop_1p5mm"


@pytest.fixture(scope="module")
def lumbar_voi(shared_data: Path) -> tuple[sitk.Image, sitk.Image]:
    """Real CT (1.5 mm) and the cancellous core of L2 (VerSe sub-region 50), about 1,800 voxels."""
    folder = shared_data / LUMBAR
    image = sitk.Cast(sitk.ReadImage(str(folder / "sub-ct_label-22_ct.nii.gz")), sitk.sitkFloat32)
    subregions = sitk.ReadImage(str(folder / "sub-ct_seg-subreg_label-22_msk.nii.gz"))
    vertebrae = sitk.ReadImage(str(folder / "sub-ct_seg-vert_label-22_msk.nii.gz"))
    mask = sitk.Cast((subregions == 50) & (vertebrae == 21), sitk.sitkUInt8)
    return image, mask


@pytest.fixture(scope="module")
def full_che2025(lumbar_voi) -> dict[str, float]:
    return extract_features(*lumbar_voi, "che2025")


def test_original_features_equal_pyradiomics_extractor(lumbar_voi) -> None:
    image, mask = lumbar_voi
    reference = {k: float(v) for k, v in RadiomicsFeatureExtractor().execute(image, mask).items()
                 if k.startswith("original_")}
    ours = extract_features(image, mask, "yu2025")
    assert len(reference) == 107 and ours == reference


def test_every_published_feature_is_produced_by_che2025(full_che2025: dict[str, float]) -> None:
    model = load_model("che2025-published")
    published = [name for names in model.features.values() for name in names]
    assert len(published) == 29
    assert not [name for name in published if name not in full_che2025]
    assert full_che2025["wavelet_gldm_wavelet-HHH-Correlation"] == full_che2025["wavelet_glcm_wavelet-HHH-Correlation"]
    assert all(np.isfinite(full_che2025[name]) for name in published)
    assert len(full_che2025) > 2200


def test_full_che2025_leaves_out_glcm_mcc_but_a_model_may_ask_for_it(lumbar_voi, full_che2025) -> None:
    assert "original_glcm_MCC" not in full_che2025 and "original_glcm_Imc1" in full_che2025
    assert np.isfinite(extract_features(*lumbar_voi, "che2025", features=["original_glcm_MCC"])["original_glcm_MCC"])


def test_model_driven_extraction_equals_full_extraction(lumbar_voi, full_che2025: dict[str, float]) -> None:
    model = load_model("che2025-published")
    for names in model.features.values():
        driven = extract_features(*lumbar_voi, "che2025", features=names)
        assert list(driven) == list(names)
        assert driven == {name: full_che2025[name] for name in names}


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_two_runs_give_identical_features(lumbar_voi, full_che2025: dict[str, float], profile: str) -> None:
    first = full_che2025 if profile == "che2025" else extract_features(*lumbar_voi, profile)
    again = extract_features(*lumbar_voi, profile)
    assert again == first
    assert all(np.isfinite(v) for v in again.values())


def test_noise_transforms_are_seeded_and_change_the_image(lumbar_voi) -> None:
    image, _ = lumbar_voi
    for name in ("additivegaussiannoise", "specklenoise", "shotnoise"):
        first = sitk.GetArrayFromImage(SITK_TRANSFORMS[name](image))
        assert np.array_equal(first, sitk.GetArrayFromImage(SITK_TRANSFORMS[name](image)))
        assert not np.allclose(first, sitk.GetArrayFromImage(image))


def test_lumbar1197_clips_the_whole_image_to_its_percentiles_and_scales_to_0_255(lumbar_voi) -> None:
    image, mask = lumbar_voi
    features = extract_features(image, mask, "lumbar1197", features=["original_firstorder_Minimum",
                                                                     "original_firstorder_Maximum"])
    pixels = sitk.GetArrayFromImage(image)
    low, high = np.percentile(pixels, [0.1, 99.9])
    voi = np.clip(pixels[sitk.GetArrayFromImage(mask) == 1], low, high)
    expected = (voi - low) / (high - low) * 255
    assert features["original_firstorder_Minimum"] == pytest.approx(expected.min(), abs=1e-3)
    assert features["original_firstorder_Maximum"] == pytest.approx(expected.max(), abs=1e-3)
    assert 0 <= features["original_firstorder_Minimum"] < features["original_firstorder_Maximum"] <= 255


def test_lumbar1197_gives_the_published_1197_features_and_4788_over_four_levels(lumbar_voi) -> None:
    features = extract_features(*lumbar_voi, "lumbar1197")
    assert len(features) == 1197
    levels = ("L1", "L2", "L3", "L4")
    long = pd.DataFrame([{"study_id": "S1", "level": level, "voi": "body", **features} for level in levels])
    studies = pd.DataFrame([{"study_id": "S1", "patient_id": "P1", "label": 1}])
    per_level = pd.DataFrame([{"study_id": "S1", "level": level, "vbmd": 100.0, "genant_grade": 0} for level in levels])
    concatenated, _ = combine_levels(long, per_level, studies, "concatenate", levels=levels)
    assert sum(column.startswith("body:") for column in concatenated.columns) == 4 * 1197 == 4788
    assert sum(name.startswith("original_shape_") for name in features) == 14
    assert sum(name.startswith("original_") for name in features) == 14 + 91
    assert not any(name.endswith(("_glcm_MCC", "_glcm_SumAverage")) for name in features)


@pytest.mark.parametrize(("name", "message"), [
    ("original_glcm", "is not <imagetype>_<class>_<feature>"),
    ("original_texture_Contrast", "is not <imagetype>_<class>_<feature>"),
    ("wavelet_glcm_Contrast", "needs its sub-image"),
    ("log_firstorder_log-sigma-5-0-mm-3D-Mean", "not computed by profile 'che2025'"),
    ("boxmean_shape_Elongation", "shape features exist only for the original image"),
    ("original_glcm_Brightness", "has no 'Brightness'"),
])
def test_bad_feature_requests_are_refused(lumbar_voi, name: str, message: str) -> None:
    with pytest.raises(RadiomicsError, match=message):
        extract_features(*lumbar_voi, "che2025", features=[name])


def test_empty_voi_is_refused(lumbar_voi) -> None:
    image, mask = lumbar_voi
    with pytest.raises(RadiomicsError, match="VOI not usable: the mask is empty"):
        extract_features(image, mask * 0, "yu2025")
    with pytest.raises(RadiomicsError, match="differs from the image"):
        extract_features(image, mask[:20, :, :], "yu2025")
