"""Radiomics extraction from one VOI: a full profile, or only the features a model needs.

The steps follow pyradiomics' ``RadiomicsFeatureExtractor.execute`` (check the
mask, shape on the original image, every other class on each derived image
cropped to the VOI) with two differences that make per-study scoring fast:

- derived images are computed on the VOI's bounding box padded by
  :data:`PAD_MM`, not on the whole CT (filters are local; the padding keeps
  the VOI's neighbourhood, and the crop depends only on image and mask, so
  features stay reproducible);
- with ``features=[...]`` only the derived images and classes those names
  need are computed (model-driven extraction): the 29 published features
  need 14 images and no GLRLM/NGTDM instead of 24 images x 7 classes.

Features of the original image are bit-identical to pyradiomics' extractor
(cropping does not change which voxels a feature class sees).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator

import numpy as np
import SimpleITK as sitk
from radiomics import getFeatureClasses, imageoperations

from inference.radiomics.names import FeatureName, ImageType, canonical, pyradiomics_image_name
from inference.radiomics.preprocess import prepare_image
from inference.radiomics.profiles import Profile, get_profile, log_image_name
from inference.radiomics.transforms import SITK_TRANSFORMS

PAD_MM = 10.0
"""Neighbourhood kept around a VOI for filtering (covers LoG sigma 3 mm and the wavelet support)."""

# pyradiomics logs every image type and class at INFO and warns on every GLCM that Sum Average
# duplicates Joint Average; failures reach us as exceptions, so only its errors are worth a log line.
logging.getLogger("radiomics").setLevel(logging.ERROR)

_Plan = dict[ImageType, dict[str, set[str] | None]]
"""Derived image -> feature class -> feature names (None: all of the class)."""


class RadiomicsError(ValueError):
    """A VOI or a feature request that cannot be extracted; the message says why."""


def extract_features(image: sitk.Image, mask: sitk.Image, profile: Profile | str,
                     features: Iterable[str] | None = None) -> dict[str, float]:
    """Radiomics features of one VOI.

    Args:
        image: CT in HU, or an MR image for an MR profile (normalised here as the profile says).
        mask: binary VOI (1 inside) on the image grid.
        profile: a :class:`Profile` or its name (``che2025``, ``yu2025``, ``lumbar1197``).
        features: the names to compute (model-driven extraction; published
            aliases allowed); None: every feature of the profile, plus the
            profile's published aliases.

    Returns:
        ``{name: value}``; requested names appear exactly as asked.

    Raises:
        RadiomicsError: an unknown or malformed name, a name outside the
            profile, or a VOI that pyradiomics cannot use (e.g. too small).
    """
    profile = get_profile(profile) if isinstance(profile, str) else profile
    if features is None:
        plan = _full_plan(profile)
        aliases = dict(profile.aliases)
    else:
        requested = list(dict.fromkeys(features))
        plan = _plan_for(requested, profile)
        aliases = {name: canonical(name) for name in requested if canonical(name) != name}

    image, mask = prepare_image(image, mask, profile)
    crop, crop_mask, bbox = _crop_to_voi(image, mask, profile)
    settings = dict(profile.settings)
    values: dict[str, float] = {}
    shape_request = plan.get(ImageType("original"), {}).get("shape", False)
    if shape_request is not False:
        values.update(_compute(crop, crop_mask, bbox, ImageType("original"), {"shape": shape_request}, settings))
    for derived_type, derived in _derived_images(crop, crop_mask, profile, plan):
        classes = {cls: names for cls, names in plan[derived_type].items() if cls != "shape"}
        if classes:
            values.update(_compute(derived, crop_mask, bbox, derived_type, classes, settings))
    missing = [str(n) for n in _planned_names(plan) if str(n) not in values] if features is not None else []
    if missing:
        raise RadiomicsError(f"could not compute {len(missing)} feature(s), e.g. {missing[0]} "
                             "(image too small for the filter?)")
    for alias, name in aliases.items():
        if name in values:
            values[alias] = values[name]
    return values if features is None else {name: values[name] for name in requested}


def _full_plan(profile: Profile) -> _Plan:
    """Every class of every image of the profile; None (all features) unless some are excluded."""
    classes = getFeatureClasses()
    plan: _Plan = {}
    for image in profile.image_types():
        plan[image] = {}
        for cls in profile.feature_classes:
            if cls == "shape" and image.transform != "original":
                continue
            excluded = {name.split("_", 1)[1] for name in profile.excluded_features if name.startswith(f"{cls}_")}
            plan[image][cls] = None if not excluded else {
                name for name, deprecated in classes[cls].getFeatureNames().items()
                if not deprecated and name not in excluded}
    return plan


def _plan_for(names: list[str], profile: Profile) -> _Plan:
    known_images = set(profile.image_types())
    classes = getFeatureClasses()
    plan: _Plan = defaultdict(dict)
    for name in names:
        try:
            parsed = FeatureName.parse(canonical(name))
        except ValueError as exc:
            raise RadiomicsError(str(exc)) from None
        if parsed.image not in known_images:
            raise RadiomicsError(f"feature {name!r}: image {pyradiomics_image_name(parsed.image)!r} "
                                 f"is not computed by profile {profile.name!r}")
        if parsed.feature_class not in profile.feature_classes:
            raise RadiomicsError(f"feature {name!r}: class {parsed.feature_class} not in profile {profile.name!r}")
        if parsed.feature not in classes[parsed.feature_class].getFeatureNames():
            raise RadiomicsError(f"feature {name!r}: pyradiomics' {parsed.feature_class} has no {parsed.feature!r}")
        wanted = plan[parsed.image].setdefault(parsed.feature_class, set())
        wanted.add(parsed.feature)
    return dict(plan)


def _planned_names(plan: _Plan) -> Iterator[FeatureName]:
    for image_type, classes in plan.items():
        for cls, names in classes.items():
            for feature in names or ():
                yield FeatureName(image_type, cls, feature)


def _crop_to_voi(image: sitk.Image, mask: sitk.Image,
                 profile: Profile) -> tuple[sitk.Image, sitk.Image, np.ndarray]:
    """Crop image and mask to the VOI plus :data:`PAD_MM`, check the VOI as pyradiomics does, preprocess.

    The crop comes first so that pyradiomics' mask check (a label-statistics
    pass over the whole image) runs on the small crop, not on the whole CT.
    """
    if mask.GetSize() != image.GetSize():
        raise RadiomicsError(f"VOI not usable: mask grid {mask.GetSize()} differs from the image {image.GetSize()}")
    mask = sitk.Cast(mask > 0, sitk.sitkUInt8)
    inside = sitk.GetArrayViewFromImage(mask).astype(bool)
    extents = [np.flatnonzero(inside.any(axis=other)) for other in ((1, 2), (0, 2), (0, 1))]  # z, y, x
    if any(e.size == 0 for e in extents):
        raise RadiomicsError("VOI not usable: the mask is empty")
    pad = [math.ceil(PAD_MM / s) for s in reversed(image.GetSpacing())]
    lo = [max(int(e[0]) - p, 0) for e, p in zip(extents, pad, strict=True)]
    hi = [min(int(e[-1]) + 1 + p, n) for e, p, n in zip(extents, pad, inside.shape, strict=True)]
    crop = image[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
    crop_mask = mask[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
    try:
        bbox, _ = imageoperations.checkMask(crop, crop_mask, label=1)
    except ValueError as exc:
        raise RadiomicsError(f"VOI not usable: {exc}") from None
    if bbox is None:
        raise RadiomicsError("VOI not usable: smaller than pyradiomics' minimum (2 dimensions)")
    if profile.clip_percentiles is not None:  # percentiles of the whole CT, as the study describes
        low, high = (float(v) for v in np.percentile(sitk.GetArrayViewFromImage(image), profile.clip_percentiles))
        if high > low:
            crop = sitk.IntensityWindowing(sitk.Cast(crop, sitk.sitkFloat32), low, high, 0.0, 255.0)
    return crop, crop_mask, bbox


def _derived_images(crop: sitk.Image, crop_mask: sitk.Image, profile: Profile,
                    plan: _Plan) -> Iterator[tuple[ImageType, sitk.Image]]:
    """The images the plan needs, each computed once, in plan order."""
    wanted = set(plan)
    by_transform: dict[str, list[ImageType]] = defaultdict(list)
    for image_type in plan:
        by_transform[image_type.transform].append(image_type)
    settings = dict(profile.settings)
    for transform, image_types in by_transform.items():
        if transform == "original":
            yield image_types[0], crop
        elif transform == "wavelet":
            # one stationary wavelet decomposition gives all 8 bands
            for derived, name, _ in imageoperations.getWaveletImage(crop, crop_mask, **settings):
                if ImageType("wavelet", name) in wanted:
                    yield ImageType("wavelet", name), derived
        elif transform == "log":
            sigmas = [s for s in profile.log_sigmas_mm if ImageType("log", log_image_name(s)) in wanted]
            for derived, name, _ in imageoperations.getLoGImage(crop, crop_mask, sigma=sigmas, **settings):
                yield ImageType("log", name), derived
        else:
            yield image_types[0], SITK_TRANSFORMS[transform](crop)


def _compute(image: sitk.Image, mask: sitk.Image, bbox: np.ndarray, image_type: ImageType,
             classes: dict[str, set[str] | None], settings: dict) -> dict[str, float]:
    """pyradiomics feature classes on one image cropped to the VOI (as the extractor does)."""
    image, mask = imageoperations.cropToTumorMask(image, mask, bbox)
    feature_classes = getFeatureClasses()
    values: dict[str, float] = {}
    for cls, names in classes.items():
        calculator = feature_classes[cls](image, mask, **settings)
        for feature in sorted(names or ()):
            calculator.enableFeatureByName(feature)
        for feature, value in calculator.execute().items():
            values[str(FeatureName(image_type, cls, feature))] = float(value)
    return values
