"""``scpnode analyze`` on the real abdominal CT: with a reused segmentation folder, segmenting itself, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import SimpleITK as sitk

from inference.results import SegmentationResult
from inference.segment.compartments import split_compartments
from inference.segment.io import write_segmentation
from inference.segment.levels import describe_levels
from scpnode.cli import main


@pytest.fixture(scope="module")
def ct_and_seg(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """abdomen_3mm and a segmentation folder made from its reference labels."""
    folder = shared_data / "real_ct" / "abdomen_3mm"
    image = sitk.ReadImage(str(folder / "ct.nii.gz"), sitk.sitkFloat32)
    vertebrae = sitk.Cast(sitk.ReadImage(str(folder / "reference_vertebrae.nii.gz")), sitk.sitkUInt8)
    bodies = sitk.Cast(vertebrae * sitk.Cast(sitk.ReadImage(str(folder / "reference_vertebrae_body.nii.gz")) == 1,
                                             sitk.sitkUInt8), sitk.sitkUInt8)
    seg = SegmentationResult(vertebrae=vertebrae, bodies=bodies, compartments=split_compartments(image, bodies),
                             levels=describe_levels(vertebrae, bodies).levels, backend="reference")
    return folder / "ct.nii.gz", write_segmentation(seg, tmp_path_factory.mktemp("seg"))


def test_analyze_with_seg_writes_measurements_json(ct_and_seg, tmp_path: Path, capsys) -> None:
    ct, seg_dir = ct_and_seg
    assert main(["analyze", str(ct), "--seg", str(seg_dir), "--out", str(tmp_path), "--profile", "yu2025"]) == 0
    document = json.loads((tmp_path / "measurements.json").read_text())
    assert document["provenance"]["model"] == {"id": "che2025-published", "version": "1.0.0", "calibrated": False,
                                               "profile": "che2025"}
    assert document["provenance"]["segmentation"]["backend"] == "reference"
    l1 = document["levels"]["L1"]
    assert l1["complete"] and l1["vbmd_mg_cm3"] > 0 and l1["heights"]["posterior_mm"] > 15
    assert set(l1["features"]) == {"cortical", "cancellous", "body"} and len(l1["features"]["body"]) == 107
    assert set(l1["radscores"]) == {"cortical", "cancellous"}
    assert document["score"]["probability"] is None and document["score"]["calibrated"] is False
    assert "UNCALIBRATED" in capsys.readouterr().out


def test_analyze_measures_the_levels_asked_for(ct_and_seg, tmp_path: Path, capsys) -> None:
    ct, seg_dir = ct_and_seg
    assert main(["analyze", str(ct), "--seg", str(seg_dir), "--out", str(tmp_path), "--profile", "yu2025",
                 "--levels", "L1", "L2", "L3"]) == 0
    levels = json.loads((tmp_path / "measurements.json").read_text())["levels"]
    assert set(levels) == {"L1", "L2", "L3"} and levels["L3"]["complete"]
    assert len(levels["L3"]["features"]["body"]) == 107 and levels["L3"]["vbmd_mg_cm3"] > 0
    assert main(["analyze", str(ct), "--seg", str(seg_dir), "--out", str(tmp_path), "--levels", "S1"]) == 2
    assert "S1 not among T10" in capsys.readouterr().err


def test_analyze_segments_when_no_seg_is_given(ct_and_seg, tmp_path: Path) -> None:
    ct, _ = ct_and_seg
    assert main(["analyze", str(ct), "--out", str(tmp_path)]) == 0
    document = json.loads((tmp_path / "measurements.json").read_text())
    assert document["provenance"]["segmentation"]["backend"] == "anatomical"
    assert document["levels"]["L1"]["complete"] and document["l1_attenuation_hu"] is not None


def test_analyze_refuses_bad_input_with_one_line(ct_and_seg, tmp_path: Path, capsys) -> None:
    ct, seg_dir = ct_and_seg
    assert main(["analyze", str(tmp_path / "missing.nii.gz"), "--out", str(tmp_path)]) == 2
    assert "input not found" in capsys.readouterr().err
    assert main(["analyze", str(ct), "--seg", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "not a segmentation folder" in capsys.readouterr().err
    assert main(["analyze", str(ct), "--seg", str(seg_dir), "--model", "no-such-model", "--out", str(tmp_path)]) == 2
    assert "radscore model 'no-such-model' not found" in capsys.readouterr().err
    small = tmp_path / "small.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(ct))[:60, :, :], str(small))
    assert main(["analyze", str(small), "--seg", str(seg_dir), "--out", str(tmp_path)]) == 2
    assert "does not match the input" in capsys.readouterr().err
    assert not (tmp_path / "measurements.json").exists()
