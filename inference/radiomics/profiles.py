"""Named extraction profiles that reproduce the source studies.

- ``che2025`` - T11-L2 cortical shell and cancellous core (Che et al., 2025):
  7 feature classes on 24 images: original, 8 wavelet bands, LoG (sigma 1, 2,
  3 mm) and the 12 SimpleITK transforms of :mod:`.transforms`. pyradiomics 3
  gives 14 shape + 24 x 92 = 2,222 features per VOI (the paper reports about
  2,286; class contents differ between pyradiomics versions). GLCM's Maximal
  Correlation Coefficient is left out of a full extraction: its eigenvalue
  problem per angle took 60 % of the extraction time on noisy transforms
  with many grey levels, and no published formula uses it (a model may
  still name it).
- ``yu2025`` - whole vertebral body (L1-L4 in the study), original image only,
  pyradiomics' default feature set: 107 features (the paper's "about 129"
  counts pyradiomics' diagnostic values too, which are not features).
- ``lumbar1197`` - whole vertebral body; intensities of the whole CT clipped
  to its 0.1/99.9 percentiles and scaled to 0-255, then original + LoG (sigma
  1.0, 1.5, 2.0, 2.5 mm) + 8 wavelet bands: 14 shape + 13 x 91 = 1,197
  features, as published. pyradiomics 3 computes 24 GLCM features per image
  where the published count has 22; the paper lists none, so the two left out
  are our reading: the Maximal Correlation Coefficient (numerically unstable)
  and Sum Average (twice Joint Average; pyradiomics warns that it duplicates
  it).

- ``mr_t2`` - a given ROI (2D or 3D) on MR: N4 bias-field correction and a
  z-score over the body first (:mod:`.preprocess`), then original + LoG
  (sigma 1, 2, 3 mm) + 8 wavelet bands with pyradiomics' MR bin width (5 on
  the x 100 z-score scale, as its MR example settings). A profile says which
  modality it is for; CT-only steps (segmentation, vBMD, HU windows) are
  refused on MR by the extraction.

Every CT profile keeps pyradiomics' default settings (fixed bin width 25, GLCM
distance 1, coif1 wavelet of level 1, no resampling), so ``original`` features
equal those of pyradiomics' own ``RadiomicsFeatureExtractor``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from inference.radiomics.names import FEATURE_CLASSES, PUBLISHED_ALIASES, ImageType

WAVELET_BANDS: tuple[str, ...] = tuple(f"wavelet-{a}{b}{c}" for a in "LH" for b in "LH" for c in "LH")
"""The 8 sub-bands of a level-1 3D stationary wavelet decomposition (pyradiomics' names)."""

PYRADIOMICS_DEFAULTS: dict[str, Any] = {"binWidth": 25, "label": 1}
"""Settings passed to every feature class (pyradiomics' defaults, stated)."""


def log_image_name(sigma_mm: float) -> str:
    """pyradiomics' image type name of a LoG sigma: 1.0 -> ``log-sigma-1-0-mm-3D``."""
    return "log-sigma-%s-mm-3D" % str(float(sigma_mm)).replace(".", "-")


@dataclass(frozen=True)
class Profile:
    """What to extract from one VOI: transforms, feature classes, settings and preprocessing."""

    name: str
    description: str
    transforms: tuple[str, ...]
    """``original``, ``wavelet``, ``log`` and/or names of :data:`SITK_TRANSFORMS`."""
    vois: tuple[str, ...]
    """Which VOIs of a vertebra the study used: ``cortical``, ``cancellous``, ``body``."""
    log_sigmas_mm: tuple[float, ...] = ()
    feature_classes: tuple[str, ...] = FEATURE_CLASSES
    settings: Mapping[str, Any] = field(default_factory=lambda: dict(PYRADIOMICS_DEFAULTS))
    excluded_features: tuple[str, ...] = ()
    """``<class>_<feature>`` left out of a full extraction (a model may still ask for them)."""
    clip_percentiles: tuple[float, float] | None = None
    """Clip intensities to these percentiles of the whole image and scale them to 0-255 before any transform."""
    aliases: Mapping[str, str] = field(default_factory=dict)
    """Published feature names -> canonical names, also reported by a full extraction."""
    modality: str = "CT"
    """The modality whose intensities the settings assume: ``CT`` (HU, absolute) or ``MR`` (no scale)."""
    bias_correction: bool = False
    """N4 bias-field correction of the whole image first (:mod:`inference.radiomics.preprocess`)."""
    normalisation: str | None = None
    """``z-score``: intensities z-scored over the body (x 100) before any transform."""
    resample_mm: tuple[float, float, float] | None = None
    """Resample image and VOI to this spacing (x, y, z) first; None keeps the acquired grid."""
    interpolator: str = "bspline"
    """Interpolator of the image when resampling (``bspline``, ``linear``, ``lanczos``, ``nearest``)."""

    def image_types(self) -> list[ImageType]:
        """Every derived image the profile computes features on."""
        images: list[ImageType] = []
        for transform in self.transforms:
            if transform == "wavelet":
                images += [ImageType("wavelet", band) for band in WAVELET_BANDS]
            elif transform == "log":
                images += [ImageType("log", log_image_name(s)) for s in self.log_sigmas_mm]
            else:
                images.append(ImageType(transform))
        return images


CHE2025 = Profile(
    name="che2025",
    description="T11-L2 cortical/cancellous radiomics (Che et al., 2025): 7 classes on 24 images",
    transforms=("original", "boxmean", "additivegaussiannoise", "binomialblurimage", "curvatureflow",
                "boxsigmaimage", "log", "wavelet", "normalize", "laplaciansharpening", "discretegaussian",
                "mean", "specklenoise", "recursivegaussian", "shotnoise"),
    vois=("cortical", "cancellous"),
    log_sigmas_mm=(1.0, 2.0, 3.0),
    excluded_features=("glcm_MCC",),
    aliases=PUBLISHED_ALIASES,
)

YU2025 = Profile(
    name="yu2025",
    description="whole-body radiomics (Yu et al., 2025): original image, pyradiomics default features",
    transforms=("original",),
    vois=("body",),
)

LUMBAR1197 = Profile(
    name="lumbar1197",
    description="whole-body radiomics (1,197 features): whole-image 0.1/99.9 percentile clipping and 0-255 "
                "scaling; original, LoG, wavelet",
    transforms=("original", "log", "wavelet"),
    vois=("body",),
    log_sigmas_mm=(1.0, 1.5, 2.0, 2.5),
    excluded_features=("glcm_MCC", "glcm_SumAverage"),
    clip_percentiles=(0.1, 99.9),
)

MR_T2 = Profile(
    name="mr_t2",
    description="MR ROI radiomics (T2-weighted sagittal, osteoporotic vs malignant compression fracture): "
                "N4 bias correction and z-score, then original, LoG and wavelet",
    transforms=("original", "log", "wavelet"),
    vois=("roi",),
    log_sigmas_mm=(1.0, 2.0, 3.0),
    settings={"binWidth": 5, "label": 1},
    excluded_features=("glcm_MCC",),
    modality="MR",
    bias_correction=True,
    normalisation="z-score",
)

PROFILES: dict[str, Profile] = {p.name: p for p in (CHE2025, YU2025, LUMBAR1197, MR_T2)}


def get_profile(name: str) -> Profile:
    """The profile called ``name``.

    Raises:
        ValueError: unknown profile, listing the known ones.
    """
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown radiomics profile {name!r}; known: {', '.join(PROFILES)}") from None

