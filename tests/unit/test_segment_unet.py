"""The U-Net backend: train a tiny model on small phantoms, save it, load it, segment.

No public weights can be downloaded here, so these tests prove the loop and the
loading path rather than accuracy: training writes a valid model directory and
learns (validation Dice rises), the backend puts its output on the input grid
in any orientation, labels only what the model knows, and a bad model directory
or bad training data gives a clear error. The network is tiny (channels 4-8-16,
16-voxel patches at 4 mm) so the whole file runs in well under a minute on CPU.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from inference.phantom import abdominal_ct, chest_ct, generate_phantom
from inference.segment import segment_volume
from inference.segment.unet import ModelDirError, load_model, read_spec
from inference.segment.unet.predict import labels_to_input_grid
from inference.segment.unet.preprocess import model_grid
from inference.segment.unet.data import TrainingCase, TrainingDataError, case_key, find_cases, read_cohort_csv
from inference.segment.unet.spec import Architecture
from inference.segment.unet.train import TrainingOptions, train_model
from scpnode.cli import main

TINY = dict(
    spacing_mm=(4.0, 4.0, 4.0),
    patch_size=(16, 16, 16),
    architecture=Architecture(channels=(4, 8, 16), strides=(2, 2), num_res_units=1),
    learning_rate=1e-2,
    samples_per_case=4,
    device="cpu",
)
TINY_CLI = ["--spacing", "4", "--patch", "16", "--channels", "4,8,16", "--strides", "2,2",
            "--res-units", "1", "--lr", "0.01", "--samples-per-case", "4", "--device", "cpu"]


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def phantom_ct(seed: int, kind=abdominal_ct) -> tuple[sitk.Image, sitk.Image, sitk.Image]:
    """A small phantom CT (image, vertebrae, bodies): 2 mm pixels, 4 mm slices, a 224 mm spine-centred field of view."""
    phantom = generate_phantom(kind(seed=seed, shape=(112, 112, 64), pixel_spacing_mm=2.0,
                                    slice_spacing_mm=4.0, slice_thickness_mm=4.0))
    return phantom.image, phantom.vertebrae, phantom.bodies


def write_case(folder: Path, name: str, seed: int, kind=abdominal_ct) -> TrainingCase:
    """Write one phantom case as VerSe-named NIfTI files into images/, labels/, bodies/."""
    image, vertebrae, bodies = phantom_ct(seed, kind)
    paths = []
    for sub, file_name, data in (("images", f"{name}_ct.nii.gz", image),
                                 ("labels", f"{name}_seg-vert_msk.nii.gz", vertebrae),
                                 ("bodies", f"{name}_seg-body_msk.nii.gz", bodies)):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(data, str(folder / sub / file_name))
        paths.append(folder / sub / file_name)
    return TrainingCase(name, *paths)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("unet_data")
    for seed, kind in ((1, abdominal_ct), (2, chest_ct), (3, abdominal_ct)):
        write_case(folder, f"sub-case{seed}", seed, kind)
    return folder


@pytest.fixture(scope="module")
def trained(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    cases = find_cases(data_dir / "images", data_dir / "labels", data_dir / "bodies")
    out = tmp_path_factory.mktemp("unet_model") / "model"
    reports = []
    options = TrainingOptions(epochs=25, labels=(18, 19, 20, 21), **TINY)
    summary = train_model(cases[:2], cases[2:], out, options, progress=reports.append)
    return summary, reports


def test_training_writes_a_model_directory_that_learned(trained):
    summary, reports = trained
    spec = read_spec(summary.model_dir)
    assert {p.name for p in summary.model_dir.iterdir()} >= {"model.json", "model.pt", "last.pt"}
    assert spec.labels == (18, 19, 20, 21)
    assert spec.spacing_mm == (4.0, 4.0, 4.0) and spec.patch_size == (16, 16, 16)
    assert [r.epoch for r in reports] == list(range(1, 26))
    assert spec.provenance["best_epoch"] == summary.best_epoch
    assert set(spec.provenance["validation_dice"]) == {"T11", "T12", "L1", "L2", "body"}
    # the body channel is the easy target: a model that learns at all gets it well above its first epoch
    first, best = reports[0].validation_dice["body"], max(r.validation_dice["body"] for r in reports)
    assert best >= 0.4 and best > first + 0.2, (first, best)
    assert reports[-1].loss < 0.7 * reports[0].loss
    assert summary.best_dice == max(r.mean_dice for r in reports)


def test_backend_segments_on_the_input_grid(trained):
    summary, _ = trained
    image, _, _ = phantom_ct(7)
    result = segment_volume(image, backend="unet", device="cpu", model_dir=summary.model_dir)
    for output in (result.vertebrae, result.bodies, result.compartments):
        assert output.GetSize() == image.GetSize()
        assert output.GetOrigin() == image.GetOrigin() and output.GetDirection() == image.GetDirection()
    vertebrae = sitk.GetArrayFromImage(result.vertebrae)
    bodies = sitk.GetArrayFromImage(result.bodies)
    assert set(np.unique(vertebrae)) <= {0, 18, 19, 20, 21}
    assert np.all((bodies == 0) | (bodies == vertebrae)), "a body voxel outside its vertebra"
    assert set(np.unique(sitk.GetArrayFromImage(result.compartments))) <= {0, 1, 2}
    assert result.backend == "unet"
    assert result.backend_version == load_model(summary.model_dir, "cpu").version
    assert "sha256:" in result.backend_version
    json.dumps(result.to_json())


def test_any_orientation_gives_the_same_labels(trained):
    """A CNN is not orientation invariant: the backend reorients to LPS, so a permuted/flipped copy agrees."""
    summary, _ = trained
    # (2 mm pixels, 4 mm slices: no input voxel centre falls halfway between two 4 mm model voxels,
    # where nearest-neighbour resampling would break the tie differently in each orientation)
    image, _, _ = phantom_ct(8)
    reoriented = sitk.DICOMOrient(image, "PIR")
    assert reoriented.GetDirection() != image.GetDirection()
    direct = segment_volume(image, backend="unet", device="cpu", model_dir=summary.model_dir)
    other = segment_volume(reoriented, backend="unet", device="cpu", model_dir=summary.model_dir)
    assert other.vertebrae.GetSize() == reoriented.GetSize()
    back = sitk.Resample(other.vertebrae, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    agreement = np.mean(sitk.GetArrayFromImage(back) == sitk.GetArrayFromImage(direct.vertebrae))
    assert agreement > 0.99


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_torchscript_weights_load_like_a_state_dict(trained, tmp_path):
    summary, _ = trained
    model = load_model(summary.model_dir, "cpu")
    scripted_dir = tmp_path / "scripted"
    scripted_dir.mkdir()
    traced = torch.jit.trace(model.network, torch.zeros((1, 1, *model.spec.patch_size)))
    traced.save(str(scripted_dir / "model.ts"))
    spec = model.spec.model_copy(update={"weights": "model.ts", "weights_format": "torchscript"})
    (scripted_dir / "model.json").write_text(spec.model_dump_json())
    image, _, _ = phantom_ct(9)
    from_state = segment_volume(image, backend="unet", device="cpu", model_dir=summary.model_dir)
    from_script = segment_volume(image, backend="unet", device="cpu", model_dir=scripted_dir)
    assert np.array_equal(sitk.GetArrayFromImage(from_state.vertebrae), sitk.GetArrayFromImage(from_script.vertebrae))


def _edit_spec(model_dir: Path, **changes) -> None:
    path = model_dir / "model.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(("damage", "message"), [
    (lambda d: shutil.rmtree(d), "not found"),
    (lambda d: (d / "model.json").unlink(), "no model.json"),
    (lambda d: (d / "model.json").write_text("{not json"), "cannot read"),
    (lambda d: _edit_spec(d, format="nnunet"), "format"),
    (lambda d: _edit_spec(d, labels=[18, 99]), "labels: Value error, not VerSe vertebra ids"),
    (lambda d: _edit_spec(d, patch_size=[15, 16, 16]), "multiples of the network's downsampling"),
    (lambda d: _edit_spec(d, spacing_mm=[0, 3, 3]), "spacing_mm"),
    (lambda d: _edit_spec(d, learning_rate=1), "learning_rate: unknown key"),
    (lambda d: (d / "model.pt").unlink(), "weights file 'model.pt' named in model.json is missing"),
    (lambda d: (d / "model.pt").write_bytes(b"garbage"), "not a readable torch state dict"),
    (lambda d: _edit_spec(d, labels=[18, 19, 20]), "weights do not fit the architecture"),
    (lambda d: _edit_spec(d, architecture={"channels": [8, 16, 32], "strides": [2, 2]}), "do not fit"),
])
def test_bad_model_directory_is_a_clear_error(trained, tmp_path, damage, message):
    summary, _ = trained
    model_dir = tmp_path / "model"
    shutil.copytree(summary.model_dir, model_dir)
    damage(model_dir)
    image, _, _ = phantom_ct(1)
    with pytest.raises(ModelDirError, match=message.replace("(", r"\(").replace(")", r"\)")):
        segment_volume(image, backend="unet", device="cpu", model_dir=model_dir)


def test_no_model_directory_is_a_clear_error():
    image, _, _ = phantom_ct(1)
    with pytest.raises(ModelDirError, match="needs a model directory"):
        segment_volume(image, backend="unet", device="cpu", model_dir=None)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_gpu_is_a_clear_error(trained):
    summary, _ = trained
    image, _, _ = phantom_ct(1)
    with pytest.raises(ValueError, match="no CUDA GPU"):
        segment_volume(image, backend="unet", device="cuda", model_dir=summary.model_dir)


def test_resume_continues_the_saved_run(data_dir, tmp_path):
    cases = find_cases(data_dir / "images", data_dir / "labels", data_dir / "bodies")
    out = tmp_path / "model"
    first = train_model(cases[:1], cases[2:], out, TrainingOptions(epochs=2, **TINY))
    with pytest.raises(TrainingDataError, match="already holds a model"):
        train_model(cases[:1], cases[2:], out, TrainingOptions(epochs=3, **TINY))
    reports = []
    resumed = train_model(cases[:1], cases[2:], out, TrainingOptions(epochs=3, **TINY), resume=True,
                          progress=reports.append)
    assert [r.epoch for r in reports] == [3]
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert resumed.history[:2] == first.history
    with pytest.raises(TrainingDataError, match="cannot resume"):
        train_model(cases[:1], cases[2:], tmp_path / "elsewhere", TrainingOptions(epochs=3, **TINY), resume=True)


def test_segment_train_command_with_a_label_subset(data_dir, tmp_path, capsys):
    out = tmp_path / "model"
    rc = main(["segment-train", "--images", str(data_dir / "images"), "--labels", str(data_dir / "labels"),
               "--bodies", str(data_dir / "bodies"), "--out", str(out), "--levels", "T12,L1",
               "--epochs", "2", "--val-fraction", "0.34", *TINY_CLI])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "training on 2 case(s), validating on 1" in printed
    assert "epoch 1/2" in printed and "epoch 2/2" in printed and "val Dice T12" in printed
    assert read_spec(out).labels == (19, 20)
    image, _, _ = phantom_ct(4)
    result = segment_volume(image, backend="unet", device="cpu", model_dir=out)
    assert set(np.unique(sitk.GetArrayFromImage(result.vertebrae))) <= {0, 19, 20}


@pytest.mark.parametrize(("extra", "message"), [
    (["--bodies", "/nonexistent"], "folder not found"),
    ([], "give --images, --labels and --bodies"),
    (["--bodies", "{bodies}", "--patch", "18"], "multiples of the network's downsampling"),
    (["--bodies", "{bodies}", "--levels", "T11,X9"], "unknown vertebral level"),
])
def test_segment_train_command_rejects_bad_input(data_dir, tmp_path, capsys, extra, message):
    extra = [arg.format(bodies=data_dir / "bodies") for arg in extra]
    try:  # argparse reports a bad option value by exiting with code 2, the command by returning 2
        rc = main(["segment-train", "--images", str(data_dir / "images"), "--labels", str(data_dir / "labels"),
                   "--out", str(tmp_path / "model"), "--epochs", "1", *TINY_CLI, *extra])
    except SystemExit as exit_:
        rc = exit_.code
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "model" / "model.json").exists()


def test_case_pairing_follows_verse_names(tmp_path):
    assert case_key(Path("sub-verse004_ct.nii.gz")) == "sub-verse004"
    assert case_key(Path("sub-verse004_seg-vert_msk.nii.gz")) == "sub-verse004"
    assert case_key(Path("sub-ct_label-22_ct.nii.gz")) == case_key(Path("sub-ct_seg-vert_label-22_msk.nii.gz"))
    assert case_key(Path("case01.nii")) == "case01"
    for sub in ("images", "labels", "bodies"):
        (tmp_path / sub).mkdir()
    (tmp_path / "images" / "sub-a_ct.nii.gz").touch()
    (tmp_path / "labels" / "sub-a_seg-vert_msk.nii.gz").touch()
    (tmp_path / "bodies" / "sub-b_seg-body_msk.nii.gz").touch()
    with pytest.raises(TrainingDataError, match="sub-a, sub-b"):
        find_cases(tmp_path / "images", tmp_path / "labels", tmp_path / "bodies")


def test_cohort_csv_and_masks_off_the_image_grid(data_dir, tmp_path):
    csv_path = tmp_path / "cohort.csv"
    rel = data_dir
    csv_path.write_text(
        "image,vertebrae,bodies,split\n"
        f"{rel}/images/sub-case1_ct.nii.gz,{rel}/labels/sub-case1_seg-vert_msk.nii.gz,"
        f"{rel}/bodies/sub-case1_seg-body_msk.nii.gz,train\n"
        f"{rel}/images/sub-case2_ct.nii.gz,{rel}/labels/sub-case2_seg-vert_msk.nii.gz,"
        f"{rel}/bodies/sub-case2_seg-body_msk.nii.gz,val\n"
    )
    train, val = read_cohort_csv(csv_path)
    assert len(train) == 1 and len(val) == 1

    shifted = sitk.ReadImage(str(val[0].vertebrae))
    shifted.SetOrigin((0.0, 0.0, 0.0))
    sitk.WriteImage(shifted, str(tmp_path / "shifted.nii.gz"))
    bad = TrainingCase("bad", val[0].image, tmp_path / "shifted.nii.gz", val[0].bodies)
    with pytest.raises(TrainingDataError, match="is not on the grid of"):
        train_model(train, [bad], tmp_path / "model", TrainingOptions(epochs=1, **TINY))


def test_labels_return_to_a_finer_input_grid_with_smooth_borders():
    """Model-grid labels (1.5 mm) back on a 1 mm CT: per-label linear interpolation beats nearest neighbour."""
    phantom = generate_phantom(abdominal_ct(seed=5, shape=(160, 160, 96), pixel_spacing_mm=1.0,
                                            slice_spacing_mm=2.0, slice_thickness_mm=2.0))
    reference = model_grid(phantom.image, (1.5, 1.5, 1.5))
    on_model_grid = sitk.Resample(phantom.vertebrae, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                  sitk.sitkUInt8)
    smooth = labels_to_input_grid(sitk.GetArrayFromImage(on_model_grid), reference, phantom.image)
    nearest = sitk.GetArrayFromImage(sitk.Resample(on_model_grid, phantom.image, sitk.Transform(),
                                                   sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8))
    truth = sitk.GetArrayFromImage(phantom.vertebrae)
    assert smooth.shape == truth.shape
    assert set(np.unique(smooth)) <= set(np.unique(truth))

    def dice(labels: np.ndarray, label: int) -> float:
        overlap = np.logical_and(labels == label, truth == label).sum()
        return 2 * overlap / ((labels == label).sum() + (truth == label).sum())

    for label in (18, 19, 20, 21):
        assert dice(smooth, label) > 0.93 and dice(smooth, label) > dice(nearest, label), label
