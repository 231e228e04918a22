"""Deep transfer-learning features of a VOI: a ResNet50 on the VOI's largest slice (fracture-type study).

As the CT fracture-type study describes it: the VOI's axial slice with the
most voxels, cropped to the VOI's bounding box on that slice and resized to
64 x 64, goes through a ResNet50 whose 2,048 globally pooled activations are
the features (``deep_resnet50_0000`` ... ``deep_resnet50_2047``). PCA and
early fusion with the radiomics happen later, inside the training split
(``[preprocess] deep_pca`` of a recipe).

The weights are a file the site provides (ImageNet or RadImageNet ResNet50 in
torchvision's layout, e.g. ``resnet50-11ad3fa6.pth``); nothing is downloaded.
The network is MONAI's ResNet50, which has torchvision's parameter names: a
torchvision file loads unchanged (its downsampling convolutions have no bias,
MONAI's are set to zero). torchvision itself is not used because its compiled
operators do not load with the CPU build of torch this project pins. CUDA is
used when present.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from monai.networks.nets import resnet50

DEEP_MODELS = ("resnet50",)
CROP_SIZE = 64
HU_WINDOW = (-200.0, 1200.0)
"""Attenuation mapped to 0-1 before the ImageNet normalisation (bone and its surroundings)."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FEATURES = 2048

_models: dict[tuple[str, str], torch.nn.Module] = {}
_lock = threading.Lock()


class DeepFeatureError(ValueError):
    """A weights file or a VOI the deep features cannot use; the message names it."""


def feature_names(model: str = "resnet50") -> list[str]:
    """The names of the pooled features, in order."""
    return [f"deep_{model}_{i:04d}" for i in range(FEATURES)]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_resnet50(weights: str | Path, device: str | None = None) -> torch.nn.Module:
    """The ResNet50 trunk (no classifier) with the weights of ``weights``, in eval mode, cached per process.

    Raises:
        DeepFeatureError: no such file, not a state dict, or parameters that are not a ResNet50's.
    """
    device = device or default_device()
    path = Path(weights)
    key = (str(path.resolve()), device)
    with _lock:
        if key in _models:
            return _models[key]
        if not path.is_file():
            raise DeepFeatureError(f"{path}: no such weights file (a site provides ImageNet or RadImageNet "
                                   "ResNet50 weights; nothing is downloaded)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch raises many types for a file that is not a checkpoint
            raise DeepFeatureError(f"{path}: not a PyTorch weights file ({type(exc).__name__})") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise DeepFeatureError(f"{path}: not a state dict")
        state = {k.removeprefix("module."): v for k, v in state.items() if not k.removeprefix("module.").startswith("fc.")}
        network = resnet50(spatial_dims=2, n_input_channels=3, conv1_t_size=7, conv1_t_stride=2,
                           shortcut_type="B", feed_forward=False)
        try:
            missing, unexpected = network.load_state_dict(state, strict=False)
        except RuntimeError as exc:
            raise DeepFeatureError(f"{path}: parameters of another shape than a ResNet50's "
                                   f"({str(exc).splitlines()[1].strip()[:120]})") from None
        biases = [k for k in missing if k.endswith("downsample.0.bias")]
        others = [k for k in missing if k not in biases]
        if others or unexpected:
            raise DeepFeatureError(f"{path}: not a ResNet50 in torchvision's layout (missing "
                                   f"{', '.join(others[:3]) or 'none'}; unexpected {', '.join(unexpected[:3]) or 'none'})")
        with torch.no_grad():
            for name in biases:
                network.get_parameter(name).zero_()
        _models[key] = network.eval().to(device)
        return _models[key]


def largest_slice_crop(image: sitk.Image, mask: sitk.Image, size: int = CROP_SIZE) -> np.ndarray:
    """The VOI's axial slice with the most voxels, cropped to the VOI there, windowed to 0-1, ``size`` x ``size``.

    Raises:
        DeepFeatureError: an empty mask.
    """
    inside = sitk.GetArrayViewFromImage(mask) > 0
    counts = inside.sum(axis=(1, 2))
    if counts.max() == 0:
        raise DeepFeatureError("VOI not usable: the mask is empty")
    z = int(np.argmax(counts))
    rows, cols = np.flatnonzero(inside[z].any(axis=1)), np.flatnonzero(inside[z].any(axis=0))
    pixels = sitk.GetArrayViewFromImage(image)[z, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].astype(np.float32)
    low, high = HU_WINDOW
    scaled = torch.from_numpy(np.clip((pixels - low) / (high - low), 0.0, 1.0))[None, None]
    resized = torch.nn.functional.interpolate(scaled, size=(size, size), mode="bilinear", align_corners=False)
    return resized[0, 0].numpy()


def deep_features(image: sitk.Image, mask: sitk.Image, network: torch.nn.Module,
                  model: str = "resnet50") -> dict[str, float]:
    """The 2,048 pooled ResNet50 features of one VOI (see the module docstring)."""
    crop = torch.from_numpy(largest_slice_crop(image, mask))
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    batch = ((crop.expand(3, -1, -1) - mean) / std)[None]
    device = next(network.parameters()).device
    with torch.no_grad():
        pooled = network(batch.to(device))[0].double().cpu().numpy()
    return dict(zip(feature_names(model), pooled.tolist(), strict=True))
