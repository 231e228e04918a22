"""JSON as the standard defines it: no NaN or Infinity, which Python's json writes by default.

A radiomics feature of a tiny VOI or a ratio of an unmeasured height can be
NaN. Every JSON document the node writes (measurements.json, the worklist's
stored measurements, ``scpnode analyze`` output) goes through :func:`dumps`,
so that any JSON reader, not only Python's, can load it: a value that is not a
finite number is written as null.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def finite(value: Any) -> Any:
    """``value`` with NaN/inf floats as None, numpy scalars as Python numbers, tuples as lists (recursively)."""
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def dumps(document: Any, **options: Any) -> str:
    """``json.dumps`` of :func:`finite` ``(document)``; raises ValueError on anything else not JSON."""
    return json.dumps(finite(document), allow_nan=False, **options)
