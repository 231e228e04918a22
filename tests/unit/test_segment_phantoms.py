"""The anatomical backend on synthetic CT with ground truth (inference.phantom).

Chest and abdominal fields of view, 1 mm and 3 mm slices, fractures and rib
variants. Reduced matrices (2 mm pixels) keep the suite fast; the full-size
timing is in tests/bench/test_bench_segment.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from inference.levels import TARGET_LEVELS, VERSE_IDS, Compartment
from inference.phantom import generate_phantom
from inference.phantom.spec import abdominal_ct, chest_ct, neck_ct
from inference.segment import segment_volume

THIN = {"pixel_spacing_mm": 2.0, "slice_spacing_mm": 1.0, "slice_thickness_mm": 1.0}

CASES = {
    # name: (spec, minimum body Dice, minimum cortical Dice)
    "abdominal-3mm-seed1": (abdominal_ct(1, shape=(200, 200, 125)), 0.90, 0.70),
    "chest-3mm-seed4-T12-crush3": (chest_ct(4, shape=(200, 200, 125), fractures={"T12": (3, "crush")}), 0.90, 0.70),
    "abdominal-1mm-seed3-L1-wedge2": (
        abdominal_ct(3, shape=(200, 200, 200), top_level="T10", bottom_level="L3",
                     fractures={"L1": (2, "wedge")}, **THIN), 0.90, 0.70),
    "chest-1mm-seed8-T12-biconcave1": (
        chest_ct(8, shape=(200, 200, 200), top_level="T9", bottom_level="L2",
                 fractures={"T12": (1, "biconcave")}, **THIN), 0.90, 0.70),
}


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * (a & b).sum() / max(a.sum() + b.sum(), 1)


def _check_labels(result, phantom) -> None:
    labels = sitk.GetArrayFromImage(result.vertebrae)
    truth = sitk.GetArrayFromImage(phantom.vertebrae)
    for name in TARGET_LEVELS:
        assert name in result.levels, f"{name} not found"
        values, counts = np.unique(truth[labels == VERSE_IDS[name]], return_counts=True)
        assert values[np.argmax(counts)] == VERSE_IDS[name], f"{name} is truth level {values[np.argmax(counts)]}"


@pytest.mark.parametrize("case", list(CASES))
def test_levels_bodies_and_cortex(case: str, bench_report):
    spec, min_body, min_cortical = CASES[case]
    phantom = generate_phantom(spec)
    result = segment_volume(phantom.image)
    _check_labels(result, phantom)
    if spec.bottom_level == "S":  # lowest rib pair and sacrum agree
        assert not result.needs_review and result.labelling_confidence > 0.9
    else:  # a chest CT without its first rib pair: one rib anchor, nothing to check it against
        assert result.needs_review
        assert any("rest on the lowest rib pair only" in w for w in result.warnings)

    bodies = sitk.GetArrayFromImage(result.bodies)
    compartments = sitk.GetArrayFromImage(result.compartments)
    truth_bodies = sitk.GetArrayFromImage(phantom.bodies)
    truth_compartments = sitk.GetArrayFromImage(phantom.compartments)
    figures = {}
    for name in TARGET_LEVELS:
        label = VERSE_IDS[name]
        in_truth = truth_bodies == label
        figures[f"{name} body"] = round(_dice(bodies == label, in_truth), 3)
        figures[f"{name} cortical"] = round(_dice(
            (compartments == Compartment.CORTICAL) & (bodies == label),
            (truth_compartments == Compartment.CORTICAL) & in_truth), 3)
    bench_report(f"phantom {case}", **figures)
    for name in TARGET_LEVELS:
        assert figures[f"{name} body"] >= min_body, name
        assert figures[f"{name} cortical"] >= min_cortical, name
    for name in ("T11", "T12", "L1"):
        assert result.levels[name].complete == phantom.truth["levels"][name]["complete_in_view"]


@pytest.mark.parametrize(
    ("variant", "expected"),
    [({"rib_pairs": 11}, "6 rib-free"), ({"lumbar_rib": True}, "4 rib-free")],
    ids=["11-rib-pairs", "lumbar-rib"],
)
def test_conflicting_rib_and_sacrum_evidence_asks_for_review(variant, expected):
    phantom = generate_phantom(abdominal_ct(5, shape=(200, 200, 125), **variant))
    result = segment_volume(phantom.image)
    assert result.needs_review
    assert any(expected in warning for warning in result.warnings)
    _check_labels(result, phantom)  # counted from the sacrum: still right


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (abdominal_ct(2, shape=(200, 200, 125), rib_pairs=13), "possible 13 rib pairs"),
        (chest_ct(4, shape=(200, 200, 125), rib_pairs=11), "possible 11 rib pairs"),
    ],
    ids=["13-rib-pairs-sacrum-in-view", "11-rib-pairs-chest"],
)
def test_rib_lengths_that_contradict_the_count_ask_for_review(spec, expected):
    """Counting alone is fooled here: with 13 pairs the sacrum count agrees with the lowest rib
    (5 rib-free vertebrae either way); a chest CT has no sacrum to check 11 pairs against."""
    result = segment_volume(generate_phantom(spec).image)
    assert result.needs_review
    assert any(expected in warning for warning in result.warnings)


def test_enhanced_aorta_in_front_of_the_bodies_does_not_shift_levels():
    """Portal-venous contrast: the aorta touches the front of T11-L1 on the midline."""
    phantom = generate_phantom(abdominal_ct(9, shape=(200, 200, 125), contrast=True))
    result = segment_volume(phantom.image)
    _check_labels(result, phantom)
    bodies = sitk.GetArrayFromImage(result.bodies)
    truth = sitk.GetArrayFromImage(phantom.bodies)
    for name in TARGET_LEVELS:
        assert _dice(bodies == VERSE_IDS[name], truth == VERSE_IDS[name]) >= 0.80, name


def test_neck_ct_has_no_target_levels():
    phantom = generate_phantom(neck_ct(0, shape=(128, 128, 80)))
    result = segment_volume(phantom.image)
    assert result.levels_not_in_view == list(TARGET_LEVELS)
    assert not result.complete_levels(TARGET_LEVELS)
