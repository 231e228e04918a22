"""Every JSON document the node writes is standard JSON: no NaN or Infinity."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from scpnode import strict_json


def _strict_loads(text: str):
    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_become_null_at_any_depth_and_numpy_scalars_plain_numbers() -> None:
    document = {"mean": float("nan"), "levels": [{"ratio": math.inf, "grade": np.int64(2)}, (np.float32(1.5),)],
                "ok": 3.25, "name": "L1"}
    text = strict_json.dumps(document, indent=2)
    assert _strict_loads(text) == {"mean": None, "levels": [{"ratio": None, "grade": 2}, [1.5]], "ok": 3.25,
                                   "name": "L1"}


def test_what_is_not_json_is_refused_not_written() -> None:
    with pytest.raises(TypeError):
        strict_json.dumps({"set": {1, 2}})


def test_the_node_writes_measurements_as_strict_json(tmp_path) -> None:
    from scpnode.pipeline.analysis import _write_json

    _write_json(tmp_path / "measurements.json", {"levels": {"L1": {"wedge_ratio": float("nan")}}})
    assert _strict_loads((tmp_path / "measurements.json").read_text()) == {"levels": {"L1": {"wedge_ratio": None}}}
