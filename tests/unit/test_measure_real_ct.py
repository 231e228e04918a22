"""Real CT (abdomen_3mm): our per-level HU and heights beside TotalSegmentator's spine report for the same scan.

The reference labels are TotalSegmentator's (converted to VerSe ids), so both
measure the same vertebral bodies; differences come from the region each
figure is read in and from the 3 mm voxels. The table goes to output_dir.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import SimpleITK as sitk

from inference.measure import measure_study
from inference.models import load_model
from inference.results import SegmentationResult
from inference.segment.compartments import split_compartments
from inference.segment.levels import describe_levels
from inference.volume import load_volume

TOTALSEGMENTATOR_REPORT = {
    "L1": {"mean_hu": 132.6, "median_hu": 110.0, "posterior_mm": 27.0, "middle_mm": 24.0, "anterior_mm": 21.0},
    "L2": {"mean_hu": 131.6, "median_hu": 122.0, "posterior_mm": 25.5, "middle_mm": 24.0, "anterior_mm": 28.5},
    "L3": {"mean_hu": 131.9, "median_hu": None, "posterior_mm": 24.0, "middle_mm": 22.5, "anterior_mm": 28.5},
}
"""TotalSegmentator's spine report for this scan (its tests/reference_files, commit 0e65a448)."""
VOXEL_MM = 3.0


@pytest.fixture(scope="module")
def abdomen(shared_data: Path):
    folder = shared_data / "real_ct" / "abdomen_3mm"
    image = load_volume(folder / "ct.nii.gz")
    vertebrae = sitk.Cast(sitk.ReadImage(str(folder / "reference_vertebrae.nii.gz")), sitk.sitkUInt8)
    body_or_disc = sitk.ReadImage(str(folder / "reference_vertebrae_body.nii.gz"))
    bodies = sitk.Cast(vertebrae * sitk.Cast(body_or_disc == 1, sitk.sitkUInt8), sitk.sitkUInt8)
    seg = SegmentationResult(vertebrae=vertebrae, bodies=bodies, compartments=split_compartments(image, bodies),
                             levels=describe_levels(vertebrae, bodies).levels, backend="TotalSegmentator reference")
    return measure_study(image, seg, load_model("che2025-published"), levels=("T11", "T12", "L1", "L2", "L3"))


def test_per_level_hu_and_heights_beside_totalsegmentator(abdomen, output_dir: Path) -> None:
    rows = {}
    for name, reference in TOTALSEGMENTATOR_REPORT.items():
        level = abdomen.levels[name]
        rows[name] = {
            "totalsegmentator": reference,
            "ours": {
                "body_mean_hu": level.body.mean_hu, "body_median_hu": level.body.median_hu,
                "cancellous_mean_hu": level.cancellous.mean_hu, "cancellous_median_hu": level.cancellous.median_hu,
                "trabecular_mean_hu": level.trabecular_hu, "vbmd_mg_cm3": level.vbmd_mg_cm3,
                "posterior_mm": level.heights.posterior_mm, "middle_mm": level.heights.middle_mm,
                "anterior_mm": level.heights.anterior_mm, "genant_grade": level.genant_grade,
            },
        }
    (output_dir / "abdomen_3mm_vs_totalsegmentator.json").write_text(json.dumps(rows, indent=2))
    lines = ["| level | TS mean/median HU | ours body mean/median | ours cancellous mean/median | ours trabecular |"
             " TS P/M/A mm | ours P/M/A mm |", "|" + "---|" * 7]
    for name, row in rows.items():
        ts, us = row["totalsegmentator"], row["ours"]
        lines.append(f"| {name} | {ts['mean_hu']}/{ts['median_hu']} | {us['body_mean_hu']:.1f}/{us['body_median_hu']:.0f}"
                     f" | {us['cancellous_mean_hu']:.1f}/{us['cancellous_median_hu']:.0f} | {us['trabecular_mean_hu']:.1f}"
                     f" | {ts['posterior_mm']}/{ts['middle_mm']}/{ts['anterior_mm']}"
                     f" | {us['posterior_mm']:.1f}/{us['middle_mm']:.1f}/{us['anterior_mm']:.1f} |")
    (output_dir / "abdomen_3mm_vs_totalsegmentator.md").write_text("\n".join(lines) + "\n")
    for name, row in rows.items():
        ts, us = row["totalsegmentator"], row["ours"]
        # same bodies, different regions: the whole-body and core figures bracket TotalSegmentator's mean
        assert us["cancellous_mean_hu"] - 25 <= ts["mean_hu"] <= us["body_mean_hu"] + 25, name
        for side in ("posterior_mm", "middle_mm", "anterior_mm"):
            assert us[side] == pytest.approx(ts[side], abs=2.5 * VOXEL_MM), (name, side)


def test_incomplete_levels_are_reported_not_measured(abdomen) -> None:
    assert not abdomen.levels["T12"].complete and abdomen.levels["T12"].remarks
    assert abdomen.levels["T12"].heights is None and abdomen.levels["T12"].vbmd_mg_cm3 is None
    assert abdomen.score.levels_used == ["L1", "L2"]
    assert abdomen.l1_attenuation_category in ("indeterminate", "osteoporosis likely", "normal likely")
    assert 60 < abdomen.vbmd_mg_cm3 < 200
