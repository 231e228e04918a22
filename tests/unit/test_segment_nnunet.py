"""The nnunet backend: nnU-Net v2's own predictor on a tiny trained-model folder the tests make.

No trained weights can be downloaded here, so the model folder is laid out as
``nnUNetv2_train`` writes one (tests/nnunet_model.py: plans for a two-stage
PlainConvUNet, weights from a fixed seed) and run through nnunetv2's real
loading and prediction code. The tests prove the plumbing, not accuracy: the
output lies on the input grid whatever the input's orientation, nnU-Net label
values become VerSe ids by their names (or by the folder's explicit map),
organs are left out, and a broken folder is refused with a message that says
what is wrong.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from inference.phantom import abdominal_ct, generate_phantom
from inference.segment import segment_volume
from inference.segment.network_labels import order_warnings
from inference.segment.nnunet import NnUNetModelError, load_nnunet, read_label_map
from inference.segment.nnunet.predict import predict_label_values
from inference.segment.unet.preprocess import model_grid, resample_image
from scpnode.cli import main
from tests.nnunet_model import write_tiny_model


pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("nnunet"))


@pytest.fixture(scope="module")
def phantom():
    """A small abdominal phantom: 2 mm pixels, 4 mm slices, LPS."""
    return generate_phantom(abdominal_ct(seed=3, shape=(112, 112, 64), pixel_spacing_mm=2.0,
                                         slice_spacing_mm=4.0, slice_thickness_mm=4.0))


@pytest.fixture(scope="module")
def lps_result(phantom, model_dir):
    return segment_volume(phantom.image, "nnunet", device="cpu", model_dir=model_dir)


def _array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def test_labels_are_verse_ids_of_the_dataset_names_and_organs_are_left_out(phantom, model_dir, lps_result):
    model = load_nnunet(model_dir, "cpu")
    assert model.labels.verse_ids == {1: 21, 2: 20, 3: 19, 4: 18}  # vertebrae_L2 .. vertebrae_T11; liver (5) left out
    raw = predict_label_values(model, resample_image(phantom.image, model_grid(phantom.image, model.spacing_xyz)))
    assert 5 in np.unique(raw), "the untrained network should call some voxels liver for this test to mean anything"
    vertebrae = _array(lps_result.vertebrae)
    found = set(np.unique(vertebrae)) - {0}
    assert found and found <= {18, 19, 20, 21}
    assert found <= {model.labels.verse_ids[v] for v in np.unique(raw) if v in model.labels.verse_ids}
    bodies = _array(lps_result.bodies)
    assert np.all((bodies == 0) | (bodies == vertebrae)), "a body voxel outside its vertebra"
    assert set(np.unique(_array(lps_result.compartments))) <= {0, 1, 2}
    assert lps_result.backend == "nnunet"
    assert lps_result.backend_version.startswith("Dataset900_TinyVertebrae nnUNetTrainer__nnUNetPlans__3d_fullres "
                                                 "folds 0 sha256:")
    assert lps_result.backend_version.endswith("labels:dataset.json names")
    json.dumps(lps_result.to_json())


def test_output_is_on_the_input_grid_in_any_orientation(phantom, model_dir, lps_result):
    """nnU-Net sees the same model-grid image whatever the input's orientation; the labels come back onto each grid."""
    reoriented = sitk.DICOMOrient(phantom.image, "AIR")
    assert reoriented.GetDirection() != phantom.image.GetDirection()
    other = segment_volume(reoriented, "nnunet", device="cpu", model_dir=model_dir)
    for output in (other.vertebrae, other.bodies, other.compartments):
        assert output.GetSize() == reoriented.GetSize()
        assert output.GetOrigin() == reoriented.GetOrigin() and output.GetDirection() == reoriented.GetDirection()
    for ours, theirs in ((lps_result.vertebrae, other.vertebrae), (lps_result.bodies, other.bodies)):
        # the same model-grid input: equal but for a rare argmax tie broken by float rounding
        assert np.mean(_array(sitk.DICOMOrient(theirs, "LPS")) == _array(ours)) >= 0.9999
    assert set(other.levels) == set(lps_result.levels)


def test_explicit_label_map_replaces_the_names(phantom, model_dir, tmp_path):
    folder = tmp_path / model_dir.name
    shutil.copytree(model_dir, folder)
    (folder / "verse_labels.json").write_text(json.dumps(
        {"labels": {"vertebrae_L2": 18, "vertebrae_L1": 19, "vertebrae_T12": 20, "vertebrae_T11": 21}}))
    model = load_nnunet(folder, "cpu")
    assert model.labels.verse_ids == {1: 18, 2: 19, 3: 20, 4: 21}
    result = segment_volume(phantom.image, "nnunet", device="cpu", model_dir=folder)
    assert result.backend_version.endswith("labels:verse_labels.json")
    assert set(np.unique(_array(result.vertebrae))) - {0} <= {18, 19, 20, 21}


def _transposed_anisotropic(plans: dict) -> None:
    """Array axes (z, y, x) at 6, 4, 3 mm, planned transposed to (x, z, y), as nnU-Net stores them."""
    plans["transpose_forward"], plans["transpose_backward"] = [2, 0, 1], [1, 2, 0]
    plans["configurations"]["3d_fullres"]["spacing"] = [3.0, 6.0, 4.0]


def test_model_spacing_follows_the_plans_transposition(phantom, model_dir, tmp_path):
    folder = tmp_path / model_dir.name
    shutil.copytree(model_dir, folder)
    _edit_json(folder / "plans.json", _transposed_anisotropic)
    assert load_nnunet(folder, "cpu").spacing_xyz == (3.0, 4.0, 6.0)
    result = segment_volume(phantom.image, "nnunet", device="cpu", model_dir=folder)
    assert result.vertebrae.GetSize() == phantom.image.GetSize()
    assert set(np.unique(_array(result.vertebrae))) - {0} <= {18, 19, 20, 21}


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _rename_labels(data: dict) -> None:
    data["labels"] = {"background": 0, "vert_L2": 1, "vert_L1": 2, "vert_T12": 3, "vert_T11": 4, "liver": 5}


def _unknown_vertebra(data: dict) -> None:
    data["labels"]["vertebrae_X9"] = data["labels"].pop("liver")


def _second_channel(data: dict) -> None:
    data["channel_names"]["1"] = "PET"


def _move_checkpoint(folder: Path) -> None:
    (folder / "fold_0" / "checkpoint_final.pth").rename(folder / "fold_0" / "checkpoint_best.pth")


@pytest.mark.parametrize(("damage", "message"), [
    (lambda d: shutil.rmtree(d), "nnU-Net model folder not found"),
    (_move_checkpoint, "no fold_N/checkpoint_final.pth (found only fold_0/checkpoint_best.pth)"),
    (lambda d: (d / "plans.json").unlink(), "no plans.json; not an nnU-Net trained-model folder"),
    (lambda d: (d / "dataset.json").write_text("{not json"), "dataset.json: cannot read"),
    (lambda d: _edit_json(d / "dataset.json", _rename_labels),
     "the model's labels (dataset.json names) have no T11, T12, L1, L2 (expected names such as vertebrae_T11)"),
    (lambda d: _edit_json(d / "dataset.json", _unknown_vertebra), "unknown vertebra label name(s) vertebrae_X9"),
    (lambda d: _edit_json(d / "dataset.json", _second_channel),
     "the model takes 2 input channels (CT, PET); the node gives it one, the CT"),
    (lambda d: (d / "verse_labels.json").write_text(json.dumps({"labels": {"vertebrae_L9": 20}})),
     "verse_labels.json: label(s) vertebrae_L9 not in the model's dataset.json"),
    (lambda d: (d / "verse_labels.json").write_text(json.dumps({"labels": {"vertebrae_L1": 27}})),
     "vertebrae_L1=27: not VerSe vertebra ids"),
    (lambda d: (d / "verse_labels.json").write_text(json.dumps({"labels": {"vertebrae_L1": 20}})),
     "(verse_labels.json) have no T11, T12, L2"),
    (lambda d: (d / "fold_0" / "checkpoint_final.pth").write_bytes(b"garbage"), "nnU-Net cannot load this model"),
])
def test_broken_model_folder_is_refused_clearly(phantom, model_dir, tmp_path, damage, message):
    folder = tmp_path / model_dir.name
    shutil.copytree(model_dir, folder)
    damage(folder)
    with pytest.raises(NnUNetModelError) as error:
        segment_volume(phantom.image, "nnunet", device="cpu", model_dir=folder)
    assert message in str(error.value)


def test_weights_for_other_input_channels_are_refused(phantom, tmp_path):
    """dataset.json says one CT channel, the checkpoint's first convolution takes two: nnU-Net's loader fails."""
    folder = write_tiny_model(tmp_path, weight_channels=2)
    with pytest.raises(NnUNetModelError, match="nnU-Net cannot load this model .RuntimeError: Error"):
        segment_volume(phantom.image, "nnunet", device="cpu", model_dir=folder)


def test_no_model_folder_is_a_clear_error(phantom):
    with pytest.raises(NnUNetModelError, match="the nnunet backend needs an nnU-Net trained-model folder"):
        segment_volume(phantom.image, "nnunet", device="cpu", model_dir=None)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_gpu_is_a_clear_error(phantom, model_dir):
    with pytest.raises(ValueError, match="no CUDA GPU"):
        segment_volume(phantom.image, "nnunet", device="cuda", model_dir=model_dir)


def test_segment_command_runs_the_nnunet_backend(phantom, model_dir, tmp_path, capsys):
    ct = tmp_path / "ct.nii.gz"
    sitk.WriteImage(phantom.image, str(ct))
    out = tmp_path / "seg"
    assert main(["segment", str(ct), "--out", str(out), "--backend", "nnunet", "--model-dir", str(model_dir),
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "(nnunet," in printed and "nnUNet_raw" not in printed  # nnunetv2's import notes stay out
    document = json.loads((out / "segmentation.json").read_text())
    assert document["backend"] == "nnunet" and "sha256:" in document["backend_version"]
    assert sitk.ReadImage(str(out / "vertebrae.nii.gz")).GetSize() == phantom.image.GetSize()
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "dataset.json").unlink()
    assert main(["segment", str(ct), "--out", str(tmp_path / "seg2"), "--backend", "nnunet",
                 "--model-dir", str(broken)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("scpnode segment: ") and "no dataset.json" in error and len(error.splitlines()) == 1


def test_totalsegmentator_names_map_to_verse_ids(tmp_path):
    """The 117 classes of TotalSegmentator's fast model: vertebrae and sacrum kept, organs and ribs left out."""
    names = ["spleen", "liver", "sacrum", "vertebrae_S1", *[f"vertebrae_L{i}" for i in range(5, 0, -1)],
             *[f"vertebrae_T{i}" for i in range(12, 0, -1)], *[f"vertebrae_C{i}" for i in range(7, 0, -1)],
             "rib_left_12", "spinal_cord"]
    dataset = {"labels": {"background": 0, **{name: value for value, name in enumerate(names, start=1)}}}
    label_map = read_label_map(tmp_path, dataset)
    by_name = {name: label_map.verse_ids.get(dataset["labels"][name]) for name in names}
    assert by_name["sacrum"] == by_name["vertebrae_S1"] == 26
    assert (by_name["vertebrae_T11"], by_name["vertebrae_T12"], by_name["vertebrae_L1"], by_name["vertebrae_L2"]) \
        == (18, 19, 20, 21)
    assert by_name["vertebrae_C1"] == 1 and by_name["vertebrae_L5"] == 24
    assert by_name["liver"] is None and by_name["rib_left_12"] is None and by_name["spinal_cord"] is None
    table = label_map.lookup_table(len(names))
    assert table[dataset["labels"]["liver"]] == 0 and table[dataset["labels"]["vertebrae_L1"]] == 20


def test_region_based_labels_are_refused(tmp_path):
    with pytest.raises(NnUNetModelError, match=r"region-based labels \(vertebrae\) are not supported"):
        read_label_map(tmp_path, {"labels": {"background": 0, "vertebrae": [1, 2]}})


def test_labels_out_of_cranio_caudal_order_are_named():
    reference = sitk.Image([4, 4, 12], sitk.sitkUInt8)  # identity direction: larger z index is superior
    verse = np.zeros((12, 4, 4), dtype=np.uint8)
    verse[8:11], verse[4:7], verse[0:3] = 18, 20, 19  # T11 on top, then L1 above T12
    assert order_warnings(verse, reference, "nnU-Net") == [
        "nnU-Net level labels out of cranio-caudal order (T12 is not above L1); check the labelling"]
    verse[4:7], verse[0:3] = 19, 20
    assert order_warnings(verse, reference, "nnU-Net") == []
