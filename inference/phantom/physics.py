"""CT physics of the phantom: tissue attenuation, vBMD -> HU, blur, noise, cupping.

Tissue values are typical unenhanced (and portal-venous or arterial where
``contrast``) attenuation at 120 kVp. Cancellous bone HU is tied to vBMD by a linear
calibration like the one of asynchronous QCT (slope about 0.8 mg/cm3
K2HPO4-equivalent per HU; e.g. Brown et al., J Clin Densitom 2017); it is the
only HU <-> vBMD relation the phantom uses, so measurement code can invert it.
"""

from __future__ import annotations

from enum import IntEnum

from collections.abc import Callable

import numpy as np
from scipy import ndimage

VBMD_MG_CM3_PER_HU = 0.8
"""Calibration slope: mg/cm3 of vBMD per HU of cancellous bone (intercept 0, marrow ~ water)."""


def hu_from_vbmd(vbmd_mg_cm3: float) -> float:
    """Mean cancellous attenuation (HU) of a vertebra of the given vBMD (mg/cm3)."""
    return float(vbmd_mg_cm3) / VBMD_MG_CM3_PER_HU


def vbmd_from_hu(hu: float) -> float:
    """Inverse of :func:`hu_from_vbmd`."""
    return float(hu) * VBMD_MG_CM3_PER_HU


class Tissue(IntEnum):
    """Tissue classes painted into the phantom; each has a mean HU in :func:`tissue_hu`."""

    AIR = 0
    FAT = 1
    MUSCLE = 2
    LUNG = 3
    SOFT_TISSUE = 4
    LIVER = 5
    SPLEEN = 6
    KIDNEY = 7
    BOWEL = 8
    BOWEL_GAS = 9
    BLOOD = 10
    AORTA = 11
    CSF = 12
    DISC = 13
    CORTICAL = 14
    CANCELLOUS = 15
    POSTERIOR_BONE = 16
    RIB_CORTEX = 17
    RIB_MARROW = 18
    STERNUM = 19
    PELVIS_CORTEX = 20
    PELVIS_MARROW = 21
    HEART = 22


ARTERIAL_HU: dict[Tissue, float] = {
    Tissue.AORTA: 420.0, Tissue.HEART: 340.0, Tissue.BLOOD: 95.0, Tissue.KIDNEY: 230.0,
    Tissue.LIVER: 75.0, Tissue.SPLEEN: 160.0, Tissue.BOWEL: 40.0,
}
"""Arterial phase (CT angiography, arterial chest or abdomen): the aorta and the left heart
brighter than cancellous bone, the cortex of the kidneys enhancing, veins and liver barely."""


def tissue_hu(contrast: bool, phase: str = "portal") -> np.ndarray:
    """Look-up table Tissue -> mean HU (cancellous is set per vertebra from vBMD).

    ``phase`` ("portal" or "arterial") applies where ``contrast``.
    """
    table = {
        Tissue.AIR: -1000.0, Tissue.FAT: -100.0, Tissue.MUSCLE: 50.0, Tissue.LUNG: -860.0,
        Tissue.SOFT_TISSUE: 35.0, Tissue.LIVER: 110.0 if contrast else 58.0,
        Tissue.SPLEEN: 120.0 if contrast else 48.0, Tissue.KIDNEY: 170.0 if contrast else 32.0,
        Tissue.BOWEL: 45.0 if contrast else 25.0, Tissue.BOWEL_GAS: -850.0,
        Tissue.BLOOD: 140.0 if contrast else 42.0, Tissue.AORTA: 190.0 if contrast else 42.0,
        Tissue.CSF: 15.0, Tissue.DISC: 85.0, Tissue.CORTICAL: 650.0, Tissue.CANCELLOUS: 150.0,
        Tissue.POSTERIOR_BONE: 380.0, Tissue.RIB_CORTEX: 650.0, Tissue.RIB_MARROW: 180.0,
        Tissue.STERNUM: 300.0, Tissue.PELVIS_CORTEX: 700.0, Tissue.PELVIS_MARROW: 200.0,
        Tissue.HEART: 140.0 if contrast else 40.0,
    }
    if contrast and phase == "arterial":
        table.update(ARTERIAL_HU)
    lut = np.zeros(max(Tissue) + 1, dtype=np.float32)
    for tissue, value in table.items():
        lut[tissue] = value
    return lut


FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
INPLANE_PSF_FWHM_MM = 0.9
"""In-plane resolution of a standard abdominal kernel (about 0.9 mm FWHM)."""


def gaussian_taps(sigma_voxels: float) -> np.ndarray:
    """Normalised Gaussian weights over +-3 sigma (at least 3 taps)."""
    radius = max(1, int(np.ceil(3.0 * sigma_voxels)))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (offsets / max(sigma_voxels, 1e-3)) ** 2)
    return (weights / weights.sum()).astype(np.float32)


class NoisePool:
    """Zero-mean, unit-variance CT-like noise planes, drawn from a pool.

    Filtered back-projection noise is correlated over about a pixel in plane
    and nearly independent between slices. Drawing 78 million normal deviates
    for a 512 x 512 x 300 study costs seconds, so a pool of planes is made
    once and each slice takes one, cyclically shifted and possibly mirrored by
    random amounts: the result has the same statistics and no visible repeat.
    """

    def __init__(self, shape_yx: tuple[int, int], rng: np.random.Generator, size: int = 24) -> None:
        white = rng.standard_normal((size, *shape_yx), dtype=np.float32)
        taps = np.array([0.25, 0.5, 0.25], np.float32)
        grain = ndimage.correlate1d(ndimage.correlate1d(white, taps, axis=1, mode="wrap"), taps, axis=2, mode="wrap")
        self._planes = grain / grain.std()
        self._rng = rng

    def plane(self) -> np.ndarray:
        index = int(self._rng.integers(len(self._planes)))
        shift = (int(self._rng.integers(self._planes.shape[1])), int(self._rng.integers(self._planes.shape[2])))
        plane = np.roll(self._planes[index], shift, axis=(0, 1))
        return plane[:, ::-1] if self._rng.random() < 0.5 else plane


def acquire(hu: np.ndarray, spacing_xyz: tuple[float, float, float], slice_thickness_mm: float, noise_hu: float,
            rng: np.random.Generator, bias: Callable[[int], np.ndarray | float] | None = None) -> np.ndarray:
    """What the scanner reconstructs from the true attenuation ``hu`` (numpy z, y, x).

    Partial-volume blur (an in-plane PSF and a slice profile whose FWHM is the
    slice thickness), an optional per-slice bias (beam hardening), CT noise of
    standard deviation ``noise_hu``, and the -1024 HU floor of reconstructions.
    Works slice by slice so the arrays stay in cache.
    """
    out = np.empty_like(hu)
    z_taps = gaussian_taps(slice_thickness_mm * FWHM_TO_SIGMA / spacing_xyz[2])
    xy_sigma = INPLANE_PSF_FWHM_MM * FWHM_TO_SIGMA / np.array(spacing_xyz[:2])
    radius = len(z_taps) // 2
    pool = NoisePool(hu.shape[1:], rng) if noise_hu > 0 else None
    last = hu.shape[0] - 1
    for k in range(hu.shape[0]):
        plane = z_taps[radius] * hu[k]
        for offset in range(1, radius + 1):
            plane += z_taps[radius + offset] * (hu[min(k + offset, last)] + hu[max(k - offset, 0)])
        for axis, sigma in ((1, xy_sigma[0]), (0, xy_sigma[1])):
            if sigma > 0.2:  # below a fifth of a pixel the PSF changes nothing visible
                plane = ndimage.correlate1d(plane, gaussian_taps(sigma), axis=axis, mode="nearest")
        if bias is not None:
            plane += bias(k)
        if pool is not None:
            plane += noise_hu * pool.plane()
        np.maximum(plane, -1024.0, out=out[k])
    return out


def cupping(radius2: np.ndarray, amplitude_hu: float) -> np.ndarray:
    """Beam-hardening cupping: ``-amplitude_hu`` at the body centre, 0 at the skin.

    ``radius2`` is the squared normalised elliptic radius of the body outline (0 centre, 1 skin).
    """
    return (-amplitude_hu * np.clip(1.0 - radius2, 0.0, 1.0)).astype(np.float32)
