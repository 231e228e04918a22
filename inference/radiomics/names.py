"""Feature names: ``<imagetype>_<class>_<feature>``, pyradiomics' form with lower-case transform prefixes.

pyradiomics names the features of a derived image after the image
(``wavelet-HLH_glszm_GrayLevelVariance``, ``log-sigma-1-0-mm-3D_firstorder_Skewness``).
The source studies (and so the published radscore formulas) put the transform
family first and the sub-image in front of the feature name:

- ``original_shape_Maximum2DDiameterRow`` (unchanged),
- ``wavelet_glszm_wavelet-HLH-GrayLevelVariance`` (band ``wavelet-HLH``),
- ``log_firstorder_log-sigma-1-0-mm-3D-Skewness`` (LoG with sigma 1.0 mm),
- ``curvatureflow_glszm_GrayLevelNonUniformity`` (a single-image transform).

:class:`FeatureName` parses and writes this form. Two published names do not
follow it; :data:`PUBLISHED_ALIASES` maps them, deliberately:

- ``wavelet_gldm_wavelet-HHH-Correlation``: pyradiomics' GLDM has no
  Correlation; Correlation is a GLCM feature. It is taken as the GLCM
  Correlation of the wavelet-HHH image (the only Correlation there is), on the
  reading that the paper mislabelled the class.
- ``log_gldm_LargeDependenceLowGrayLevelEmphasis``: printed without its sigma.
  It is taken on the LoG sigma 1.0 mm image, the only sigma the published
  formulas name (``log_firstorder_log-sigma-1-0-mm-3D-Skewness``).

Both are reported under the published name as well as the canonical one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FEATURE_CLASSES: tuple[str, ...] = ("firstorder", "shape", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
"""The seven pyradiomics feature classes the profiles use."""

PUBLISHED_ALIASES: dict[str, str] = {
    "wavelet_gldm_wavelet-HHH-Correlation": "wavelet_glcm_wavelet-HHH-Correlation",
    "log_gldm_LargeDependenceLowGrayLevelEmphasis": "log_gldm_log-sigma-1-0-mm-3D-LargeDependenceLowGrayLevelEmphasis",
}
"""Published name -> the canonical name it is computed as (see the module docstring)."""

_QUALIFIED = {
    "wavelet": re.compile(r"^(wavelet-[HL]{3})-(\w+)$"),
    "log": re.compile(r"^(log-sigma-\d+-\d+-mm-3D)-(\w+)$"),
}


@dataclass(frozen=True, order=True)
class ImageType:
    """One derived image: a transform and, for wavelet and LoG, which sub-image."""

    transform: str
    """Lower-case transform name: ``original``, ``wavelet``, ``log``, ``boxmean``..."""
    qualifier: str | None = None
    """pyradiomics' image type name for a sub-image: ``wavelet-HLH``, ``log-sigma-1-0-mm-3D``."""


@dataclass(frozen=True, order=True)
class FeatureName:
    """A parsed feature name."""

    image: ImageType
    feature_class: str
    feature: str

    @classmethod
    def parse(cls, name: str) -> FeatureName:
        """Parse a canonical name (resolve published aliases first with :func:`canonical`).

        Raises:
            ValueError: the name is not ``<imagetype>_<class>_<feature>`` with a
                known class (and, for wavelet/LoG, a sub-image).
        """
        parts = name.split("_", 2)
        if len(parts) != 3 or parts[1] not in FEATURE_CLASSES or not parts[2]:
            raise ValueError(f"feature name {name!r} is not <imagetype>_<class>_<feature> "
                             f"with a class in {', '.join(FEATURE_CLASSES)}")
        transform, feature_class, rest = parts
        if feature_class == "shape" and transform != "original":
            raise ValueError(f"feature name {name!r}: shape features exist only for the original image")
        pattern = _QUALIFIED.get(transform)
        if pattern is None:
            return cls(ImageType(transform), feature_class, rest)
        match = pattern.match(rest)
        if match is None:
            raise ValueError(f"feature name {name!r}: a {transform} feature needs its sub-image, "
                             f"e.g. {transform}_{feature_class}_{'wavelet-HLH' if transform == 'wavelet' else 'log-sigma-1-0-mm-3D'}-Feature")
        return cls(ImageType(transform, match.group(1)), feature_class, match.group(2))

    def __str__(self) -> str:
        prefix = f"{self.image.qualifier}-" if self.image.qualifier else ""
        return f"{self.image.transform}_{self.feature_class}_{prefix}{self.feature}"


def canonical(name: str) -> str:
    """The name a feature is computed under (published aliases resolved)."""
    return PUBLISHED_ALIASES.get(name, name)


def pyradiomics_image_name(image: ImageType) -> str:
    """pyradiomics' ``imageTypeName`` for an image (``original``, ``wavelet-HLH``, ``boxmean``)."""
    return image.qualifier or image.transform
