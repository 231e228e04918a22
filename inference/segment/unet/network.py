"""Building the network named in ``model.json`` and loading its weights."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from monai.networks.nets import UNet

from inference.segment.unet.spec import ModelDirError, ModelSpec, read_spec


def build_network(spec: ModelSpec) -> torch.nn.Module:
    """A freshly initialised MONAI 3D U-Net with the spec's architecture and channel count."""
    arch = spec.architecture
    return UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=spec.out_channels,
        channels=arch.channels,
        strides=arch.strides,
        num_res_units=arch.num_res_units,
        norm=arch.norm,
        dropout=arch.dropout,
    )


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when torch sees a GPU, else CPU; ``"cuda"`` without a GPU is an error.

    Raises:
        ValueError: ``"cuda"`` asked for but not available, or an unknown device name.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but torch sees no CUDA GPU (CPU build or no driver)")
        return torch.device("cuda")
    raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'")


@dataclass(frozen=True)
class LoadedModel:
    """A model directory ready for inference."""

    spec: ModelSpec
    network: torch.nn.Module
    device: torch.device
    weights_sha256: str

    @property
    def version(self) -> str:
        """Name and weight digest, recorded in ``segmentation.json`` so a result names its model."""
        return f"{self.spec.name} sha256:{self.weights_sha256[:12]}"


def load_model(model_dir: str | Path, device: str = "auto") -> LoadedModel:
    """Load a U-Net model directory for inference (cached per directory, file dates and device).

    Raises:
        ModelDirError: the directory, ``model.json`` or the weights are missing or invalid,
            or the weights do not fit the architecture in ``model.json``.
        ValueError: the device is not available.
    """
    model_dir = Path(model_dir).resolve()
    spec = read_spec(model_dir)
    weights = model_dir / spec.weights
    stamp = (weights.stat().st_mtime_ns, (model_dir / "model.json").stat().st_mtime_ns)
    return _load_cached(model_dir, stamp, str(resolve_device(device)))


@lru_cache(maxsize=2)
def _load_cached(model_dir: Path, stamp: tuple[int, int], device: str) -> LoadedModel:
    spec = read_spec(model_dir)
    weights = model_dir / spec.weights
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    target = torch.device(device)
    if spec.weights_format == "torchscript":
        network = _load_torchscript(weights, target)
    else:
        network = build_network(spec)
        try:
            # weights_only: a state dict is plain tensors; never unpickle arbitrary objects from disk
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several unrelated types for a corrupt file
            raise ModelDirError(f"{weights}: not a readable torch state dict ({type(exc).__name__}: {exc})") from None
        try:
            network.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelDirError(f"{weights}: weights do not fit the architecture in model.json ({first_line})") from None
        network = network.to(target)
    network.eval()
    return LoadedModel(spec=spec, network=network, device=target, weights_sha256=digest)


def _load_torchscript(weights: Path, device: torch.device) -> torch.nn.Module:
    try:
        return torch.jit.load(str(weights), map_location=device)
    except (RuntimeError, ValueError) as exc:
        raise ModelDirError(f"{weights}: not a readable TorchScript file ({str(exc).strip().splitlines()[0]})") from None
