"""``scpnode segment`` on real input: a series that misses T11-L2, and bad input."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
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
