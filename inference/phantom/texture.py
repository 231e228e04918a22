"""Trabecular texture of cancellous bone as CT sees it.

At clinical resolution (0.5-1 mm voxels) single trabeculae (0.1-0.3 mm) are
not resolved; what remains is a mottled 3D pattern whose grain is a few
trabecular spacings (1-2 mm) and whose contrast grows with rarefaction, plus
coarser regional variation (focal fatty marrow, Schmorl nodes, haemangioma-like
islands). Heterogeneity of this pattern, not only its mean, carries fracture
risk (the premise of CT radiomics of the spine, e.g. Valentinitsch et al.,
Osteoporos Int 2019). The texture is band-passed Gaussian noise: a fine
sharpened component for the trabecular grain and a coarse component for
regional variation, both scaled by the heterogeneity parameter.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

FINE_SCALE_MM = (0.6, 1.8)
"""Sigmas of the difference of Gaussians that makes the trabecular grain."""
COARSE_SCALE_MM = 4.5
"""Sigma of the regional (marrow) variation."""


def _smooth(array: np.ndarray, spacing_zyx: tuple[float, float, float], sigma_mm: float) -> np.ndarray:
    return ndimage.gaussian_filter(array, [sigma_mm / s for s in spacing_zyx], mode="wrap", truncate=3.0)


def _standardise(array: np.ndarray) -> np.ndarray:
    return (array - array.mean()) / max(float(array.std()), 1e-6)


def trabecular_texture(shape_zyx: tuple[int, int, int], spacing_zyx: tuple[float, float, float],
                       heterogeneity: float, rng: np.random.Generator) -> np.ndarray:
    """A zero-mean texture in HU (numpy z, y, x) to add to the mean cancellous HU.

    ``heterogeneity`` 0 gives a fine, faint grain (standard deviation about 20 HU);
    1 gives a coarse, contrasted pattern (about 85 HU) with regional holes.
    """
    white = rng.standard_normal(shape_zyx, dtype=np.float32)
    low, high = FINE_SCALE_MM
    band = _standardise(_smooth(white, spacing_zyx, low) - _smooth(white, spacing_zyx, high))
    # tanh sharpens the blobs into plate- and rod-like walls around marrow spaces
    grain = _standardise(np.tanh(1.5 * band))
    coarse = _standardise(_smooth(rng.standard_normal(shape_zyx, dtype=np.float32), spacing_zyx, COARSE_SCALE_MM))
    # regional variation is skewed to rarefaction (fatty marrow lowers HU)
    regional = -np.maximum(-coarse, 0.0) * 1.6 + np.maximum(coarse, 0.0) * 0.6
    fine_hu = 20.0 + 35.0 * heterogeneity
    coarse_hu = 55.0 * heterogeneity
    return (fine_hu * grain + coarse_hu * regional).astype(np.float32)
