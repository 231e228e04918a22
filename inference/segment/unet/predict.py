"""The ``unet`` segmentation backend: sliding-window inference of a trained model directory."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from monai.inferers import sliding_window_inference
from scipy import ndimage

from inference.levels import LEVEL_NAMES, VERSE_IDS
from inference.results import LevelAnchor
from inference.segment.anchors import SPINE_SEQUENCE
from inference.segment.api import BackendOutput
from inference.segment.network_labels import order_warnings, relabel_to_lowest
from inference.segment.unet.network import load_model
from inference.segment.unet.preprocess import network_input
from inference.segment.unet.spec import ModelDirError

WINDOW_OVERLAP = 0.25
"""Fraction by which neighbouring windows overlap; blended with a Gaussian importance map."""
WINDOW_BATCH = 4
"""Windows run through the network together (fewer, larger calls; a 96^3 batch of 4 needs about 1 GB)."""
SLAB_SLICES = 32
"""Slices of logits turned into labels at a time, which bounds the memory of softmax on big label sets."""


def segment_unet(
    image: sitk.Image, *, device: str = "auto", model_dir: Path | None = None, lowest_level: str | None = None
) -> BackendOutput:
    """Label whole vertebrae and vertebral bodies (VerSe ids) with a trained U-Net.

    The CT is resampled onto the model's axis-aligned grid and windowed as in
    training, run through the network by MONAI's sliding-window inference (on
    CUDA when ``device`` allows and a GPU is present), each vertebra keeps its
    largest connected component, and the labels are resampled back onto the
    input grid. A level's confidence is the mean softmax probability of its
    label over its voxels; labels out of cranio-caudal order mark the study
    for review (the network has no rib count to check itself against).
    ``lowest_level``, when given, renames the labels so that the most caudal
    vertebra found is that level (the user's statement overrides the network's count).

    Raises:
        ModelDirError: no or an unusable model directory.
        ValueError: ``device="cuda"`` without a GPU.
    """
    if model_dir is None:
        raise ModelDirError(
            "the unet backend needs a model directory (scpnode segment-train writes one; "
            "set [pipeline] segmentation_model_dir or pass --model-dir)"
        )
    model = load_model(model_dir, device)
    spec = model.spec
    volume, reference = network_input(image, spec.spacing_mm, spec.intensity_window_hu)
    logits = predict_logits(model.network, volume, spec.patch_size, model.device)
    if logits.shape[0] != spec.out_channels:
        raise ModelDirError(
            f"{model_dir}: network gives {logits.shape[0]} output channels, model.json implies {spec.out_channels}"
        )
    index, in_body, probability = labels_from_logits(logits, len(spec.labels))
    del logits
    index = keep_largest_component_per_label(index)

    verse_ids = np.zeros(len(spec.labels) + 1, dtype=np.uint8)
    verse_ids[1:] = spec.labels
    vertebrae = verse_ids[index]
    vertebrae_in = labels_to_input_grid(vertebrae, reference, image)
    body_in = labels_to_input_grid((in_body & (index > 0)).astype(np.uint8), reference, image) > 0
    level_confidence = {
        int(verse_ids[i]): round(float(probability[index == i].mean()), 3)
        for i in np.unique(index) if i > 0
    }
    warnings = order_warnings(vertebrae, reference, "U-Net")
    if not level_confidence:
        warnings.append("the U-Net found no vertebra in this image")
    vertebrae_image = _as_image(vertebrae_in, image)
    bodies_image = _as_image(np.where(body_in, vertebrae_in, 0).astype(np.uint8), image)
    anchors: list[LevelAnchor] = []
    if lowest_level is not None and level_confidence:
        given = relabel_to_lowest(vertebrae_image, bodies_image, lowest_level)
        vertebrae_image, bodies_image, anchors = given.vertebrae, given.bodies, [given.anchor]
        level_confidence = {_shifted_id(k, given.steps): v for k, v in level_confidence.items()}
        warnings += given.warnings
    return BackendOutput(
        vertebrae=vertebrae_image,
        bodies=bodies_image,
        version=model.version,
        labelling_confidence=min(level_confidence.values(), default=0.0),
        level_confidence=level_confidence,
        needs_review=bool(warnings) and bool(level_confidence) and not anchors,
        warnings=warnings,
        anchors=anchors,
        level_anchors={k: ("given",) for k in level_confidence} if anchors else {},
    )


def _shifted_id(verse_id: int, steps: int) -> int:
    name = SPINE_SEQUENCE[SPINE_SEQUENCE.index(LEVEL_NAMES[verse_id]) + steps]
    return VERSE_IDS[name]


def predict_logits(
    network: torch.nn.Module, volume: np.ndarray, patch_size: Sequence[int], device: torch.device
) -> torch.Tensor:
    """Network output ``(channels, z, y, x)`` for a windowed volume, blended over overlapping windows.

    Windows run on ``device``; the blended output stays on the CPU so that a
    large volume does not need to fit in GPU memory (only the windows do).
    """
    inputs = torch.from_numpy(np.ascontiguousarray(volume))[None, None]
    with torch.inference_mode():
        output = sliding_window_inference(
            inputs,
            roi_size=tuple(patch_size),
            sw_batch_size=WINDOW_BATCH,
            predictor=network,
            overlap=WINDOW_OVERLAP,
            mode="gaussian",
            padding_mode="constant",
            cval=0.0,  # windowed air
            sw_device=device,
            device=torch.device("cpu"),
        )
    return output[0]


def labels_from_logits(logits: torch.Tensor, n_labels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split network output into (vertebra channel index, in-body mask, probability of the chosen index)."""
    depth = logits.shape[1]
    index = np.empty(logits.shape[1:], dtype=np.uint8)
    probability = np.empty(logits.shape[1:], dtype=np.float32)
    in_body = np.empty(logits.shape[1:], dtype=bool)
    for start in range(0, depth, SLAB_SLICES):
        slab = logits[:, start:start + SLAB_SLICES]
        softmax = torch.softmax(slab[: n_labels + 1], dim=0)
        best, chosen = softmax.max(dim=0)
        index[start:start + SLAB_SLICES] = chosen.numpy()
        probability[start:start + SLAB_SLICES] = best.numpy()
        in_body[start:start + SLAB_SLICES] = (slab[n_labels + 1] > 0).numpy()
    return index, in_body, probability


def keep_largest_component_per_label(index: np.ndarray) -> np.ndarray:
    """Keep, for every label, only its largest 26-connected component; the rest becomes background.

    A vertebra is one connected piece of bone; stray islands of a label are
    network errors that would otherwise pull the centroid and the volume.
    """
    result = index.copy()
    structure = np.ones((3, 3, 3), dtype=bool)
    for label, box in enumerate(ndimage.find_objects(index), start=1):
        if box is None:
            continue
        region = index[box] == label
        components, count = ndimage.label(region, structure=structure)
        if count > 1:
            sizes = np.bincount(components.ravel())
            sizes[0] = 0
            result[box][region & (components != sizes.argmax())] = 0
    return result


def labels_to_input_grid(labels: np.ndarray, reference: sitk.Image, image: sitk.Image) -> np.ndarray:
    """Labels on the model grid -> labels on ``image``'s grid (array z, y, x), with smooth borders.

    Nearest-neighbour resampling from a coarser model grid would leave
    staircase borders one model voxel (1.5 mm) high on a finer input grid,
    and the cortical shell is about that thick. Instead each label is
    resampled as a 0/1 mask with linear interpolation and kept where it is
    above one half (the per-label interpolation nnU-Net uses). The labels are
    disjoint, so their interpolated masks sum to at most 1 and no two exceed
    one half at the same voxel. Each label is resampled only over its own
    bounding box, so memory stays that of a few vertebrae, not of the CT.
    """
    result = np.zeros(image.GetSize()[::-1], dtype=np.uint8)
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        box = tuple(slice(max(b.start - 1, 0), min(b.stop + 1, n)) for b, n in zip(box, labels.shape))
        mask = sitk.GetImageFromArray((labels[box] == label).astype(np.float32))
        mask.SetSpacing(reference.GetSpacing())
        mask.SetDirection(reference.GetDirection())
        mask.SetOrigin(reference.TransformIndexToPhysicalPoint([b.start for b in box[::-1]]))
        region = _input_region(mask, image)
        if region is None:
            continue
        low, high = region
        resampled = sitk.Resample(
            mask, [int(h - lo) for lo, h in zip(low, high)], sitk.Transform(), sitk.sitkLinear,
            image.TransformIndexToPhysicalPoint([int(v) for v in low]), image.GetSpacing(), image.GetDirection(),
            0.0, sitk.sitkFloat32,
        )
        window = tuple(slice(int(lo), int(h)) for lo, h in zip(low[::-1], high[::-1]))
        result[window][sitk.GetArrayViewFromImage(resampled) > 0.5] = label
    return result


def _input_region(mask: sitk.Image, image: sitk.Image) -> tuple[np.ndarray, np.ndarray] | None:
    """Index range [low, high) (x, y, z) of ``image`` covering ``mask``'s physical extent, clipped to the image."""
    size = mask.GetSize()
    corners = np.array([
        image.TransformPhysicalPointToContinuousIndex(
            mask.TransformContinuousIndexToPhysicalPoint([float(c) for c in corner]))
        for corner in itertools.product(*[(-0.5, n - 0.5) for n in size])
    ])
    low = np.maximum(np.floor(corners.min(axis=0)).astype(int), 0)
    high = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 1, image.GetSize())
    if np.any(high <= low):
        return None
    return low, high


def _as_image(array: np.ndarray, image: sitk.Image) -> sitk.Image:
    labels = sitk.GetImageFromArray(array)
    labels.CopyInformation(image)
    return labels
