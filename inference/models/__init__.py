"""Radscore models: the versioned model file, its loader and the scoring API.

``load_model("che2025-published")`` returns the model shipped with the node
(``inference/models/files/<id>.json``); ``load_model("path/to/model.json")``
or ``load_model("site-2026", model_dir=Path(...))`` loads a site's own. The
file format is documented in :mod:`inference.models.model`.
"""

from inference.models.loader import list_models, load_model
from inference.models.model import (
    ClassModel,
    ClassTerm,
    LevelCombination,
    LogisticModel,
    ModelError,
    Normalisation,
    RadscoreFormula,
    RadscoreModel,
    RadscoreTerm,
    RiskCategory,
)

__all__ = [
    "ClassModel", "ClassTerm", "LevelCombination", "LogisticModel", "ModelError", "Normalisation", "RadscoreFormula",
    "RadscoreModel", "RadscoreTerm", "RiskCategory", "list_models", "load_model",
]
