"""The nnU-Net v2 trained-model folder the ``nnunet`` backend loads, checked before nnU-Net sees it.

A trained-model folder is what ``nnUNetv2_train`` writes and what
TotalSegmentator ships (``<Dataset>/<trainer>__<plans>__<configuration>``)::

    MODEL_DIR/
      dataset.json                  labels by name, input channels
      plans.json                    preprocessing and network of each configuration
      fold_0/checkpoint_final.pth   weights (one folder per fold; all present are ensembled)
      verse_labels.json             optional: the node's label map (inference.segment.nnunet.label_map)

nnU-Net itself would fail on a broken folder with a ``KeyError`` or a
``FileNotFoundError`` deep in its loader; :func:`read_model_folder` says
instead which file is missing or wrong. ``checkpoint_final.pth`` is a
pickle that nnU-Net unpickles in full: install only model folders from a
source you trust (as for any executable).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHECKPOINT_NAME = "checkpoint_final.pth"


class NnUNetModelError(ValueError):
    """An nnU-Net model folder that cannot be used; the message names the file and why."""


@dataclass(frozen=True)
class ModelFolder:
    """A checked trained-model folder."""

    path: Path
    dataset: dict[str, Any]
    """The content of ``dataset.json``."""
    plans: dict[str, Any]
    """The content of ``plans.json``."""
    folds: tuple[int | str, ...]
    """Folds with a ``checkpoint_final.pth`` (``"all"`` for ``fold_all``), ensembled at prediction."""

    @property
    def checkpoints(self) -> list[Path]:
        return [self.path / f"fold_{fold}" / CHECKPOINT_NAME for fold in self.folds]


def read_model_folder(path: str | Path) -> ModelFolder:
    """Check an nnU-Net trained-model folder: its two JSON files, one CT input channel, a checkpoint.

    Raises:
        NnUNetModelError: the folder, ``dataset.json``, ``plans.json`` or every
            ``fold_N/checkpoint_final.pth`` is missing or unreadable, or the model
            wants other input than one CT channel.
    """
    path = Path(path)
    if not path.is_dir():
        raise NnUNetModelError(f"nnU-Net model folder not found: {path}")
    dataset = _read_json(path, "dataset.json")
    plans = _read_json(path, "plans.json")
    channels = dataset.get("channel_names", dataset.get("modality"))
    if not isinstance(channels, dict) or not channels:
        raise NnUNetModelError(f"{path / 'dataset.json'}: no channel_names; not an nnU-Net v2 dataset.json")
    if len(channels) != 1:
        names = ", ".join(str(name) for name in channels.values())
        raise NnUNetModelError(f"{path / 'dataset.json'}: the model takes {len(channels)} input channels ({names}); "
                               "the node gives it one, the CT")
    if not isinstance(dataset.get("labels"), dict):
        raise NnUNetModelError(f"{path / 'dataset.json'}: no labels; not an nnU-Net v2 dataset.json")
    if not isinstance(plans.get("configurations"), dict):
        raise NnUNetModelError(f"{path / 'plans.json'}: no configurations; not an nnU-Net v2 plans.json")
    folds = tuple(_fold_id(folder.name) for folder in sorted(path.glob("fold_*"))
                  if (folder / CHECKPOINT_NAME).is_file())
    if not folds:
        present = sorted(p.relative_to(path).as_posix() for p in path.glob("fold_*/*.pth"))
        found = f" (found only {', '.join(present)})" if present else ""
        raise NnUNetModelError(f"{path}: no fold_N/{CHECKPOINT_NAME}{found}; a trained-model folder holds the "
                               "final checkpoint of at least one fold")
    return ModelFolder(path=path, dataset=dataset, plans=plans, folds=folds)


def _read_json(folder: Path, name: str) -> dict[str, Any]:
    try:
        data = json.loads((folder / name).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NnUNetModelError(f"{folder}: no {name}; not an nnU-Net trained-model folder "
                               "(point at the <trainer>__<plans>__<configuration> folder)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NnUNetModelError(f"{folder / name}: cannot read ({exc})") from None
    if not isinstance(data, dict):
        raise NnUNetModelError(f"{folder / name}: expected a JSON object")
    return data


def _fold_id(folder_name: str) -> int | str:
    fold = folder_name.removeprefix("fold_")
    return int(fold) if fold.isdigit() else fold
