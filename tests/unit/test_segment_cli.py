"""``scpnode segment`` on real input: a series that misses T11-L2, and bad input."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from scpnode.cli import main


def test_series_without_t11_l2_is_a_result_not_an_error(shared_data: Path, tmp_path: Path, capsys):
    """20 real JPEG 2000 slices of a PET/CT: too short to identify any level."""
    out = tmp_path / "seg"
    assert main(["segment", str(shared_data / "real_ct" / "pet_ct_slices"), "--out", str(out)]) == 0
    document = json.loads((out / "segmentation.json").read_text())
    assert document["levels_not_in_view"] == ["T11", "T12", "L1", "L2"]
    assert not any(name in document["levels"] for name in ("T11", "T12", "L1", "L2"))
    assert document["backend"] == "anatomical"
    assert "levels not in view" in capsys.readouterr().out
    vertebrae = sitk.ReadImage(str(out / "vertebrae.nii.gz"))
    assert vertebrae.GetSize() == (512, 512, 20)


def test_broken_nifti_gives_one_line_error(tmp_path: Path, capsys):
    path = tmp_path / "broken.nii"
    image = sitk.GetImageFromArray(np.random.default_rng(0).uniform(-1000, 1000, (10, 10, 10)).astype(np.float32))
    sitk.WriteImage(image, str(path))
    raw = bytearray(path.read_bytes())
    struct.pack_into("<hh", raw, 252, 0, 1)  # qform_code 0, sform_code 1 ...
    struct.pack_into("<12f", raw, 280, *([0.0] * 12))  # ... with a singular sform
    path.write_bytes(bytes(raw))
    assert main(["segment", str(path), "--out", str(tmp_path / "seg")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("scpnode segment: ") and len(error.splitlines()) == 1
    assert not (tmp_path / "seg").exists()


def test_not_a_volume_and_unknown_backend(tmp_path: Path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    assert main(["segment", str(text), "--out", str(tmp_path / "a")]) == 2
    assert "expected a DICOM series folder or a NIfTI file" in capsys.readouterr().err
    nifti = tmp_path / "ct.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((5, 8, 8), 400.0, np.float32)), str(nifti))
    assert main(["segment", str(nifti), "--out", str(tmp_path / "b"), "--backend", "magic"]) == 2
    assert "unknown backend 'magic'" in capsys.readouterr().err


def test_model_folder_that_is_not_a_model(shared_data: Path, tmp_path: Path, capsys):
    empty = tmp_path / "model"
    empty.mkdir()
    ct = shared_data / "real_ct" / "abdomen_3mm" / "ct.nii.gz"
    assert main(["segment", str(ct), "--out", str(tmp_path / "seg"), "--backend", "unet", "--model-dir", str(empty)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("scpnode segment: ") and "model" in error and len(error.splitlines()) == 1


def test_lowest_level_names_a_crop_without_ribs_or_sacrum(shared_data: Path, tmp_path: Path, capsys):
    crop = shared_data / "real_ct" / "verse012_spine_crop" / "sub-verse012_ct.nii.gz"
    out = tmp_path / "seg"
    assert main(["segment", str(crop), "--out", str(out), "--lowest-level", "L3"]) == 0
    document = json.loads((out / "segmentation.json").read_text())
    assert document["levels"]["L1"]["anchors"] == ["given"]
    assert document["anchors"] == [{"kind": "given", "level": "L3", "agrees": True,
                                    "detail": "the lowest vertebra in view stated to be L3"}]
    assert "levels counted from: given (L3)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:
        main(["segment", str(crop), "--out", str(out), "--lowest-level", "L9"])
    assert refused.value.code == 2 and "invalid choice: 'L9'" in capsys.readouterr().err


def _validation_cases(tmp_path: Path, shared_data: Path, reference: Path) -> Path:
    folder = shared_data / "real_ct" / "abdomen_3mm"
    cases = tmp_path / "cases.csv"
    cases.write_text(
        "name,image,reference,reference_bodies,body_values,lowest_level,note\n"
        f"abdomen,{folder / 'ct.nii.gz'},{reference},{folder / 'reference_vertebrae_body.nii.gz'},1,,real\n"
        f"unlabelled,{shared_data / 'real_ct' / 'tcia_chest_abdomen_dicom'},,,,,no labels\n"
        f"missing,{tmp_path / 'nowhere.nii.gz'},{reference},,,,broken row\n")
    return cases


def test_segment_validate_reports_levels_dice_and_pictures(shared_data: Path, tmp_path: Path, capsys):
    reference = shared_data / "real_ct" / "abdomen_3mm" / "reference_vertebrae.nii.gz"
    out = tmp_path / "validation"
    code = main(["segment-validate", str(_validation_cases(tmp_path, shared_data, reference)), "--out", str(out)])
    assert code == 1  # the broken row could not be run
    rows = {(r["case"], r["level"]): r for r in __import__("csv").DictReader((out / "validation.csv").open())}
    assert rows[("abdomen", "L1")]["right"] == "True" and float(rows[("abdomen", "L1")]["body_dice"]) >= 0.85
    assert rows[("abdomen", "T11")]["reference_complete"] == "False"  # a fragment at the top edge
    summary = json.loads((out / "summary.json").read_text())
    assert summary["confident_wrong"] == 0 and summary["studies"] == 2 and len(summary["failed"]) == 1
    assert summary["flagged_for_review"] == 1  # the unlabelled TCIA series: one rib anchor
    assert (out / "abdomen-anatomical.png").stat().st_size > 10_000
    assert (out / "unlabelled-anatomical.png").is_file()
    assert "target levels right" in capsys.readouterr().out


def test_segment_validate_fails_on_a_confident_wrong_level(shared_data: Path, tmp_path: Path):
    """A reference one level off: every level is 'wrong' while the backend is sure - exit 1."""
    source = sitk.ReadImage(str(shared_data / "real_ct" / "abdomen_3mm" / "reference_vertebrae.nii.gz"))
    array = sitk.GetArrayFromImage(source)
    shifted = sitk.GetImageFromArray(np.where((array >= 18) & (array <= 24), array + 1, array).astype(np.uint8))
    shifted.CopyInformation(source)
    reference = tmp_path / "shifted.nii.gz"
    sitk.WriteImage(shifted, str(reference))
    cases = tmp_path / "one.csv"
    cases.write_text(f"image,reference\n{shared_data / 'real_ct' / 'abdomen_3mm' / 'ct.nii.gz'},{reference}\n")
    assert main(["segment-validate", str(cases), "--out", str(tmp_path / "v")]) == 1
    summary = json.loads((tmp_path / "v" / "summary.json").read_text())
    assert summary["confident_wrong"] >= 1 and "labelled L1" in summary["confident_wrong_levels"][-1]
