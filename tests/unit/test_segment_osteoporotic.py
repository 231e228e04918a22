"""The anatomical backend on osteoporotic phantoms (vBMD 55 and 75 mg/cm3).

Trabecular bone of 70-95 HU lies between muscle (50 HU) and disc (85 HU):
this is the screening population, where a fixed body threshold cut bodies
into pieces and the middle of a body looked like a disc. One case is the
geometry of ``scpnode demo`` (1.25 mm pixels, 1.875 mm slices); the others
are reduced 3 mm matrices.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from inference.levels import TARGET_LEVELS, VERSE_IDS
from inference.measure import measure_study
from inference.phantom import generate_phantom
from inference.phantom.spec import abdominal_ct, chest_ct
from inference.segment import segment_volume

CASES = {
    "demo-abdominal-vbmd75-seed11-L1-wedge2": abdominal_ct(
        11, shape=(320, 320, 200), vbmd_mg_cm3=75.0, fractures={"L1": (2, "wedge")}),
    "abdominal-3mm-vbmd55-seed3": abdominal_ct(3, shape=(200, 200, 125), vbmd_mg_cm3=55.0),
    "chest-3mm-vbmd55-seed4-T12-wedge2": chest_ct(
        4, shape=(200, 200, 125), vbmd_mg_cm3=55.0, fractures={"T12": (2, "wedge")}),
    "chest-3mm-vbmd75-seed6": chest_ct(6, shape=(200, 200, 125), vbmd_mg_cm3=75.0),
    # 3 mm slices cut the tilted endplates of T12 obliquely: its top endplate lay off the body
    # centre line, dropped out of the mask and gave T12 a false grade 2 (L1 graded 1)
    "abdominal-3mm-vbmd55-seed7-L1-biconcave2": abdominal_ct(
        7, shape=(200, 200, 125), vbmd_mg_cm3=55.0, fractures={"L1": (2, "biconcave")}),
    "abdominal-3mm-vbmd55-seed13-L1-biconcave2": abdominal_ct(
        13, shape=(200, 200, 125), vbmd_mg_cm3=55.0, fractures={"L1": (2, "biconcave")}),
    "chest-3mm-vbmd55-seed14-L1-biconcave2": chest_ct(
        14, shape=(200, 200, 125), vbmd_mg_cm3=55.0, fractures={"L1": (2, "biconcave")}),
}

MIN_BODY_DICE = 0.90


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * (a & b).sum() / max(a.sum() + b.sum(), 1)


@pytest.mark.parametrize("case", list(CASES))
def test_low_density_bodies_are_whole_and_graded_right(case: str, bench_report) -> None:
    phantom = generate_phantom(CASES[case])
    result = segment_volume(phantom.image)
    bodies = sitk.GetArrayFromImage(result.bodies)
    truth = sitk.GetArrayFromImage(phantom.bodies)
    study = measure_study(phantom.image, result, None)

    figures: dict[str, float] = {}
    for name in TARGET_LEVELS:
        label = VERSE_IDS[name]
        values, counts = np.unique(truth[bodies == label], return_counts=True)
        assert values[np.argmax(counts)] == label, f"{name} lies on truth level {values[np.argmax(counts)]}"
        figures[f"{name} body"] = round(_dice(bodies == label, truth == label), 3)
        figures[f"{name} grade"] = study.levels[name].genant_grade
    bench_report(f"osteoporotic {case}", **figures)

    thick = CASES[case].slice_thickness_mm >= 3.0
    for name in TARGET_LEVELS:
        assert figures[f"{name} body"] >= MIN_BODY_DICE, name
        truth_grade = phantom.truth["levels"][name]["fracture"]["grade"]
        if thick and truth_grade:
            # 3 mm slices read each endplate to +-1.5 mm: a central (biconcave) depression of
            # 32 % measured 24.9-25.3 % here, one grade low; the fracture must still be found
            # and never graded worse than it is
            assert 1 <= figures[f"{name} grade"] <= truth_grade, name
        else:
            assert figures[f"{name} grade"] == truth_grade, name
