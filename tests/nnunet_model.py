"""A tiny nnU-Net v2 trained-model folder, made the way ``nnUNetv2_train`` lays one out.

No trained weights can be downloaded here, so tests and benchmarks make their
own: ``plans.json`` for a two-stage ``PlainConvUNet`` (4 and 8 features, 32^3
patches at 4 mm), the network built by nnU-Net's own trainer class from those
plans, and its weights from a fixed seed saved as ``fold_0/checkpoint_final.pth``
with the keys nnU-Net's predictor reads. Time and memory of such a model depend
on the architecture, patch and grid, not on the weight values.
"""

from __future__ import annotations

import contextlib
import io
import json
from copy import deepcopy
from pathlib import Path
from typing import Any

import torch

TINY_LABELS = {"background": 0, "vertebrae_L2": 1, "vertebrae_L1": 2, "vertebrae_T12": 3, "vertebrae_T11": 4,
               "liver": 5}
"""TotalSegmentator-style names, not in VerSe order, and one organ the node must leave out."""

CONFIGURATION = "3d_fullres"
MODEL_FOLDER_NAME = f"nnUNetTrainer__nnUNetPlans__{CONFIGURATION}"

TINY_PLANS: dict[str, Any] = {
    "dataset_name": "Dataset900_TinyVertebrae",
    "plans_name": "nnUNetPlans",
    "original_median_spacing_after_transp": [4.0, 4.0, 4.0],
    "original_median_shape_after_transp": [64, 64, 64],
    "image_reader_writer": "SimpleITKIO",
    "transpose_forward": [0, 1, 2],
    "transpose_backward": [0, 1, 2],
    "configurations": {
        CONFIGURATION: {
            "data_identifier": "nnUNetPlans_3d_fullres",
            "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2,
            "patch_size": [32, 32, 32],
            "median_image_size_in_voxels": [64, 64, 64],
            "spacing": [4.0, 4.0, 4.0],
            "normalization_schemes": ["CTNormalization"],
            "use_mask_for_norm": [False],
            "resampling_fn_data": "resample_data_or_seg_to_shape",
            "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
            "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0,
                                                   "force_separate_z": None},
            "architecture": {
                "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                "arch_kwargs": {
                    "n_stages": 2,
                    "features_per_stage": [4, 8],
                    "conv_op": "torch.nn.modules.conv.Conv3d",
                    "kernel_sizes": [[3, 3, 3], [3, 3, 3]],
                    "strides": [[1, 1, 1], [2, 2, 2]],
                    "n_conv_per_stage": [1, 1],
                    "n_conv_per_stage_decoder": [1],
                    "conv_bias": True,
                    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                    "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                    "dropout_op": None,
                    "dropout_op_kwargs": None,
                    "nonlin": "torch.nn.LeakyReLU",
                    "nonlin_kwargs": {"inplace": True},
                },
                "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
            },
            "batch_dice": False,
        },
    },
    "experiment_planner_used": "ExperimentPlanner",
    "label_manager": "LabelManager",
    "foreground_intensity_properties_per_channel": {
        "0": {"max": 1800.0, "mean": 350.0, "median": 300.0, "min": -200.0, "percentile_00_5": -50.0,
              "percentile_99_5": 1200.0, "std": 220.0},
    },
}


def write_tiny_model(root: Path, *, labels: dict[str, int] | None = None, channels: int = 1,
                     weight_channels: int | None = None, spacing_mm: float = 4.0, seed: int = 0) -> Path:
    """Write a trained-model folder under ``root``; returns ``root/<trainer>__<plans>__<configuration>``.

    ``channels`` is what ``dataset.json`` declares; ``weight_channels`` (default:
    the same) is what the saved network was built for, so the two can be made to disagree.
    ``spacing_mm`` is the configuration's isotropic target spacing.
    """
    with contextlib.redirect_stdout(io.StringIO()):  # nnunetv2's import-time notes on its path variables
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    labels = dict(TINY_LABELS if labels is None else labels)
    folder = root / MODEL_FOLDER_NAME
    (folder / "fold_0").mkdir(parents=True)
    dataset = {"channel_names": {str(i): "CT" if i == 0 else f"extra{i}" for i in range(channels)},
               "labels": labels, "numTraining": 1, "file_ending": ".nii.gz"}
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2), encoding="utf-8")
    plans = deepcopy(TINY_PLANS)
    plans["configurations"][CONFIGURATION]["spacing"] = [spacing_mm] * 3
    plans["original_median_spacing_after_transp"] = [spacing_mm] * 3
    (folder / "plans.json").write_text(json.dumps(plans, indent=2), encoding="utf-8")
    architecture = plans["configurations"][CONFIGURATION]["architecture"]
    torch.manual_seed(seed)
    network = nnUNetTrainer.build_network_architecture(
        architecture["network_class_name"], architecture["arch_kwargs"], architecture["_kw_requires_import"],
        weight_channels or channels, len(labels), enable_deep_supervision=False)
    checkpoint = {
        "network_weights": network.state_dict(),
        "trainer_name": "nnUNetTrainer",
        "init_args": {"plans": plans, "configuration": CONFIGURATION, "fold": 0, "dataset_json": dataset},
        "inference_allowed_mirroring_axes": (0, 1, 2),
    }
    torch.save(checkpoint, folder / "fold_0" / "checkpoint_final.pth")
    return folder
