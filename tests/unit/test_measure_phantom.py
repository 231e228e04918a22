"""measure_study on a phantom with known vBMD, heights and fractures (ground-truth segmentation)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.levels import TARGET_LEVELS
from inference.measure import measure_study
from inference.models import load_model
from inference.phantom import PhantomSpec, generate_phantom
from inference.radiomics import extract_features
from inference.results import SegmentationResult
from inference.segment.levels import describe_levels

VBMD = {"T10": 150.0, "T11": 40.0, "T12": 120.0, "L1": 200.0, "L2": 290.0, "L3": 150.0}
"""One vBMD per level spans the clinical range (osteoporotic to young adult) in one scan."""
FRACTURES = {"T12": (3, "biconcave"), "L1": (2, "wedge")}


@pytest.fixture(scope="module")
def phantom_study():
    spec = PhantomSpec(seed=5, top_level="T10", bottom_level="L3", shape=(256, 256, 200), pixel_spacing_mm=1.5,
                       slice_spacing_mm=1.0, slice_thickness_mm=1.0, vbmd_mg_cm3=VBMD, fractures=FRACTURES)
    phantom = generate_phantom(spec)
    levels = describe_levels(phantom.vertebrae, phantom.bodies).levels
    seg = SegmentationResult(vertebrae=phantom.vertebrae, bodies=phantom.bodies,
                             compartments=phantom.compartments, levels=levels, backend="ground truth")
    return phantom, measure_study(phantom.image, seg, load_model("che2025-published"))


def test_estimated_vbmd_within_15_mg_cm3_across_the_range(phantom_study, output_dir: Path) -> None:
    phantom, study = phantom_study
    errors = {name: study.levels[name].vbmd_mg_cm3 - phantom.truth["levels"][name]["vbmd_mg_cm3"]
              for name in TARGET_LEVELS}
    (output_dir / "vbmd_errors.json").write_text(json.dumps({"errors": errors, "calibration": study.calibration},
                                                            indent=2))
    assert max(abs(e) for e in errors.values()) <= 15.0, errors
    assert study.vbmd_mg_cm3 == pytest.approx(sum(VBMD[n] for n in TARGET_LEVELS) / 4, abs=15.0)
    assert study.calibration["fat_hu"] == pytest.approx(-100, abs=10)
    assert study.calibration["muscle_hu"] == pytest.approx(50, abs=10)


def test_heights_within_1_5_mm_at_1_mm_slices(phantom_study) -> None:
    phantom, study = phantom_study
    for name in TARGET_LEVELS:
        truth = phantom.truth["levels"][name]["heights_mm"]
        heights = study.levels[name].heights
        measured = {"anterior": heights.anterior_mm, "middle": heights.middle_mm, "posterior": heights.posterior_mm}
        assert measured == pytest.approx(truth, abs=1.5), name


def test_genant_grades_recovered(phantom_study) -> None:
    phantom, study = phantom_study
    grades = {name: study.levels[name].genant_grade for name in TARGET_LEVELS}
    assert grades == {name: phantom.truth["levels"][name]["fracture"]["grade"] for name in TARGET_LEVELS}
    assert grades == {"T11": 0, "T12": 3, "L1": 2, "L2": 0}
    assert study.max_genant_grade == 3
    assert study.levels["L1"].heights.wedge_ratio < 0.8


def test_categories_and_uncalibrated_score(phantom_study) -> None:
    phantom, study = phantom_study
    assert study.l1_attenuation_hu == pytest.approx(phantom.truth["levels"]["L1"]["expected_cancellous_hu"], abs=15)
    assert study.l1_attenuation_category == "normal likely"  # 200 mg/cm3 -> 250 HU
    assert study.vbmd_category == "normal"
    score = study.score
    assert score is not None and not score.calibrated and score.probability is None
    assert score.levels_used == list(TARGET_LEVELS)
    for name in TARGET_LEVELS:
        level = study.levels[name]
        assert set(level.radscores) == {"cortical", "cancellous"}
        assert len(level.features["cortical"]) == 13 and len(level.features["cancellous"]) == 16
        assert level.cancellous.volume_ml > 5 and level.cortical.voxels > 0


def test_measurements_json_round_trip(phantom_study) -> None:
    _, study = phantom_study
    document = json.loads(json.dumps(study.to_json()))
    assert document["levels"]["L1"]["genant_grade"] == 2
    assert document["score"]["model_id"] == "che2025-published"


def test_study_features_equal_extraction_on_the_whole_image(phantom_study) -> None:
    phantom, study = phantom_study
    model = load_model("che2025-published")
    mask = (phantom.bodies == 20) & (phantom.compartments == 1)
    whole = extract_features(phantom.image, mask, "che2025", features=model.features["cortical"])
    assert study.levels["L1"].features["cortical"] == whole


def test_segmentation_on_another_grid_is_refused(phantom_study) -> None:
    phantom, _ = phantom_study
    small = phantom.image[:100, :, :]
    seg = SegmentationResult(vertebrae=phantom.vertebrae, bodies=phantom.bodies, compartments=phantom.compartments,
                             levels={}, backend="ground truth")
    with pytest.raises(ValueError, match="does not match the image"):
        measure_study(small, seg, None)
