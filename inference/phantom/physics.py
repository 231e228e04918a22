"""CT physics of the phantom: tissue attenuation, vBMD -> HU, blur, noise, cupping.

Tissue values are typical unenhanced (and portal-venous where ``contrast``)
attenuation at 120 kVp. Cancellous bone HU is tied to vBMD by a linear
calibration like the one of asynchronous QCT (slope about 0.8 mg/cm3
K2HPO4-equivalent per HU; e.g. Brown et al., J Clin Densitom 2017); it is the
only HU <-> vBMD relation the phantom uses, so measurement code can invert it.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import SimpleITK as sitk

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


def tissue_hu(contrast: bool) -> np.ndarray:
    """Look-up table Tissue -> mean HU (cancellous is set per vertebra from vBMD)."""
    table = {
        Tissue.AIR: -1000.0, Tissue.FAT: -100.0, Tissue.MUSCLE: 50.0, Tissue.LUNG: -860.0,
        Tissue.SOFT_TISSUE: 35.0, Tissue.LIVER: 110.0 if contrast else 58.0,
        Tissue.SPLEEN: 120.0 if contrast else 48.0, Tissue.KIDNEY: 170.0 if contrast else 32.0,
        Tissue.BOWEL: 45.0 if contrast else 25.0, Tissue.BOWEL_GAS: -850.0,
        Tissue.BLOOD: 140.0 if contrast else 42.0, Tissue.AORTA: 190.0 if contrast else 42.0,
        Tissue.CSF: 15.0, Tissue.DISC: 85.0, Tissue.CORTICAL: 750.0, Tissue.CANCELLOUS: 150.0,
        Tissue.POSTERIOR_BONE: 380.0, Tissue.RIB_CORTEX: 650.0, Tissue.RIB_MARROW: 180.0,
        Tissue.STERNUM: 300.0, Tissue.PELVIS_CORTEX: 700.0, Tissue.PELVIS_MARROW: 200.0,
        Tissue.HEART: 140.0 if contrast else 40.0,
    }
    lut = np.zeros(max(Tissue) + 1, dtype=np.float32)
    for tissue, value in table.items():
        lut[tissue] = value
    return lut


def scanner_blur(image: sitk.Image, slice_thickness_mm: float, inplane_fwhm_mm: float = 0.9) -> sitk.Image:
    """Partial-volume blur: Gaussian PSF in plane and a slice profile whose FWHM is the slice thickness."""
    fwhm_to_sigma = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    sigma = [inplane_fwhm_mm * fwhm_to_sigma, inplane_fwhm_mm * fwhm_to_sigma, slice_thickness_mm * fwhm_to_sigma]
    # recursive Gaussian (Deriche) is multithreaded and O(N) whatever the sigma
    return sitk.SmoothingRecursiveGaussian(image, sigma)


def correlated_noise(shape: tuple[int, int, int], spacing: tuple[float, float, float], noise_hu: float,
                     rng: np.random.Generator) -> np.ndarray:
    """Zero-mean noise (numpy z, y, x) with standard deviation ``noise_hu`` and a CT-like grain.

    Filtered back-projection noise is correlated over about a pixel in plane;
    white noise smoothed with sigma 0.6 pixel and rescaled gives that grain.
    """
    noise = rng.standard_normal(shape, dtype=np.float32)
    if noise_hu <= 0:
        return np.zeros(shape, dtype=np.float32)
    image = sitk.GetImageFromArray(noise)
    image.SetSpacing(spacing)
    smooth = sitk.SmoothingRecursiveGaussian(image, [0.6 * spacing[0], 0.6 * spacing[1], 0.3 * spacing[2]])
    array = sitk.GetArrayFromImage(smooth)
    array *= np.float32(noise_hu / max(float(array[:: max(1, shape[0] // 16)].std()), 1e-6))
    return array


def cupping(body_distance: np.ndarray, amplitude_hu: float) -> np.ndarray:
    """Beam-hardening cupping: a bias of ``-amplitude_hu`` at the body centre falling to 0 at the skin.

    ``body_distance`` is the normalised elliptic radius inside the body outline (0 centre, 1 skin).
    """
    inside = np.clip(1.0 - body_distance ** 2, 0.0, 1.0)
    return (-amplitude_hu * inside).astype(np.float32)
