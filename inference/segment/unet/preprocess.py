"""The one preprocessing the network sees, shared by training and inference.

A CNN is not orientation invariant, and the input may come in any orientation
and spacing. Every image is therefore resampled onto an axis-aligned LPS grid
(identity direction) at the model spacing that covers the same physical box,
so that array axes (z, y, x) always mean (inferior->superior, anterior->posterior,
right->left). Training and inference call the same functions, so the network
never sees data prepared two different ways.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

AIR_HU = -1024.0
"""Value outside the scanned field of view."""


def model_grid(image: sitk.Image, spacing_mm: Sequence[float]) -> sitk.Image:
    """An empty reference image: axis-aligned LPS, ``spacing_mm``, covering ``image``'s physical extent."""
    size = np.asarray(image.GetSize(), dtype=float)
    corners = np.array([
        image.TransformContinuousIndexToPhysicalPoint(tuple(float(c) for c in corner))
        for corner in itertools.product(*[(-0.5, s - 0.5) for s in size])
    ])
    low, high = corners.min(axis=0), corners.max(axis=0)
    spacing = np.asarray(spacing_mm, dtype=float)
    grid_size = np.maximum(np.ceil((high - low) / spacing).astype(int), 1)
    reference = sitk.Image([int(s) for s in grid_size], sitk.sitkUInt8)
    reference.SetSpacing(tuple(float(s) for s in spacing))
    reference.SetOrigin(tuple(float(v) for v in low + spacing / 2))
    reference.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return reference


def resample_image(image: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """CT onto ``reference``'s grid: linear interpolation, air outside the field of view."""
    return sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, AIR_HU, sitk.sitkFloat32)


def resample_labels(labels: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """Label image onto ``reference``'s grid (nearest neighbour keeps the label values)."""
    return sitk.Resample(labels, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


def window_intensities(hu: np.ndarray, window_hu: Sequence[float]) -> np.ndarray:
    """Map HU in ``window_hu`` = (low, high) linearly onto 0..1, clipping outside (float32)."""
    low, high = float(window_hu[0]), float(window_hu[1])
    scaled = (hu.astype(np.float32) - low) / (high - low)
    return np.clip(scaled, 0.0, 1.0, out=scaled)


def network_input(image: sitk.Image, spacing_mm: Sequence[float], window_hu: Sequence[float]) -> tuple[np.ndarray, sitk.Image]:
    """CT -> (windowed float32 array (z, y, x) on the model grid, the model grid reference image)."""
    reference = model_grid(image, spacing_mm)
    resampled = resample_image(image, reference)
    return window_intensities(sitk.GetArrayViewFromImage(resampled), window_hu), reference
