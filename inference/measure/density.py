"""Attenuation statistics of compartments, and the trabecular region density is read from."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from inference.results import CompartmentStats

TRABECULAR_MARGIN_MM = 2.0
"""Distance kept from the cortical shell when reading trabecular density: as a QCT or
opportunistic-CT region of interest avoids the cortex, so partial volume of the shell
(about 750 HU) does not raise the cancellous mean."""
MIN_TRABECULAR_VOXELS = 50


def compartment_stats(hu: np.ndarray, mask: np.ndarray, voxel_volume_ml: float) -> CompartmentStats | None:
    """Size and HU mean/median/SD of the voxels in ``mask``; None for an empty mask."""
    values = hu[mask]
    if values.size == 0:
        return None
    return CompartmentStats(
        voxels=int(values.size),
        volume_ml=float(values.size * voxel_volume_ml),
        mean_hu=float(values.mean(dtype=np.float64)),
        median_hu=float(np.median(values)),
        sd_hu=float(values.std(dtype=np.float64)),
    )


def trabecular_region(cancellous: np.ndarray, spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """The cancellous core at least :data:`TRABECULAR_MARGIN_MM` from its border.

    Falls back to the whole core when the erosion would leave fewer than
    :data:`MIN_TRABECULAR_VOXELS` voxels (thick slices, small bodies).
    """
    # distance to the nearest voxel outside, less half a voxel: the centre's distance to the core's surface
    depth = ndimage.distance_transform_edt(cancellous, sampling=spacing_zyx) - 0.5 * min(spacing_zyx)
    inside = depth > TRABECULAR_MARGIN_MM
    return inside if int(inside.sum()) >= MIN_TRABECULAR_VOXELS else cancellous
