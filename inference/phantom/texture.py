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


class SmoothField:
    """A smooth random field (numpy z, y, x), produced one slice at a time.

    Standard normal values on a coarse lattice spanning the volume are
    interpolated linearly; a slice costs four gathers, not a 3D filter. Used
    for the arrangement of bowel and for the slow intensity variation of soft
    tissue (organs are not uniform; fat is stranded).
    """

    def __init__(self, lattice_shape: tuple[int, int, int], shape_zyx: tuple[int, int, int],
                 rng: np.random.Generator) -> None:
        self._lattice = rng.standard_normal(lattice_shape).astype(np.float32)
        self._slices = shape_zyx[0]
        self._rows = _linear_weights(lattice_shape[1], shape_zyx[1])
        self._columns = _linear_weights(lattice_shape[2], shape_zyx[2])

    def plane(self, k: int) -> np.ndarray:
        """The field on slice ``k``."""
        depth = self._lattice.shape[0]
        position = k / max(self._slices - 1, 1) * (depth - 1)
        below = int(min(position, depth - 2))
        weight = position - below
        coarse = (1 - weight) * self._lattice[below] + weight * self._lattice[below + 1]
        (r, rw), (c, cw) = self._rows, self._columns
        rw, cw = rw[:, None], cw[None, :]
        top = coarse[r][:, c] * (1 - cw) + coarse[r][:, c + 1] * cw
        bottom = coarse[r + 1][:, c] * (1 - cw) + coarse[r + 1][:, c + 1] * cw
        return top * (1 - rw) + bottom * rw


def _linear_weights(n_from: int, n_to: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower lattice index and weight of the upper one, to interpolate ``n_from`` samples onto ``n_to``."""
    position = np.linspace(0, n_from - 1, n_to)
    lower = np.minimum(position.astype(int), n_from - 2)
    return lower, (position - lower).astype(np.float32)
