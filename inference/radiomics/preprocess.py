"""Image-level preprocessing a profile asks for before any VOI is cropped: MR intensity normalisation.

MR intensities have no absolute scale: the same tissue differs between
scanners, coils and patients, and within one image by the coil's smooth
sensitivity profile (the bias field). The MRI studies this node reproduces
therefore correct the bias field (N4, Tustison et al., IEEE TMI 2010;29:1310,
as implemented in SimpleITK) and z-score the intensities before extraction.

- **N4** runs on a copy shrunk by :data:`N4_SHRINK` in-plane (the field is
  smooth; this is how ANTs and SimpleITK's own example run it) inside the
  body (Otsu foreground); the log field is then evaluated at full resolution
  and divided out.
- **z-score** uses the mean and SD of the body (Otsu foreground), scaled by
  :data:`ZSCORE_SCALE` as pyradiomics' ``normalizeScale`` does, so that its
  MR settings (``binWidth`` 5) apply. pyradiomics' own ``normalize`` uses the
  whole image; here the air around the body, whose share depends on the
  field of view, is left out.
- **Resampling** to the profile's spacing with its interpolator (B-spline by
  default, as pyradiomics' MR examples); the ROI follows with nearest neighbour.

CT needs none of this (HU are absolute); a CT profile does not set these steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import SimpleITK as sitk

if TYPE_CHECKING:
    from inference.radiomics.profiles import Profile

N4_SHRINK = 4
N4_ITERATIONS = (50, 50, 50, 50)
ZSCORE_SCALE = 100.0
INTERPOLATORS = {"bspline": sitk.sitkBSpline, "linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor,
                 "lanczos": sitk.sitkLanczosWindowedSinc}


def foreground(image: sitk.Image) -> sitk.Image:
    """The body: the voxels above Otsu's threshold (1), the air around it (0)."""
    return sitk.OtsuThreshold(image, 0, 1, 200)


def n4_corrected(image: sitk.Image) -> sitk.Image:
    """``image`` divided by its N4 bias field (estimated inside :func:`foreground`)."""
    image = sitk.Cast(image, sitk.sitkFloat32)
    shift = min(0.0, float(sitk.GetArrayViewFromImage(image).min()))
    positive = image - shift + 1.0  # N4 works on the log of the intensities
    mask = foreground(positive)
    factors = [N4_SHRINK if size >= 4 * N4_SHRINK else 1 for size in positive.GetSize()]
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations(list(N4_ITERATIONS))
    corrector.Execute(sitk.Shrink(positive, factors), sitk.Shrink(mask, factors))
    log_field = corrector.GetLogBiasFieldAsImage(positive)
    return sitk.Cast(positive / sitk.Exp(log_field), sitk.sitkFloat32)


def z_scored(image: sitk.Image, scale: float = ZSCORE_SCALE) -> sitk.Image:
    """``scale * (image - mean) / SD``, mean and SD of the body (:func:`foreground`)."""
    image = sitk.Cast(image, sitk.sitkFloat32)
    statistics = sitk.LabelStatisticsImageFilter()
    statistics.Execute(image, foreground(image))
    if not statistics.HasLabel(1) or statistics.GetSigma(1) <= 0:
        raise ValueError("cannot z-score: the image has no foreground with varying intensity")
    return sitk.Cast((image - statistics.GetMean(1)) * (scale / statistics.GetSigma(1)), sitk.sitkFloat32)


def resampled(image: sitk.Image, mask: sitk.Image, spacing_mm: tuple[float, ...],
              interpolator: str) -> tuple[sitk.Image, sitk.Image]:
    """Image (with ``interpolator``) and mask (nearest neighbour) on a grid of ``spacing_mm`` over the same extent."""
    if interpolator not in INTERPOLATORS:
        raise ValueError(f"unknown interpolator {interpolator!r}; known: {', '.join(INTERPOLATORS)}")
    size = [max(1, round(n * s / t)) for n, s, t in zip(image.GetSize(), image.GetSpacing(), spacing_mm, strict=True)]
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetSpacing(tuple(float(s) for s in spacing_mm))
    grid.SetDirection(image.GetDirection())
    # the first voxel's corner stays where it was, so the new grid covers the same extent
    corner = image.TransformContinuousIndexToPhysicalPoint([-0.5] * image.GetDimension())
    half = [0.5 * t for t in spacing_mm]
    grid.SetOrigin(tuple(c + sum(d * h for d, h in zip(row, half, strict=True))
                         for c, row in zip(corner, _rows(image.GetDirection(), image.GetDimension()), strict=True)))
    new_image = sitk.Resample(image, grid, sitk.Transform(), INTERPOLATORS[interpolator], 0.0, sitk.sitkFloat32)
    new_mask = sitk.Resample(mask, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, mask.GetPixelID())
    return new_image, new_mask


def _rows(direction: tuple[float, ...], dimension: int) -> list[tuple[float, ...]]:
    return [tuple(direction[r * dimension:(r + 1) * dimension]) for r in range(dimension)]


def prepare_image(image: sitk.Image, mask: sitk.Image, profile: Profile) -> tuple[sitk.Image, sitk.Image]:
    """The profile's image-level steps in order: N4, z-score, resampling (each only where it asks for it)."""
    if profile.bias_correction:
        image = n4_corrected(image)
    if profile.normalisation == "z-score":
        image = z_scored(image)
    if profile.resample_mm is not None:
        image, mask = resampled(image, mask, profile.resample_mm, profile.interpolator)
    return image, mask
