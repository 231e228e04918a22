"""Radscore model files: the shipped published model, validation, scoring and explanations."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from inference.models import ModelError, RadscoreModel, list_models, load_model

PUBLISHED_CORTICAL = [0.3976, 0.3990, 0.0251, 0.1239, 0.1353, -0.4752, -0.1588, -0.2593, -0.0107, -0.0266,
                      -0.0224, -0.0920, -0.1111]
PUBLISHED_CANCELLOUS = [0.8243, 0.0395, 0.2480, 0.4405, 0.0449, 0.4082, 0.0878, 0.0405, 0.0030, 0.1326, -0.2450,
                        -0.0257, -0.0371, -0.0462, -0.1381, -0.0660]


def _features(model: RadscoreModel, value: float) -> dict[str, dict[str, float]]:
    return {comp: {name: value for name in names} for comp, names in model.features.items()}


def _calibrated(tmp_path: Path) -> RadscoreModel:
    """The published model with made-up site constants filled in."""
    doc = load_model("che2025-published").to_dict()
    for formula in doc["radscores"].values():
        for term in formula["terms"]:
            term["normalisation"] = {"method": "z-score", "center": 1.0, "scale": 2.0}
    doc["logistic"] = {
        "vertebral": {"intercept": -1.0, "coefficients": {"cortical": 1.5, "cancellous": 2.0}},
        "combined": {"intercept": 1.0, "coefficients": {"cortical": 1.0, "cancellous": 1.0, "vbmd": -0.02}},
    }
    doc["primary_output"] = "combined"
    doc["categories"] = [{"name": "low", "below": 0.2}, {"name": "intermediate", "below": 0.5},
                         {"name": "high", "below": None}]
    doc.update(id="site-test", version="2026.1")
    RadscoreModel.from_dict(doc).save(tmp_path / "site-test.json")
    return load_model("site-test", model_dir=tmp_path)


def test_shipped_published_model_has_the_paper_coefficients_in_order() -> None:
    assert "che2025-published" in list_models()
    model = load_model("che2025-published")
    assert (model.id, model.profile, model.levels) == ("che2025-published", "che2025", ("T11", "T12", "L1", "L2"))
    assert [t.coefficient for t in model.radscores["cortical"].terms] == PUBLISHED_CORTICAL
    assert [t.coefficient for t in model.radscores["cancellous"].terms] == PUBLISHED_CANCELLOUS
    assert model.features["cortical"][5] == "wavelet_gldm_wavelet-HHH-Correlation"
    assert model.features["cancellous"][8] == "boxsigmaimage_glszm_ZoneEntropy"
    assert not model.calibrated
    assert "needs_local_calibration" in model.provenance


def test_uncalibrated_model_gives_flagged_radscores_and_no_probability() -> None:
    model = load_model("che2025-published")
    features = {lv: _features(model, 1.0) for lv in model.levels}
    score = model.score(features, vbmd_mg_cm3=100.0)
    assert score.calibrated is False
    assert score.probability is None and score.category is None and score.probabilities == {}
    assert score.radscores["cortical"] == pytest.approx(sum(PUBLISHED_CORTICAL))
    assert score.radscores["cancellous"] == pytest.approx(sum(PUBLISHED_CANCELLOUS))
    assert any("uncalibrated" in r for r in score.remarks)
    assert score.levels_used == ["T11", "T12", "L1", "L2"]


def test_calibrated_model_scores_probability_category_and_explains(tmp_path: Path) -> None:
    model = _calibrated(tmp_path)
    assert model.calibrated
    features = {lv: _features(model, 3.0) for lv in model.levels}  # normalised value (3-1)/2 = 1
    score = model.score(features, vbmd_mg_cm3=150.0)
    cort, canc = sum(PUBLISHED_CORTICAL), sum(PUBLISHED_CANCELLOUS)
    assert score.radscores == pytest.approx({"cortical": cort, "cancellous": canc,
                                             "vertebral": -1.0 + 1.5 * cort + 2.0 * canc})
    expected = 1 / (1 + math.exp(-(1.0 + cort + canc - 0.02 * 150.0)))
    assert score.probability == pytest.approx(expected)
    assert score.probabilities["vertebral"] == pytest.approx(1 / (1 + math.exp(-(-1.0 + 1.5 * cort + 2.0 * canc))))
    assert score.category == model.category(expected)
    top = score.explanation["cancellous"]
    assert top[0].name == "wavelet_firstorder_wavelet-LHL-Skewness" and top[0].value == pytest.approx(0.8243)
    assert [abs(c.value) for c in top] == sorted((abs(c.value) for c in top), reverse=True)
    assert score.explanation["probability:combined"][0].name == "vbmd"


def test_calibrated_model_without_vbmd_gives_no_combined_probability(tmp_path: Path) -> None:
    model = _calibrated(tmp_path)
    score = model.score({lv: _features(model, 3.0) for lv in model.levels})
    assert score.probability is None and "vertebral" in score.probabilities
    assert any("vbmd" in r for r in score.remarks)


def test_failed_levels_are_left_out_of_the_mean_until_too_few_remain() -> None:
    model = load_model("che2025-published")
    features = {"T11": _features(model, 1.0), "T12": _features(model, 2.0), "L1": {"cortical": {}}}
    score = model.score(features)
    assert score.radscores["cortical"] == pytest.approx(1.5 * sum(PUBLISHED_CORTICAL))
    assert score.levels_used == ["T11", "T12"]
    assert any("L1, L2 left out" in r for r in score.remarks)
    lone = model.score({"L2": _features(model, 1.0)})
    assert lone.radscores == {} and any("1 level(s) scored, 2 needed" in r for r in lone.remarks)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    model = load_model("che2025-published")
    path = model.save(tmp_path / "copy.json")
    assert load_model(str(path)) == model
    assert json.loads(path.read_text())["radscores"]["cortical"]["terms"][0]["normalisation"]["scale"] is None


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.pop("radscores"), "a model needs radscores or a classifier"),
    (lambda d: d["radscores"]["cortical"]["terms"][0].update(coefficient="big"), "radscores.cortical.terms.0.coefficient"),
    (lambda d: d["logistic"]["vertebral"]["coefficients"].update(bmi=1.0), "unknown inputs ['bmi']"),
    (lambda d: d.update(format_version=7), "format_version"),
    (lambda d: d["radscores"]["cortical"]["terms"][0]["normalisation"].update(scale=0.0), "scale must be > 0"),
])
def test_bad_model_files_are_refused_with_the_key(tmp_path: Path, edit, message: str) -> None:
    doc = load_model("che2025-published").to_dict()
    edit(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="bad.json") as info:
        load_model(str(path))
    assert message in str(info.value)


def test_unknown_model_and_broken_json_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="'nope' not found.*che2025-published"):
        load_model("nope")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ModelError, match="not a readable JSON model file"):
        load_model(str(broken))


def _three_class_document() -> dict:
    """A multi-class model with two body features: one favours wedge, the other crush."""
    norm = {"method": "z-score", "center": 10.0, "scale": 2.0}
    return {
        "format": "scpnode-radscore-model", "format_version": 2, "id": "types", "version": "1",
        "levels": ["T12", "L1"], "combination": {"method": "mean", "min_levels": 1},
        "classifier": {
            "classes": ["biconcave", "crush", "wedge"],
            "intercepts": {"biconcave": 0.0, "crush": -1.0, "wedge": 0.5},
            "terms": [
                {"voi": "body", "feature": "a", "normalisation": norm,
                 "coefficients": {"biconcave": 0.0, "crush": -1.0, "wedge": 2.0}},
                {"voi": "cancellous", "feature": "b", "normalisation": norm,
                 "coefficients": {"biconcave": 0.5, "crush": 1.5, "wedge": 0.0}}]},
    }


def test_a_multiclass_model_gives_one_vs_rest_probabilities_of_the_level_means() -> None:
    model = RadscoreModel.from_dict(_three_class_document())
    assert model.features == {"body": ("a",), "cancellous": ("b",)} and model.calibrated
    score = model.score({"T12": {"body": {"a": 12.0}, "cancellous": {"b": 8.0}},
                         "L1": {"body": {"a": 14.0}, "cancellous": {"b": 12.0}}})
    # level means a = 13, b = 10 -> normalised 1.5 and 0
    logits = {"biconcave": 0.0, "crush": -1.0 - 1.5, "wedge": 0.5 + 3.0}
    raw = {k: 1 / (1 + math.exp(-v)) for k, v in logits.items()}
    assert score.class_probabilities == pytest.approx({k: v / sum(raw.values()) for k, v in raw.items()}, abs=1e-12)
    assert score.predicted_class == "wedge" and score.levels_used == ["T12", "L1"]
    assert score.probability is None and score.category is None and score.probabilities == {}
    assert score.research_use and "research use only" in score.remarks[0]
    assert [c.name for c in score.explanation["class:wedge"]] == ["body:a", "cancellous:b"]


def test_a_multiclass_model_scores_nothing_below_its_minimum_of_levels() -> None:
    document = _three_class_document()
    document["combination"]["min_levels"] = 2
    score = RadscoreModel.from_dict(document).score({"L1": {"body": {"a": 1.0}, "cancellous": {"b": 1.0}},
                                                     "T12": {"body": {"a": 1.0}}})
    assert score.class_probabilities == {} and score.predicted_class is None
    assert any("T12 left out" in remark for remark in score.remarks)
    assert any("1 level(s) scored, 2 needed" in remark for remark in score.remarks)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.update(format_version=1), "needs format_version 2"),
    (lambda d: d["classifier"]["intercepts"].pop("crush"), "intercepts must name exactly the classes"),
    (lambda d: d["classifier"]["terms"][0]["coefficients"].update(other=1.0), "coefficients must name exactly"),
    (lambda d: d["classifier"]["terms"][1]["normalisation"].update(center=None), "normalisation constants missing"),
    (lambda d: d["classifier"].update(classes=["a", "b"]), "classifier.classes"),
    (lambda d: d.update(primary_output="combined", logistic={"combined": {"intercept": 0.0, "coefficients": {
        "vbmd": 1.0}}}), "cannot also have logistic, primary_output"),
])
def test_bad_multiclass_model_files_are_refused_with_the_key(edit, message: str) -> None:
    document = _three_class_document()
    edit(document)
    with pytest.raises(ModelError, match="multi") as info:
        RadscoreModel.from_dict(document, source="multi.json")
    assert message in str(info.value)
