"""Loading a trained-model folder into nnU-Net's own predictor (``nnUNetPredictor``), once per folder and device."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from inference.segment.nnunet.label_map import LabelMap, read_label_map
from inference.segment.nnunet.model_folder import CHECKPOINT_NAME, ModelFolder, NnUNetModelError, read_model_folder
from inference.segment.unet.network import resolve_device

logger = logging.getLogger(__name__)

TILE_STEP = 0.5
"""Sliding-window step as a fraction of the patch (nnU-Net's default; TotalSegmentator's too)."""
USE_MIRRORING = False
"""Test-time mirroring multiplies the time by up to eight for a small gain; TotalSegmentator runs without it."""


@dataclass(frozen=True)
class LoadedNnUNet:
    """A model folder ready for prediction."""

    predictor: Any
    """The initialised ``nnunetv2.inference.predict_from_raw_data.nnUNetPredictor``."""
    folder: ModelFolder
    labels: LabelMap
    device: torch.device
    weights_sha256: str

    @property
    def version(self) -> str:
        """Dataset, model folder (``<trainer>__<plans>__<configuration>``), folds and weight digest:
        a result names its model."""
        dataset = self.folder.plans.get("dataset_name", self.folder.path.parent.name)
        folds = ",".join(str(f) for f in self.folder.folds)
        return f"{dataset} {self.folder.path.name} folds {folds} sha256:{self.weights_sha256[:12]}"

    @property
    def reader_writer(self) -> Any:
        """An instance of the image reader/writer the model was trained with (``plans.json``)."""
        return self.predictor.plans_manager.image_reader_writer_class()

    @property
    def spacing_xyz(self) -> tuple[float, float, float]:
        """The configuration's target spacing in mm along the image's x, y, z axes.

        nnU-Net's readers (SimpleITK and nibabel alike) give arrays in (z, y, x) order, and the
        plans hold the spacing of those axes after ``transpose_forward``.
        """
        spacing = self.predictor.configuration_manager.spacing
        z, y, x = (float(spacing[axis]) for axis in self.predictor.plans_manager.transpose_backward)
        return x, y, z


def load_nnunet(model_dir: str | Path, device: str = "auto") -> LoadedNnUNet:
    """Check ``model_dir`` and load it into nnU-Net's predictor (cached per folder, checkpoint dates and device).

    Raises:
        NnUNetModelError: the folder is broken (:func:`read_model_folder`), its labels cannot be
            mapped (:func:`read_label_map`), or nnU-Net cannot build the network or load the weights.
        ValueError: the device is not available.
    """
    folder = read_model_folder(Path(model_dir).resolve())
    read_label_map(folder.path, folder.dataset)  # refuse before the (slow) network is built
    stamp = tuple(path.stat().st_mtime_ns for path in (*folder.checkpoints, folder.path / "dataset.json",
                                                        folder.path / "plans.json"))
    map_file = folder.path / "verse_labels.json"
    stamp += (map_file.stat().st_mtime_ns if map_file.is_file() else 0,)
    return _load_cached(folder.path, stamp, str(resolve_device(device)))


@lru_cache(maxsize=2)
def _load_cached(path: Path, stamp: tuple[int, ...], device: str) -> LoadedNnUNet:
    folder = read_model_folder(path)
    labels = read_label_map(path, folder.dataset)
    target = torch.device(device)
    # nnunetv2 prints notes on nnUNet_raw/_preprocessed/_results at import and on folds while loading;
    # the node names the model folder itself, so they are kept out of the output (and in the debug log)
    notes = io.StringIO()
    with contextlib.redirect_stdout(notes):
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        predictor = nnUNetPredictor(tile_step_size=TILE_STEP, use_gaussian=True, use_mirroring=USE_MIRRORING,
                                    perform_everything_on_device=target.type == "cuda", device=target,
                                    verbose=False, verbose_preprocessing=False, allow_tqdm=False)
        try:
            predictor.initialize_from_trained_model_folder(str(path), use_folds=folder.folds,
                                                           checkpoint_name=CHECKPOINT_NAME)
        except (RuntimeError, KeyError, ValueError, TypeError, AttributeError, EOFError, pickle.UnpicklingError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise NnUNetModelError(f"{path}: nnU-Net cannot load this model ({type(exc).__name__}: {first_line})") from None
    logger.debug("nnunetv2 notes while loading %s: %s", path, notes.getvalue().strip())
    if predictor.configuration_manager.previous_stage_name is not None:
        raise NnUNetModelError(f"{path}: a cascade stage (after {predictor.configuration_manager.previous_stage_name!r}); "
                               "it needs the low-resolution stage's output, which the node does not run")
    digest = hashlib.sha256()
    for checkpoint in folder.checkpoints:
        with checkpoint.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return LoadedNnUNet(predictor=predictor, folder=folder, labels=labels,
                        device=target, weights_sha256=digest.hexdigest())

