"""Training a U-Net model directory from NIfTI cases (``scpnode segment-train``).

Patches are sampled around the vertebrae (MONAI ``RandCropByPosNegLabeld``)
and augmented in ways that keep the anatomy plausible and the labels valid:
left-right flips only (a cranio-caudal or antero-posterior flip would show a
spine no scanner produces and would swap what T11 and L2 look like), small
rotations (patient positioning), and intensity scale/shift (scanner, kernel and
contrast differences). The loss is Dice + cross-entropy (Milletari et al. 2016;
as in nnU-Net) on the vertebra softmax plus Dice + binary cross-entropy on the
body channel. After every epoch the validation cases are segmented with the
same sliding-window inference and post-processing as the backend, and Dice per
label is computed; the best epoch's weights are the model (``model.pt``), the
last epoch's full state (``last.pt``) lets a run resume.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import monai
import numpy as np
import torch
from monai.data import DataLoader, Dataset
from monai.losses import DiceCELoss
from monai.transforms import (
    Compose,
    EnsureTyped,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandRotated,
    RandScaleIntensityd,
    RandShiftIntensityd,
    SpatialPadd,
)
from monai.utils import set_determinism
from pydantic import ValidationError

from inference.levels import LEVEL_NAMES
from inference.segment.unet.data import PreparedCase, TrainingCase, TrainingDataError, prepare_case
from inference.segment.unet.network import build_network, resolve_device
from inference.segment.unet.predict import keep_largest_component_per_label, labels_from_logits, predict_logits
from inference.segment.unet.spec import (
    LAST_CHECKPOINT,
    MODEL_JSON,
    Architecture,
    ModelSpec,
    write_spec,
)

ROTATION_RADIANS = 0.17
"""Largest random rotation about each axis (about 10 degrees)."""
BODY_KEY = "body"


@dataclass(frozen=True)
class TrainingOptions:
    """Everything that shapes a training run (defaults suit a real model on a GPU)."""

    spacing_mm: tuple[float, float, float] = (1.5, 1.5, 1.5)
    patch_size: tuple[int, int, int] = (96, 96, 96)
    intensity_window_hu: tuple[float, float] = (-1000.0, 2000.0)
    architecture: Architecture = Architecture()
    labels: tuple[int, ...] | None = None
    """VerSe ids the model learns; None: every id found in the training masks."""
    body_values: tuple[int, ...] | None = None
    """Values of the body masks that mean "body"; None: any non-zero value."""
    epochs: int = 100
    samples_per_case: int = 2
    """Random patches drawn from each case per epoch (a batch holds this many)."""
    learning_rate: float = 1e-3
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    name: str = "site-unet"


@dataclass(frozen=True)
class EpochReport:
    """What one epoch did; given to the progress callback."""

    epoch: int
    epochs: int
    loss: float
    validation_dice: dict[str, float]
    """Per level name and ``"body"``; NaN where the label is in neither prediction nor truth."""
    mean_dice: float
    best_dice: float
    best_epoch: int
    improved: bool
    seconds: float


@dataclass
class TrainingSummary:
    """The outcome of :func:`train_model`."""

    model_dir: Path
    spec: ModelSpec
    epochs_run: int
    best_epoch: int
    best_dice: float
    history: list[dict[str, Any]] = field(default_factory=list)


def train_model(
    train_cases: Sequence[TrainingCase],
    val_cases: Sequence[TrainingCase],
    out_dir: str | Path,
    options: TrainingOptions = TrainingOptions(),
    *,
    resume: bool = False,
    progress: Callable[[EpochReport], None] | None = None,
) -> TrainingSummary:
    """Train (or resume training) a U-Net and write the model directory ``out_dir``.

    Args:
        train_cases, val_cases: cases to fit and to select the best epoch on.
        out_dir: the model directory; must not hold a model unless ``resume``.
        options: run settings; with ``resume`` the saved model settings are used
            and only ``epochs`` (the total to reach), ``device`` and ``workers`` apply.
        progress: called after every epoch.

    Raises:
        TrainingDataError: unusable cases or folders, or a resume without a checkpoint.
    """
    out_dir = Path(out_dir)
    check_options(options)
    if not train_cases or not val_cases:
        raise TrainingDataError("training needs at least one training and one validation case")
    checkpoint = _read_checkpoint(out_dir) if resume else None
    if not resume and (out_dir / MODEL_JSON).exists():
        raise TrainingDataError(f"{out_dir} already holds a model; use --resume to continue it or choose another folder")
    out_dir.mkdir(parents=True, exist_ok=True)

    set_determinism(seed=options.seed)
    device = resolve_device(options.device)
    base_spec = ModelSpec.model_validate(checkpoint["spec"]) if checkpoint else None
    spacing = base_spec.spacing_mm if base_spec else options.spacing_mm
    window = base_spec.intensity_window_hu if base_spec else options.intensity_window_hu
    patch = base_spec.patch_size if base_spec else options.patch_size
    margin = [side // 2 for side in patch]
    body_values = options.body_values
    training = [prepare_case(case, spacing, window, margin, body_values) for case in train_cases]
    validation = [prepare_case(case, spacing, window, margin, body_values) for case in val_cases]

    spec = base_spec or ModelSpec(
        name=options.name,
        labels=options.labels or _labels_in(training),
        spacing_mm=spacing,
        intensity_window_hu=window,
        patch_size=patch,
        architecture=options.architecture,
    )
    channel_of = _channel_lookup(spec.labels)
    network = build_network(spec).to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=options.learning_rate, weight_decay=1e-5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda epoch: (1 - epoch / max(options.epochs, 1)) ** 0.9  # nnU-Net's poly schedule
    )
    history: list[dict[str, Any]] = []
    start_epoch, best_dice, best_epoch = 1, -math.inf, 0
    if checkpoint:
        network.load_state_dict(checkpoint["network"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        start_epoch = int(checkpoint["epoch"]) + 1
        best_dice, best_epoch = float(checkpoint["best_dice"]), int(checkpoint["best_epoch"])
        history = list(checkpoint["history"])

    loader = DataLoader(
        Dataset([_sample_dict(case, channel_of) for case in training], transform=_augmentation(spec, options)),
        batch_size=1,
        shuffle=True,
        num_workers=options.workers,
    )
    vertebra_loss = DiceCELoss(to_onehot_y=True, softmax=True)
    body_loss = DiceCELoss(sigmoid=True)
    n_labels = len(spec.labels)

    for epoch in range(start_epoch, options.epochs + 1):
        started = time.perf_counter()
        network.train()
        losses = []
        for batch in loader:
            image = batch["image"].to(device)
            output = network(image)
            loss = vertebra_loss(output[:, : n_labels + 1], batch["label"].to(device)) + body_loss(
                output[:, n_labels + 1:], batch[BODY_KEY].to(device)
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        scheduler.step()

        dice = validate(network, validation, spec, device)
        scored = [value for value in dice.values() if not math.isnan(value)]
        mean_dice = float(np.mean(scored)) if scored else 0.0
        improved = mean_dice > best_dice
        if improved:
            best_dice, best_epoch = mean_dice, epoch
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "validation_dice": dice, "mean_dice": mean_dice})
        if improved:
            spec = _with_provenance(spec, options, history, best_epoch, len(training), len(validation))
            _save_weights(network, out_dir / spec.weights)
            write_spec(out_dir, spec)
        _save_checkpoint(out_dir, epoch, network, optimizer, scheduler, spec, best_dice, best_epoch, history)
        if progress:
            progress(EpochReport(epoch, options.epochs, float(np.mean(losses)), dice, mean_dice,
                                 best_dice, best_epoch, improved, time.perf_counter() - started))
    return TrainingSummary(out_dir, spec, len(history), best_epoch, best_dice, history)


def check_options(options: TrainingOptions) -> None:
    """Check the options before any data is loaded.

    Raises:
        ValueError: the first bad option, named as in ``model.json`` (e.g. a patch
            size that the network's downsampling does not divide).
    """
    if options.epochs < 1 or options.samples_per_case < 1 or options.workers < 0:
        raise ValueError("epochs and samples per case must be at least 1, workers at least 0")
    if not options.learning_rate > 0:
        raise ValueError("learning rate must be positive")
    try:  # without --levels the labels come from the data later; T11 stands in to check the rest
        ModelSpec(labels=options.labels or (18,), spacing_mm=options.spacing_mm,
                  intensity_window_hu=options.intensity_window_hu, patch_size=options.patch_size,
                  architecture=options.architecture, name=options.name)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    resolve_device(options.device)


def validate(
    network: torch.nn.Module, cases: Sequence[PreparedCase], spec: ModelSpec, device: torch.device
) -> dict[str, float]:
    """Dice per level and for the body channel, averaged over ``cases``, as the backend would segment them."""
    network.eval()
    per_label: dict[str, list[float]] = {LEVEL_NAMES[label]: [] for label in spec.labels}
    per_label["body"] = []
    for case in cases:
        logits = predict_logits(network, case.image.astype(np.float32), spec.patch_size, device)
        index, in_body, _ = labels_from_logits(logits, len(spec.labels))
        index = keep_largest_component_per_label(index)
        truth = _channel_lookup(spec.labels)[case.vertebrae]
        for channel, label in enumerate(spec.labels, start=1):
            per_label[LEVEL_NAMES[label]].append(_dice(index == channel, truth == channel))
        per_label["body"].append(_dice(in_body & (index > 0), case.bodies > 0))
    return {name: round(float(np.nanmean(values)), 4) if not np.all(np.isnan(values)) else math.nan
            for name, values in per_label.items()}


def _dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    total = int(prediction.sum()) + int(truth.sum())
    return math.nan if total == 0 else 2.0 * int(np.logical_and(prediction, truth).sum()) / total


def _labels_in(cases: Sequence[PreparedCase]) -> tuple[int, ...]:
    found: set[int] = set()
    for case in cases:
        found.update(int(v) for v in np.unique(case.vertebrae) if v > 0)
    return tuple(sorted(found))


def _channel_lookup(labels: Sequence[int]) -> np.ndarray:
    """VerSe id -> vertebra channel (0 for ids the model does not learn)."""
    lookup = np.zeros(256, dtype=np.uint8)
    for channel, label in enumerate(labels, start=1):
        lookup[label] = channel
    return lookup


def _sample_dict(case: PreparedCase, channel_of: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "image": case.image[None],
        "label": channel_of[case.vertebrae][None],
        BODY_KEY: case.bodies[None],
    }


def _augmentation(spec: ModelSpec, options: TrainingOptions) -> Compose:
    keys = ["image", "label", BODY_KEY]
    # array axes are (channel, z, y, x) on the LPS model grid: x (spatial axis 2) is right-left
    transform = Compose([
        SpatialPadd(keys, spatial_size=spec.patch_size),
        RandCropByPosNegLabeld(keys, label_key="label", spatial_size=spec.patch_size, pos=2, neg=1,
                               num_samples=options.samples_per_case),
        EnsureTyped(keys, dtype=torch.float32, track_meta=False),
        RandFlipd(keys, prob=0.5, spatial_axis=2),
        RandRotated(keys, range_x=ROTATION_RADIANS, range_y=ROTATION_RADIANS, range_z=ROTATION_RADIANS, prob=0.3,
                    mode=("bilinear", "nearest", "nearest"), padding_mode="zeros"),
        RandScaleIntensityd("image", factors=0.1, prob=0.5),
        RandShiftIntensityd("image", offsets=0.05, prob=0.5),
    ])
    transform.set_random_state(seed=options.seed)
    return transform


def _with_provenance(spec: ModelSpec, options: TrainingOptions, history: list[dict[str, Any]],
                     best_epoch: int, n_train: int, n_val: int) -> ModelSpec:
    best = next(entry for entry in history if entry["epoch"] == best_epoch)
    provenance = {
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "training_cases": n_train,
        "validation_cases": n_val,
        "best_epoch": best_epoch,
        "epochs_planned": options.epochs,
        "validation_dice": {name: None if math.isnan(value) else value
                            for name, value in best["validation_dice"].items()},
        "samples_per_case": options.samples_per_case,
        "learning_rate": options.learning_rate,
        "seed": options.seed,
        "augmentation": "pos/neg patch crops, left-right flip, rotation <=10 deg, intensity scale 10% / shift 5%",
    }
    return spec.model_copy(update={"provenance": provenance})


def _save_weights(network: torch.nn.Module, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(network.state_dict(), tmp)
    tmp.replace(path)


def _save_checkpoint(out_dir: Path, epoch: int, network: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler: Any, spec: ModelSpec, best_dice: float, best_epoch: int,
                     history: list[dict[str, Any]]) -> None:
    path = out_dir / LAST_CHECKPOINT
    tmp = path.with_name(path.name + ".tmp")
    torch.save({
        "epoch": epoch,
        "network": network.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "spec": spec.model_dump(mode="json"),
        "best_dice": best_dice,
        "best_epoch": best_epoch,
        "history": history,
    }, tmp)
    tmp.replace(path)


def _read_checkpoint(out_dir: Path) -> dict[str, Any]:
    path = out_dir / LAST_CHECKPOINT
    if not path.is_file():
        raise TrainingDataError(f"cannot resume: {path} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a corrupt file
        raise TrainingDataError(f"cannot resume: {path} is not a readable checkpoint ({exc})") from None
