"""Training data for the U-Net: NIfTI image/label pairs in the VerSe convention.

A case is a CT (HU), its whole-vertebra mask (VerSe ids) and its vertebral-body
mask. Pairs are found either in folders, matched by name, or listed in a
cohort CSV. Names follow VerSe/BIDS (``sub-verse004_ct.nii.gz`` with
``sub-verse004_seg-vert_msk.nii.gz``): the case key is the name without the
``seg-*`` entity and the final suffix (``ct``, ``msk``), so
``sub-ct_label-22_ct`` and ``sub-ct_seg-vert_label-22_msk`` are one case; plain
names (``case01.nii.gz`` in each folder) match as they are.

Body masks: any non-zero voxel is body (e.g. a body mask with VerSe ids), or,
with ``body_values``, only those values (49 and 50 for VerSe sub-region masks,
where 49 is the body border and 50 the body interior).
"""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from inference.levels import LEVEL_NAMES
from inference.segment.unet.preprocess import model_grid, resample_image, resample_labels, window_intensities
from inference.volume import VolumeError, load_volume

NIFTI_SUFFIXES = (".nii.gz", ".nii")


class TrainingDataError(ValueError):
    """Training data that cannot be used; the message names the case or file."""


@dataclass(frozen=True)
class TrainingCase:
    """Paths of one training case."""

    key: str
    image: Path
    vertebrae: Path
    bodies: Path


@dataclass
class PreparedCase:
    """One case on the model grid, cropped around its vertebrae (arrays z, y, x)."""

    key: str
    image: np.ndarray
    """Windowed CT, 0..1, float16 to halve the memory of a cohort held in RAM."""
    vertebrae: np.ndarray
    """VerSe ids (uint8)."""
    bodies: np.ndarray
    """1 inside vertebral bodies (uint8)."""


def case_key(path: Path) -> str:
    """Matching key of a NIfTI file name (see the module docstring)."""
    stem = path.name
    for suffix in NIFTI_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    tokens = [token for token in stem.split("_") if not token.startswith("seg-")]
    if len(tokens) > 1 and "-" not in tokens[-1]:
        tokens = tokens[:-1]
    return "_".join(tokens)


def _nifti_files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise TrainingDataError(f"folder not found: {folder}")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name.endswith(NIFTI_SUFFIXES):
            key = case_key(path)
            if key in files:
                raise TrainingDataError(f"{folder}: {files[key].name} and {path.name} are the same case {key!r}")
            files[key] = path
    return files


def find_cases(images_dir: Path, labels_dir: Path, bodies_dir: Path) -> list[TrainingCase]:
    """Pair the NIfTI files of three folders by case key.

    Raises:
        TrainingDataError: a folder is missing, or an image has no vertebra or body mask
            (the message lists the unmatched cases), or no case was found.
    """
    images, labels, bodies = _nifti_files(images_dir), _nifti_files(labels_dir), _nifti_files(bodies_dir)
    unmatched = sorted(set(images) ^ set(labels) | set(images) ^ set(bodies))
    if unmatched:
        raise TrainingDataError(
            f"cases without a complete image/vertebrae/bodies triple: {', '.join(unmatched[:10])}"
            + (" ..." if len(unmatched) > 10 else "")
        )
    if not images:
        raise TrainingDataError(f"{images_dir}: no NIfTI images (.nii, .nii.gz)")
    return [TrainingCase(key, images[key], labels[key], bodies[key]) for key in sorted(images)]


def read_cohort_csv(path: Path) -> tuple[list[TrainingCase], list[TrainingCase]]:
    """Read a cohort CSV with columns ``image``, ``vertebrae``, ``bodies`` and optional ``split``.

    Paths are relative to the CSV's folder. ``split`` is ``train`` or ``val``;
    without the column every case is ``train`` (the caller splits off validation).

    Returns:
        (training cases, validation cases).
    """
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise TrainingDataError(f"cannot read cohort CSV {path}: {exc}") from None
    needed = {"image", "vertebrae", "bodies"}
    if not rows or not needed <= set(rows[0]):
        raise TrainingDataError(f"{path}: needs a header with columns {', '.join(sorted(needed))} and at least one row")
    train, val = [], []
    for number, row in enumerate(rows, start=2):
        split = (row.get("split") or "train").strip().lower()
        if split not in ("train", "val"):
            raise TrainingDataError(f"{path}:{number}: split must be 'train' or 'val', not {split!r}")
        paths = [(path.parent / row[column].strip()) for column in ("image", "vertebrae", "bodies")]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise TrainingDataError(f"{path}:{number}: file not found: {missing[0]}")
        case = TrainingCase(f"row{number}:{case_key(paths[0])}", *paths)
        (val if split == "val" else train).append(case)
    return train, val


def split_cases(
    cases: Sequence[TrainingCase], val_fraction: float, seed: int
) -> tuple[list[TrainingCase], list[TrainingCase]]:
    """Random training/validation split; at least one case on each side when there are two or more."""
    if len(cases) < 2:
        raise TrainingDataError("at least two cases are needed to split off a validation case")
    shuffled = list(cases)
    random.Random(seed).shuffle(shuffled)
    n_val = min(max(1, round(len(cases) * val_fraction)), len(cases) - 1)
    return sorted(shuffled[n_val:], key=lambda c: c.key), sorted(shuffled[:n_val], key=lambda c: c.key)


def prepare_case(
    case: TrainingCase,
    spacing_mm: Sequence[float],
    window_hu: Sequence[float],
    margin_voxels: Sequence[int],
    body_values: Sequence[int] | None = None,
) -> PreparedCase:
    """Load a case, resample it onto the model grid as inference does, crop around the vertebrae.

    Raises:
        TrainingDataError: unreadable files, masks not on the image's grid, or no vertebra labels.
    """
    try:
        image = load_volume(case.image)
    except VolumeError as exc:
        raise TrainingDataError(f"case {case.key}: {exc}") from None
    vertebrae = _read_mask(case, case.vertebrae, image)
    bodies = _read_mask(case, case.bodies, image)
    reference = model_grid(image, spacing_mm)
    vert = sitk.GetArrayFromImage(resample_labels(vertebrae, reference))
    body_labels = sitk.GetArrayFromImage(resample_labels(bodies, reference))
    unknown = sorted(set(np.unique(vert).tolist()) - set(LEVEL_NAMES) - {0})
    if unknown:
        raise TrainingDataError(f"case {case.key}: {case.vertebrae.name} holds values that are not VerSe ids: {unknown}")
    present = np.argwhere(vert > 0)
    if present.size == 0:
        raise TrainingDataError(f"case {case.key}: {case.vertebrae.name} labels no vertebra")
    low = np.maximum(present.min(axis=0) - np.asarray(margin_voxels), 0)
    high = np.minimum(present.max(axis=0) + 1 + np.asarray(margin_voxels), vert.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
    hu = sitk.GetArrayViewFromImage(resample_image(image, reference))[box]
    in_body = np.isin(body_labels[box], body_values) if body_values else body_labels[box] > 0
    return PreparedCase(
        key=case.key,
        image=window_intensities(hu, window_hu).astype(np.float16),
        vertebrae=vert[box].astype(np.uint8),
        bodies=in_body.astype(np.uint8),
    )


def _read_mask(case: TrainingCase, path: Path, image: sitk.Image) -> sitk.Image:
    try:
        mask = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise TrainingDataError(f"case {case.key}: cannot read {path.name} ({str(exc).strip().splitlines()[-1]})") from None
    same_grid = (
        mask.GetSize() == image.GetSize()
        and np.allclose(mask.GetSpacing(), image.GetSpacing(), atol=1e-3)
        and np.allclose(mask.GetOrigin(), image.GetOrigin(), atol=1e-2)
        and np.allclose(mask.GetDirection(), image.GetDirection(), atol=1e-4)
    )
    if not same_grid:
        raise TrainingDataError(f"case {case.key}: {path.name} is not on the grid of {case.image.name}")
    mask.CopyInformation(image)  # identical within tolerance; make it exact for resampling
    return sitk.Cast(mask, sitk.sitkUInt8)
