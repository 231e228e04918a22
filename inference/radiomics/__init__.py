"""Radiomics of vertebral VOIs with pyradiomics, plus the SimpleITK transforms it lacks.

``extract_features(image, mask, "che2025")`` computes a whole profile;
``extract_features(image, mask, "che2025", features=model.features["cortical"])``
only what a radscore model needs. Names: :mod:`.names`; profiles: :mod:`.profiles`.
"""

from inference.radiomics.extract import PAD_MM, RadiomicsError, extract_features
from inference.radiomics.names import PUBLISHED_ALIASES, FeatureName, ImageType, canonical
from inference.radiomics.profiles import PROFILES, Profile, get_profile

__all__ = [
    "PAD_MM", "PROFILES", "PUBLISHED_ALIASES", "FeatureName", "ImageType", "Profile", "RadiomicsError",
    "canonical", "extract_features", "get_profile",
]
