"""Bring working-grid labels back to full resolution with the CT's own boundaries.

Labels found on the coarse working grid are upsampled (nearest neighbour) and
then re-thresholded on the canonical grid within one working voxel of where
they were, so a 1 mm study gets 1 mm boundaries; each refined voxel takes the
label of the nearest upsampled label voxel. Work is done in a crop around the
spine, which keeps a 512 x 512 x 300 study cheap.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from inference.segment.anatomical.column import BONE_HU
from inference.segment.anatomical.grid import labels_to_grid
from inference.segment.anatomical.vertebrae import BODY_HU, trim_blurred_outer_layer


def refine_labels(
    canonical: sitk.Image, working: sitk.Image, bodies: np.ndarray, vertebrae: np.ndarray, *, body_hu: float = BODY_HU
) -> tuple[np.ndarray, np.ndarray]:
    """(bodies, vertebrae) label arrays on the canonical grid.

    Inside the working-grid bodies, marrow counts as body above ``body_hu`` (the
    scan's own body threshold, lower than :data:`BODY_HU` for faint marrow); the
    band around them, where discs and soft tissue lie, keeps :data:`BODY_HU`.
    """
    up_bodies = labels_to_grid(bodies, working, canonical)
    up_vertebrae = labels_to_grid(vertebrae, working, canonical)
    if working.GetSize() == canonical.GetSize() or not up_vertebrae.any():
        return up_bodies, up_vertebrae

    spacing_zyx = np.asarray(tuple(reversed(canonical.GetSpacing())))
    working_zyx = np.asarray(tuple(reversed(working.GetSpacing())))
    reach = np.maximum(np.round(working_zyx / spacing_zyx).astype(int), 1)
    box = _crop_box(up_vertebrae > 0, reach + 1)
    hu = sitk.GetArrayViewFromImage(canonical)[box]
    # light smoothing: the working grid was smoothed by resampling; full resolution has its noise
    smoothed = ndi.gaussian_filter(hu.astype(np.float32), sigma=0.6 / spacing_zyx)

    structure = _ellipsoid(reach)
    body_tissue = (smoothed > BODY_HU) | ((up_bodies[box] > 0) & (smoothed > body_hu))
    refined_bodies = _refine(up_bodies[box], body_tissue, structure, fill_holes=True)
    refined_bodies = trim_blurred_outer_layer(refined_bodies, hu)
    bone = (smoothed > BONE_HU) | (refined_bodies > 0)
    refined_vertebrae = _refine(up_vertebrae[box], bone, structure, fill_holes=False)
    refined_vertebrae[refined_bodies > 0] = refined_bodies[refined_bodies > 0]

    out_bodies = np.zeros_like(up_bodies)
    out_vertebrae = np.zeros_like(up_vertebrae)
    out_bodies[box] = refined_bodies
    out_vertebrae[box] = refined_vertebrae
    return out_bodies, out_vertebrae


def _refine(labels: np.ndarray, tissue: np.ndarray, structure: np.ndarray, *, fill_holes: bool) -> np.ndarray:
    near = ndi.binary_dilation(labels > 0, structure=structure)
    mask = near & tissue
    if fill_holes:
        for z in range(mask.shape[0]):
            mask[z] = ndi.binary_fill_holes(mask[z])
        mask &= near
    if not mask.any():
        return np.zeros_like(labels)
    _, (iz, iy, ix) = ndi.distance_transform_edt(labels == 0, return_indices=True)
    nearest = labels[iz, iy, ix]
    return np.where(mask, nearest, 0).astype(labels.dtype)


def _crop_box(mask: np.ndarray, margin: np.ndarray) -> tuple[slice, ...]:
    coords = np.nonzero(mask)
    return tuple(
        slice(max(int(c.min()) - int(m), 0), min(int(c.max()) + int(m) + 1, n))
        for c, m, n in zip(coords, margin, mask.shape, strict=True)
    )


def _ellipsoid(radius: np.ndarray) -> np.ndarray:
    grids = np.ogrid[tuple(slice(-r, r + 1) for r in radius)]
    return sum((g / max(r, 1)) ** 2 for g, r in zip(grids, radius, strict=True)) <= 1.0
