"""Cut-offs, heights on synthetic bodies with known geometry, and internal calibration failures."""

from __future__ import annotations

import numpy as np
import pytest

from inference.measure import CalibrationError, genant_grade, internal_calibration, l1_attenuation_category, vbmd_category
from inference.measure.heights import body_geometry, measure_heights


@pytest.mark.parametrize(("hu", "category"), [
    (80.0, "osteoporosis likely"), (109.9, "osteoporosis likely"), (110.0, "indeterminate"),
    (160.0, "indeterminate"), (160.1, "normal likely"),
])
def test_l1_attenuation_cut_offs_pickhardt_2013(hu: float, category: str) -> None:
    assert l1_attenuation_category(hu) == category


@pytest.mark.parametrize(("vbmd", "category"), [
    (79.9, "osteoporosis"), (80.0, "low"), (120.0, "low"), (120.1, "normal"),
])
def test_acr_qct_categories(vbmd: float, category: str) -> None:
    assert vbmd_category(vbmd) == category


@pytest.mark.parametrize(("loss", "grade"), [(0.19, 0), (0.20, 1), (0.249, 1), (0.25, 2), (0.399, 2), (0.40, 3)])
def test_genant_grade_thresholds(loss: float, grade: int) -> None:
    assert genant_grade(loss) == grade


def _spine(tilt_deg: float, anterior_loss: float = 0.0, spacing=(1.0, 0.8, 0.8)) -> dict:
    """Three stacked boxes (24 mm high, 30 deep, 40 wide) along an axis tilted in the sagittal plane.

    The middle body (id 20) loses ``anterior_loss`` of its height at the anterior wall (a wedge).
    Returns geometries keyed by VerSe id and the true heights of the middle body.
    """
    shape = (180, 140, 90)  # z, y, x
    z, y, x = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, spacing)), indexing="ij")
    tilt = np.deg2rad(tilt_deg)
    axis = np.array([0.0, np.sin(tilt), np.cos(tilt)])  # (x, y, z) LPS, superior
    posterior = np.array([0.0, np.cos(tilt), -np.sin(tilt)])
    centre0 = np.array([36.0, 56.0, 90.0])
    geometries, truth = {}, {}
    for k, vid in enumerate((19, 20, 21)):
        centre = centre0 + (1 - k) * 32.0 * axis
        rel = np.stack([x - centre[0], y - centre[1], z - centre[2]], axis=-1)
        u, v, w = rel @ axis, rel @ posterior, rel[..., 0]
        depth_fraction = (v + 15.0) / 30.0
        top = 12.0 - (anterior_loss * 24.0 * (1 - depth_fraction) if vid == 20 else 0.0)
        mask = (np.abs(w) <= 20) & (np.abs(v) <= 15) & (u >= -12.0) & (u < top)
        zs, ys, xs = np.nonzero(mask)
        box = (slice(zs.min(), zs.max() + 1), slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        geometries[vid] = body_geometry(mask[box], (zs.min(), ys.min(), xs.min()), (0.0, 0.0, 0.0),
                                        spacing[::-1], (1, 0, 0, 0, 1, 0, 0, 0, 1))
        if vid == 20:
            truth = {f: 24.0 - anterior_loss * 24.0 * (1 - p) for f, p in (("anterior", 0.1), ("middle", 0.5),
                                                                           ("posterior", 0.9))}
    return geometries, truth


@pytest.mark.parametrize("tilt_deg", [0.0, 12.0, -20.0])
def test_heights_along_a_tilted_spine(tilt_deg: float) -> None:
    geometries, truth = _spine(tilt_deg)
    heights, grade = measure_heights(geometries)[20]
    assert (heights.anterior_mm, heights.middle_mm, heights.posterior_mm) == pytest.approx(
        (truth["anterior"], truth["middle"], truth["posterior"]), abs=1.0)
    assert grade == 0 and heights.crush_ratio == pytest.approx(1.0, abs=0.05)


def test_wedge_fracture_is_graded_against_the_posterior_height() -> None:
    geometries, truth = _spine(8.0, anterior_loss=0.35)
    heights, grade = measure_heights(geometries)[20]
    assert heights.anterior_mm == pytest.approx(truth["anterior"], abs=1.0)
    assert heights.wedge_ratio == pytest.approx(truth["anterior"] / truth["posterior"], abs=0.05)
    assert grade == 2


def test_calibration_needs_reference_tissue() -> None:
    bone = np.full((6, 40, 40), 300.0, dtype=np.float32)
    bodies = np.zeros(bone.shape, dtype=bool)
    bodies[:, 15:25, 15:25] = True
    with pytest.raises(CalibrationError, match="reference tissue found"):
        internal_calibration(bone, bodies, bodies, (1.0, 1.0, 1.0))
    with pytest.raises(CalibrationError, match="no vertebral body"):
        internal_calibration(bone, bodies, np.zeros_like(bodies), (1.0, 1.0, 1.0))
