"""Finding and reading radscore model files."""

from __future__ import annotations

import json
from pathlib import Path

from inference.models.model import ModelError, RadscoreModel

SHIPPED_MODEL_DIR = Path(__file__).resolve().parent / "files"
"""The models shipped in the package (listed in pyproject package-data)."""


def load_model(model_id_or_path: str, model_dir: Path | None = None) -> RadscoreModel:
    """Load a radscore model by id (``<model_dir>/<id>.json``) or by file path.

    Args:
        model_id_or_path: a model id such as ``"che2025-published"``, or the
            path of a ``.json`` model file.
        model_dir: folder of model files; None: the models shipped with the node.

    Raises:
        ModelError: the model is not found, is not JSON, or fails validation
            (one line naming the file and the key).
    """
    folder = SHIPPED_MODEL_DIR if model_dir is None else Path(model_dir)
    candidate = Path(model_id_or_path)
    if candidate.suffix == ".json" or candidate.is_file():
        path = candidate
    else:
        path = folder / f"{model_id_or_path}.json"
    if not path.is_file():
        known = ", ".join(list_models(folder)) or "none"
        raise ModelError(f"radscore model {model_id_or_path!r} not found (looked for {path}; known in {folder}: {known})")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: not a readable JSON model file ({exc})") from None
    if not isinstance(document, dict):
        raise ModelError(f"{path}: a model file holds one JSON object")
    model = RadscoreModel.from_dict(document, source=str(path))
    if path.parent == folder and path.stem != model.id:
        raise ModelError(f"{path}: file name does not match the model id {model.id!r}")
    return model


def list_models(model_dir: Path | None = None) -> list[str]:
    """Ids (file stems) of the model files in ``model_dir`` (default: the shipped ones)."""
    folder = SHIPPED_MODEL_DIR if model_dir is None else Path(model_dir)
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
