"""The U-Net model directory: ``model.json`` plus the weights it names.

A model directory is what ``scpnode segment-train`` writes and what the
``unet`` backend loads::

    MODEL_DIR/
      model.json      the description below (format "scpnode-unet", version 1)
      model.pt        weights: a state dict of the architecture in model.json
                      (or a TorchScript file, "weights_format": "torchscript")
      last.pt         training state for --resume (not needed for inference)

``model.json``::

    {
      "format": "scpnode-unet", "format_version": 1,
      "name": "site-unet",
      "weights": "model.pt", "weights_format": "state_dict",
      "labels": [18, 19, 20, 21],
      "body_channel": true,
      "spacing_mm": [1.5, 1.5, 1.5],
      "intensity_window_hu": [-1000, 2000],
      "patch_size": [96, 96, 96],
      "architecture": {"name": "UNet", "channels": [16, 32, 64, 128, 256],
                       "strides": [2, 2, 2, 2], "num_res_units": 2, "norm": "instance"},
      "provenance": {...}
    }

Output channels of the network, in order:

- ``0 .. len(labels)``: a softmax over background (channel 0) and the whole
  vertebrae; channel ``i`` (1-based) is the vertebra with VerSe id
  ``labels[i - 1]``;
- the last channel: a sigmoid logit, "this voxel is in a vertebral body"
  (of any vertebra). The vertebral body of a vertebra is where this channel is
  on and the softmax picks that vertebra.

Input: one channel, the CT resampled onto an axis-aligned LPS grid of
``spacing_mm`` (array order z, y, x) and windowed to ``intensity_window_hu``
mapped onto 0..1 (:mod:`inference.segment.unet.preprocess`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inference.levels import LEVEL_NAMES

MODEL_FORMAT = "scpnode-unet"
MODEL_FORMAT_VERSION = 1
MODEL_JSON = "model.json"
WEIGHTS_FILE = "model.pt"
LAST_CHECKPOINT = "last.pt"


class ModelDirError(ValueError):
    """A U-Net model directory that cannot be used; the message says which file and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Architecture(_Strict):
    """Parameters of :class:`monai.networks.nets.UNet` (Kerfoot et al. 2018 residual U-Net)."""

    name: Literal["UNet"] = "UNet"
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    """Feature channels per resolution level."""
    strides: tuple[int, ...] = (2, 2, 2, 2)
    """Downsampling factor between levels; one fewer than ``channels``."""
    num_res_units: int = Field(2, ge=0, le=8)
    norm: Literal["instance", "batch"] = "instance"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _levels_match(self) -> "Architecture":
        if len(self.channels) < 2 or len(self.strides) != len(self.channels) - 1:
            raise ValueError("architecture needs at least 2 channels and len(strides) == len(channels) - 1")
        if any(c < 1 for c in self.channels) or any(s < 1 for s in self.strides):
            raise ValueError("architecture channels and strides must be positive")
        return self

    @property
    def downsampling(self) -> int:
        """Total downsampling factor: every patch side must be a multiple of it."""
        factor = 1
        for stride in self.strides:
            factor *= stride
        return factor


class ModelSpec(_Strict):
    """The validated content of ``model.json``."""

    format: Literal["scpnode-unet"] = MODEL_FORMAT
    format_version: Literal[1] = MODEL_FORMAT_VERSION
    name: str = Field("site-unet", min_length=1)
    weights: str = WEIGHTS_FILE
    """File name of the weights, inside the model directory."""
    weights_format: Literal["state_dict", "torchscript"] = "state_dict"
    labels: tuple[int, ...]
    """VerSe ids of the vertebra channels 1..n (channel 0 is background)."""
    body_channel: Literal[True] = True
    """The last output channel is the vertebral-body logit (required in format version 1)."""
    spacing_mm: tuple[float, float, float]
    """Voxel spacing (x, y, z) in mm of the grid the network works on."""
    intensity_window_hu: tuple[float, float] = (-1000.0, 2000.0)
    """HU mapped to 0 and 1; values outside are clipped."""
    patch_size: tuple[int, int, int]
    """Sliding-window size in voxels (z, y, x), as trained."""
    architecture: Architecture = Architecture()
    provenance: dict[str, Any] = {}
    """How the model was made: dates, library versions, data counts, validation Dice."""

    @field_validator("labels")
    @classmethod
    def _known_ids(cls, labels: tuple[int, ...]) -> tuple[int, ...]:
        if not labels:
            raise ValueError("at least one vertebra label is needed")
        unknown = [label for label in labels if label not in LEVEL_NAMES]
        if unknown:
            raise ValueError(f"not VerSe vertebra ids: {unknown}")
        if len(set(labels)) != len(labels):
            raise ValueError("labels must not repeat")
        return labels

    @field_validator("spacing_mm")
    @classmethod
    def _positive_spacing(cls, spacing: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(not 0.1 <= s <= 10 for s in spacing):
            raise ValueError("spacing must be 0.1..10 mm per axis")
        return spacing

    @field_validator("intensity_window_hu")
    @classmethod
    def _ordered_window(cls, window: tuple[float, float]) -> tuple[float, float]:
        if window[1] <= window[0]:
            raise ValueError("intensity window must be (low, high) with high > low")
        return window

    @field_validator("weights")
    @classmethod
    def _plain_file_name(cls, weights: str) -> str:
        if Path(weights).name != weights or weights in ("", ".", ".."):
            raise ValueError("weights must be a file name inside the model directory")
        return weights

    @model_validator(mode="after")
    def _patch_fits_network(self) -> "ModelSpec":
        factor = self.architecture.downsampling
        if any(side < factor or side % factor for side in self.patch_size):
            raise ValueError(f"patch_size sides must be multiples of the network's downsampling ({factor})")
        return self

    @property
    def out_channels(self) -> int:
        """Background + one per vertebra label + the body channel."""
        return 1 + len(self.labels) + 1


def read_spec(model_dir: str | Path) -> ModelSpec:
    """Read and validate ``MODEL_DIR/model.json``; check that the weights file exists.

    Raises:
        ModelDirError: missing folder or file, invalid JSON, or a field that fails
            validation (the message names the field).
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelDirError(f"U-Net model directory not found: {model_dir}")
    spec_path = model_dir / MODEL_JSON
    try:
        data = json.loads(spec_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelDirError(f"{model_dir}: no {MODEL_JSON}; not a U-Net model directory") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelDirError(f"{spec_path}: cannot read ({exc})") from None
    if not isinstance(data, dict):
        raise ModelDirError(f"{spec_path}: expected a JSON object")
    if data.get("format") != MODEL_FORMAT:
        raise ModelDirError(f"{spec_path}: format is {data.get('format')!r}, expected {MODEL_FORMAT!r}")
    try:
        spec = ModelSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
        message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise ModelDirError(f"{spec_path}: {key}: {message}") from None
    if not (model_dir / spec.weights).is_file():
        raise ModelDirError(f"{model_dir}: weights file {spec.weights!r} named in {MODEL_JSON} is missing")
    return spec


def write_spec(model_dir: str | Path, spec: ModelSpec) -> Path:
    """Write ``model.json`` (atomically: a reader never sees half a file)."""
    path = Path(model_dir) / MODEL_JSON
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(spec.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
