"""The phantom beside a real abdominal CT (../shared/data/real_ct/abdomen_3mm) at the same 3 mm spacing.

Compares HU distributions of vertebral bodies, discs, fat and muscle, and
vertebral body sizes per level; writes the figures (JSON), a histogram plot
and a mid-sagittal PNG of each into the test's output folder.
"""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from inference.levels import LEVEL_NAMES  # noqa: E402
from inference.phantom import abdominal_ct, generate_phantom  # noqa: E402
from inference.phantom.physics import Tissue  # noqa: E402

SPACING_MM = 3.0
FAT_HU, MUSCLE_HU = (-190, -30), (-29, 150)
"""Adipose and skeletal-muscle windows used in body-composition CT (Mitsiopoulos et al., J Appl Physiol 1998)."""
LEVELS = (19, 20, 21, 22)  # T12, L1, L2, L3: complete in both


def _on_3mm_lps(image: sitk.Image, interpolator: int) -> np.ndarray:
    oriented = sitk.DICOMOrient(image, "LPS")
    size = [int(round(n * s / SPACING_MM)) for n, s in zip(oriented.GetSize(), oriented.GetSpacing())]
    reference = sitk.Image(size, sitk.sitkUInt8)
    reference.SetSpacing((SPACING_MM,) * 3)
    reference.SetOrigin(oriented.GetOrigin())
    default = -1024.0 if interpolator == sitk.sitkLinear else 0.0
    return sitk.GetArrayFromImage(sitk.Resample(oriented, reference, sitk.Transform(), interpolator, default))


def _percentiles(values: np.ndarray) -> list[float]:
    return [round(float(v), 1) for v in np.percentile(values, [5, 50, 95])]


def _body_size(bodies: np.ndarray, label: int) -> dict[str, float]:
    """Volume, and depth and width in the axial slice through the body's centre."""
    mask = bodies == label
    k = int(round(np.nonzero(mask.any(axis=(1, 2)))[0].mean()))
    rows, columns = np.nonzero(mask[k])
    return {"volume_ml": round(float(mask.sum()) * SPACING_MM ** 3 / 1000, 1),
            "depth_mm": float(np.ptp(rows) + 1) * SPACING_MM, "width_mm": float(np.ptp(columns) + 1) * SPACING_MM}


def _figures(ct: np.ndarray, bodies: np.ndarray, discs: np.ndarray) -> dict:
    inside = ct > -500
    fat = inside & (ct >= FAT_HU[0]) & (ct <= FAT_HU[1])
    muscle = inside & (ct >= MUSCLE_HU[0]) & (ct <= MUSCLE_HU[1])
    return {
        "bodies_hu_p5_p50_p95": _percentiles(ct[bodies > 0]),
        "discs_hu_p5_p50_p95": _percentiles(ct[discs]),
        "fat_hu_median": round(float(np.median(ct[fat])), 1), "fat_fraction": round(float(fat.mean() / inside.mean()), 3),
        "muscle_hu_median": round(float(np.median(ct[muscle])), 1),
        "muscle_fraction": round(float(muscle.mean() / inside.mean()), 3),
        "bodies": {LEVEL_NAMES[label]: _body_size(bodies, label) for label in LEVELS},
    }


def _sagittal_png(ct: np.ndarray, labels: np.ndarray, path, title: str) -> None:
    column = int(round(np.nonzero(labels)[2].mean()))
    figure, axes = plt.subplots(figsize=(5, 6))
    axes.imshow(ct[::-1, :, column], cmap="gray", vmin=-250, vmax=750)
    axes.contour((labels[::-1, :, column] > 0).astype(float), [0.5], colors="red", linewidths=0.6)
    axes.set_title(title)
    axes.set_axis_off()
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


@pytest.fixture(scope="module")
def real(shared_data):
    folder = shared_data / "real_ct" / "abdomen_3mm"
    ct = _on_3mm_lps(sitk.ReadImage(str(folder / "ct.nii.gz")), sitk.sitkLinear)
    vertebrae = _on_3mm_lps(sitk.ReadImage(str(folder / "reference_vertebrae.nii.gz")), sitk.sitkNearestNeighbor)
    parts = _on_3mm_lps(sitk.ReadImage(str(folder / "reference_vertebrae_body.nii.gz")), sitk.sitkNearestNeighbor)
    return ct, vertebrae * (parts == 1), parts == 2


@pytest.fixture(scope="module")
def phantom():
    phantom = generate_phantom(abdominal_ct(seed=11, shape=(256, 256, 200)))
    ct = _on_3mm_lps(phantom.image, sitk.sitkLinear)
    bodies = _on_3mm_lps(phantom.bodies, sitk.sitkNearestNeighbor)
    tissues = _on_3mm_lps(phantom.tissues, sitk.sitkNearestNeighbor)
    return ct, bodies, tissues == Tissue.DISC


def test_phantom_is_in_the_range_of_a_real_abdominal_ct(real, phantom, output_dir):
    real_figures, phantom_figures = _figures(*real), _figures(*phantom)
    (output_dir / "figures.json").write_text(json.dumps({"real": real_figures, "phantom": phantom_figures}, indent=1))
    _sagittal_png(real[0], real[1], output_dir / "real_sagittal.png", "real abdomen_3mm")
    _sagittal_png(phantom[0], phantom[1], output_dir / "phantom_sagittal.png", "phantom (3 mm)")
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for (ct, bodies, discs), name in ((real, "real"), (phantom, "phantom")):
        axes[0].hist(ct[bodies > 0], bins=80, range=(-100, 700), histtype="step", density=True, label=f"{name} bodies")
        axes[0].hist(ct[discs], bins=80, range=(-100, 700), histtype="step", density=True, label=f"{name} discs")
        axes[1].hist(ct[ct > -500], bins=100, range=(-250, 250), histtype="step", density=True, label=name)
    axes[0].legend(), axes[1].legend(), axes[1].set_title("soft tissue inside the body")
    figure.savefig(output_dir / "histograms.png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    print(json.dumps({"real": real_figures, "phantom": phantom_figures}))

    for key, tolerance in (("bodies_hu_p5_p50_p95", (80, 40, 80)), ("discs_hu_p5_p50_p95", (25, 20, 150))):
        for real_value, phantom_value, allowed in zip(real_figures[key], phantom_figures[key], tolerance):
            assert abs(real_value - phantom_value) <= allowed, (key, real_value, phantom_value)
    assert abs(real_figures["fat_hu_median"] - phantom_figures["fat_hu_median"]) <= 15
    assert abs(real_figures["muscle_hu_median"] - phantom_figures["muscle_hu_median"]) <= 15
    assert abs(real_figures["fat_fraction"] - phantom_figures["fat_fraction"]) <= 0.15
    assert abs(real_figures["muscle_fraction"] - phantom_figures["muscle_fraction"]) <= 0.15
    for level, real_size in real_figures["bodies"].items():
        ratios = {key: phantom_figures["bodies"][level][key] / value for key, value in real_size.items()}
        assert 0.7 <= ratios["volume_ml"] <= 1.3, (level, ratios)
        assert 0.75 <= ratios["depth_mm"] <= 1.25 and 0.75 <= ratios["width_mm"] <= 1.25, (level, ratios)
