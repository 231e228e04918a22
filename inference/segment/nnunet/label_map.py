"""nnU-Net label values -> VerSe ids, by the label names in ``dataset.json`` or by an explicit map.

By name (the default): TotalSegmentator's names, ``vertebrae_C1`` .. ``vertebrae_C7``,
``vertebrae_T1`` .. ``vertebrae_T12`` (and ``vertebrae_T13``), ``vertebrae_L1`` ..
``vertebrae_L5`` (and ``vertebrae_L6``), ``vertebrae_S1`` and ``sacrum`` (both the
sacrum, VerSe 26). Every other name that does not start with ``vertebrae_`` (organs,
ribs, muscles of a multi-class model) is left out of the result; a ``vertebrae_``
name that is not a level is an error, so a model with another naming is never
half-read.

Explicitly: a ``verse_labels.json`` in the model folder names, for the labels
the node should use, their VerSe ids; labels it does not name are left out::

    {"labels": {"L1_whole": 20, "L2_whole": 21, "T12_whole": 19, "T11_whole": 18}}

Either way T11-L2 must all be mapped: a model that cannot label the screening
levels is refused with the names it lacks.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.levels import LEVEL_NAMES, TARGET_LEVELS, VERSE_IDS
from inference.segment.nnunet.model_folder import NnUNetModelError

LABEL_MAP_FILE = "verse_labels.json"
VERTEBRA_PREFIX = "vertebrae_"
SACRUM_NAMES = ("vertebrae_S1", "sacrum")
_LEVEL_NAME = re.compile(r"^(C[1-7]|T([1-9]|1[0-3])|L[1-6])$")


@dataclass(frozen=True)
class LabelMap:
    """Which nnU-Net label value is which VerSe id."""

    verse_ids: dict[int, int]
    """nnU-Net label value -> VerSe id (values not listed are left out)."""
    source: str
    """``"dataset.json names"`` or the map file's name, recorded in the backend version."""

    def lookup_table(self, highest_value: int) -> np.ndarray:
        """A ``uint8`` table indexed by nnU-Net label value (0 where the value is left out)."""
        table = np.zeros(max(highest_value, *self.verse_ids, 0) + 1, dtype=np.uint8)
        for value, verse_id in self.verse_ids.items():
            table[value] = verse_id
        return table


def read_label_map(model_dir: Path, dataset: dict[str, Any]) -> LabelMap:
    """The label map of a model folder: ``verse_labels.json`` where present, else the names in ``dataset.json``.

    Raises:
        NnUNetModelError: region-based labels, an unknown vertebra name, a map
            entry naming a label ``dataset.json`` lacks or a non-VerSe id, or
            T11-L2 not all mapped (the message names them).
    """
    labels = _label_values(model_dir, dataset["labels"])
    map_path = model_dir / LABEL_MAP_FILE
    if map_path.is_file():
        label_map = LabelMap(_explicit(map_path, labels), LABEL_MAP_FILE)
    else:
        label_map = LabelMap(_by_name(model_dir, labels), "dataset.json names")
    mapped = {LEVEL_NAMES[verse_id] for verse_id in label_map.verse_ids.values()}
    missing = [level for level in TARGET_LEVELS if level not in mapped]
    if missing:
        hint = "" if map_path.is_file() else f" (expected names such as {VERTEBRA_PREFIX}{missing[0]})"
        raise NnUNetModelError(f"{model_dir}: the model's labels ({label_map.source}) have no "
                               f"{', '.join(missing)}{hint}; the node measures T11-L2")
    return label_map


def _label_values(model_dir: Path, labels: dict[str, Any]) -> dict[str, int]:
    regions = [name for name, value in labels.items() if not isinstance(value, int)]
    if regions:
        raise NnUNetModelError(f"{model_dir / 'dataset.json'}: region-based labels ({', '.join(regions)}) are not "
                               "supported; the node needs one label value per vertebra")
    return {name: value for name, value in labels.items() if value != 0}


def _by_name(model_dir: Path, labels: dict[str, int]) -> dict[int, int]:
    verse_ids: dict[int, int] = {}
    unknown = []
    for name, value in labels.items():
        if name in SACRUM_NAMES:
            verse_ids[value] = VERSE_IDS["S"]
        elif name.startswith(VERTEBRA_PREFIX):
            level = name.removeprefix(VERTEBRA_PREFIX)
            if _LEVEL_NAME.match(level):
                verse_ids[value] = VERSE_IDS[level]
            else:
                unknown.append(name)
    if unknown:
        raise NnUNetModelError(f"{model_dir / 'dataset.json'}: unknown vertebra label name(s) {', '.join(unknown)}; "
                               f"expected {VERTEBRA_PREFIX}C1..C7, T1..T13, L1..L6, S1 or sacrum, or give the map in "
                               f"{LABEL_MAP_FILE}")
    return verse_ids


def _explicit(map_path: Path, labels: dict[str, int]) -> dict[int, int]:
    try:
        document = json.loads(map_path.read_text(encoding="utf-8"))
        entries = document["labels"]
        if not isinstance(entries, dict):
            raise TypeError("labels is not an object")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise NnUNetModelError(f"{map_path}: cannot read the label map ({exc}); expected "
                               '{"labels": {"<name in dataset.json>": <VerSe id>, ...}}') from None
    absent = [name for name in entries if name not in labels]
    if absent:
        raise NnUNetModelError(f"{map_path}: label(s) {', '.join(absent)} not in the model's dataset.json")
    wrong = [f"{name}={verse_id}" for name, verse_id in entries.items() if verse_id not in LEVEL_NAMES]
    if wrong:
        raise NnUNetModelError(f"{map_path}: {', '.join(wrong)}: not VerSe vertebra ids "
                               "(1-7 C1-C7, 8-19 T1-T12, 20-25 L1-L6, 26 sacrum, 28 T13)")
    return {labels[name]: int(verse_id) for name, verse_id in entries.items()}
