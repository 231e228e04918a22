"""Image transforms pyradiomics lacks, as SimpleITK filters.

The T11-L2 study (Che et al., 2025) names its derived images after SimpleITK
filters (``boxmean``, ``curvatureflow``, ``shotnoise``...). Each transform here
is the SimpleITK filter of that name with SimpleITK's default parameters, so a
site with the same library reproduces the same image. Departures from the
defaults, and why:

- the noise filters get a fixed seed and run single-threaded: SimpleITK's
  default seed (0) means "wall clock", and ITK seeds its generators per
  work unit, so without both a scan would not always give the same features;
- shot (Poisson) and speckle (gamma) noise are multiplicative models of a
  non-negative signal, so they act on ``HU + 1024`` (attenuation relative to
  vacuum) and the result is shifted back to HU;
- ``normalize`` (z-score over the image it sees) is multiplied by 100, as
  pyradiomics' own ``normalizeScale`` does, so that a fixed bin width of 25
  still gives several grey levels instead of one.

pyradiomics' own filters (LoG, wavelet) come from
:mod:`radiomics.imageoperations` and are not repeated here.
"""

from __future__ import annotations

from collections.abc import Callable

import SimpleITK as sitk

NOISE_SEED = 20250611
"""Seed of every noise transform (any fixed non-zero value; 0 means wall clock in SimpleITK)."""
HU_TO_ATTENUATION_SHIFT = 1024.0
"""Added before, subtracted after multiplicative noise models (air at -1000 HU -> about 0)."""
NORMALIZE_SCALE = 100.0


def _seeded(noise_filter: sitk.ImageFilter, image: sitk.Image) -> sitk.Image:
    noise_filter.SetSeed(NOISE_SEED)
    noise_filter.SetNumberOfThreads(1)
    return noise_filter.Execute(image)


def _on_attenuation(noise_filter: sitk.ImageFilter, image: sitk.Image) -> sitk.Image:
    shifted = sitk.Cast(image, sitk.sitkFloat32) + HU_TO_ATTENUATION_SHIFT
    return _seeded(noise_filter, shifted) - HU_TO_ATTENUATION_SHIFT


def additive_gaussian_noise(image: sitk.Image) -> sitk.Image:
    """Gaussian noise, mean 0, SD 1 (SimpleITK defaults), seeded."""
    return _seeded(sitk.AdditiveGaussianNoiseImageFilter(), sitk.Cast(image, sitk.sitkFloat32))


def speckle_noise(image: sitk.Image) -> sitk.Image:
    """Multiplicative gamma noise, SD 1 (SimpleITK default), seeded, on HU + 1024."""
    return _on_attenuation(sitk.SpeckleNoiseImageFilter(), image)


def shot_noise(image: sitk.Image) -> sitk.Image:
    """Poisson noise, scale 1 (SimpleITK default), seeded, on HU + 1024."""
    return _on_attenuation(sitk.ShotNoiseImageFilter(), image)


def normalize(image: sitk.Image) -> sitk.Image:
    """Z-score over the image given (the padded VOI crop), times 100."""
    return sitk.Normalize(sitk.Cast(image, sitk.sitkFloat32)) * NORMALIZE_SCALE


def _float(function: Callable[[sitk.Image], sitk.Image]) -> Callable[[sitk.Image], sitk.Image]:
    return lambda image: function(sitk.Cast(image, sitk.sitkFloat32))


SITK_TRANSFORMS: dict[str, Callable[[sitk.Image], sitk.Image]] = {
    "boxmean": _float(sitk.BoxMean),                        # radius 1 voxel
    "additivegaussiannoise": additive_gaussian_noise,
    "binomialblurimage": _float(sitk.BinomialBlur),         # 1 repetition
    "curvatureflow": _float(sitk.CurvatureFlow),            # time step 0.05, 5 iterations
    "boxsigmaimage": _float(sitk.BoxSigma),                 # radius 1 voxel
    "normalize": normalize,
    "laplaciansharpening": _float(sitk.LaplacianSharpening),
    "discretegaussian": _float(sitk.DiscreteGaussian),      # variance 1 mm^2
    "mean": _float(sitk.Mean),                              # radius 1 voxel
    "specklenoise": speckle_noise,
    "recursivegaussian": _float(sitk.RecursiveGaussian),    # sigma 1 mm along x (SimpleITK default)
    "shotnoise": shot_noise,
}
"""Transform name (the lower-case feature-name prefix) -> function on a HU image."""
