"""Deep transfer features (ResNet50 on the VOI's largest slice): real loading code with a weights file
the test makes, 2,048 features per VOI, identical on rerun; PCA and early fusion inside the split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch
from monai.networks.nets import resnet50

from inference.cohort.export import ExportError, export_model
from inference.cohort.fit import fit_cohort
from inference.cohort.recipe import recipe_from_dict
from inference.phantom.cohort import generate_cohort
from inference.radiomics.deep import DeepFeatureError, deep_features, feature_names, load_resnet50
from scpnode.cli import main
from tests.unit.test_cohort_extract import FEATURES
from tests.unit.test_cohort_fit import RECIPE, synthetic_table

LUMBAR = Path("real_ct") / "lumbar_crop_1p5mm"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A randomly initialised ResNet50 saved in torchvision's layout (downsampling convolutions without
    bias, an ImageNet classifier head), as a site's ImageNet or RadImageNet file would be."""
    torch.manual_seed(3)
    network = resnet50(spatial_dims=2, n_input_channels=3, conv1_t_size=7, conv1_t_stride=2, shortcut_type="B",
                       num_classes=1000)
    state = {k: v for k, v in network.state_dict().items() if not k.endswith("downsample.0.bias")}
    path = tmp_path_factory.mktemp("weights") / "resnet50-random.pth"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def voi(shared_data: Path) -> tuple[sitk.Image, sitk.Image]:
    folder = shared_data / LUMBAR
    image = sitk.Cast(sitk.ReadImage(str(folder / "sub-ct_label-22_ct.nii.gz")), sitk.sitkFloat32)
    vertebrae = sitk.ReadImage(str(folder / "sub-ct_seg-vert_label-22_msk.nii.gz"))
    return image, sitk.Cast(vertebrae == 21, sitk.sitkUInt8)


def test_2048_features_per_voi_identical_on_rerun(weights, voi):
    network = load_resnet50(weights, device="cpu")
    first = deep_features(*voi, network)
    assert list(first) == feature_names() and len(first) == 2048
    assert all(np.isfinite(v) for v in first.values()) and np.std(list(first.values())) > 0
    assert deep_features(*voi, load_resnet50(weights, device="cpu")) == first


def test_weights_files_that_cannot_be_used_are_refused_by_name(tmp_path, weights):
    with pytest.raises(DeepFeatureError, match="no such weights file"):
        load_resnet50(tmp_path / "missing.pth")
    (tmp_path / "text.pth").write_text("not weights")
    with pytest.raises(DeepFeatureError, match="not a PyTorch weights file"):
        load_resnet50(tmp_path / "text.pth")
    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(DeepFeatureError, match="not a ResNet50 in torchvision's layout"):
        load_resnet50(tmp_path / "other.pth")
    state = torch.load(weights, weights_only=True)
    state["conv1.weight"] = torch.zeros(64, 1, 7, 7)  # a one-channel network
    torch.save(state, tmp_path / "one-channel.pth")
    with pytest.raises(DeepFeatureError, match="another shape"):
        load_resnet50(tmp_path / "one-channel.pth")


def test_cohort_extract_adds_the_deep_features(tmp_path, weights, capsys):
    generated = generate_cohort(2, tmp_path, seed=6, shape=(96, 96, 56))
    labels = pd.read_csv(generated.labels)
    pd.DataFrame({"study_id": labels.patient_id, "image": labels.image_path, "mask": labels.mask_path,
                  "vertebrae": labels.vertebrae_path, "label": labels.outcome}).to_csv(tmp_path / "c.csv", index=False)
    (tmp_path / "f.txt").write_text("\n".join(FEATURES) + "\n")
    base = ["cohort", "extract", str(tmp_path / "c.csv"), "--features", str(tmp_path / "f.txt"), "--vois", "body"]
    assert main([*base, "--deep", "resnet50", "--out", str(tmp_path / "x")]) == 2
    assert "--deep needs --weights" in capsys.readouterr().err
    assert main([*base, "--deep", "resnet50", "--weights", str(weights), "--out", str(tmp_path / "out")]) == 0
    long = pd.read_csv(tmp_path / "out" / "features_long.csv")
    assert sum(c.startswith("deep_resnet50_") for c in long.columns) == 2048 and long.notna().all().all()


def test_deep_features_are_reduced_by_pca_and_fused_inside_the_training_split():
    table = synthetic_table(n=200, p=6)
    rng = np.random.default_rng(0)
    signal = table["cortical:f00"].to_numpy()
    for j in range(40):
        table[f"cortical:deep_resnet50_{j:04d}"] = rng.normal(size=len(table)) + (0.5 * signal if j < 10 else 0)
    recipe = recipe_from_dict({**RECIPE, "preprocess": {"normalisation": "z-score", "deep_pca": 5},
                               "selection": [{"method": "lasso", "rule": "min", "folds": 5, "n_lambdas": 10}]})
    fit = fit_cohort(table, recipe)
    pipeline = fit.models.radscores["cortical"]
    pca = pipeline.named_steps["deep_pca"]
    n_train = int((fit.predictions.partition == "train").sum())
    assert pca.pca_.n_samples_ == n_train and pca.pca_.n_components_ == 5
    names = list(pipeline[:-1].get_feature_names_out())
    assert "cortical:deep_pc01" in names and not any("deep_resnet50" in n for n in names)
    assert "cortical:f00" in pipeline.named_steps["deep_pca"].get_feature_names_out()
    with pytest.raises(ExportError, match="no deep features"):
        export_model(fit, "x")
