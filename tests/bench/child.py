"""Running a measurement in a fresh Python process, so that its peak memory is its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def measure_in_child(function: str, *args: str, timeout: float) -> dict:
    """Call ``module:function(*args)`` in a new interpreter and return the JSON object it printed last.

    Raises:
        AssertionError: the child failed (its stderr's tail is the message).
    """
    module, name = function.split(":")
    call = f"from {module} import {name}; {name}({', '.join(repr(a) for a in args)})"
    child = subprocess.run([sys.executable, "-c", call], cwd=PROJECT_ROOT, capture_output=True, text=True,
                           timeout=timeout)
    assert child.returncode == 0, child.stderr[-2000:]
    return json.loads(child.stdout.strip().splitlines()[-1])
