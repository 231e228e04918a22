"""``scpnode demo``, the README's first command, run as a newcomer runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def _demo(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scpnode.cli", "demo", "--workdir", str(tmp_path), *extra],
                          capture_output=True, text=True, timeout=900)


def test_demo_with_orthanc_as_the_pacs(tmp_path, require_tool):
    require_tool("Orthanc")
    result = _demo(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "job 1: done" in out
    for series in ("SEG  T11-L2 compartments SEG", "SR   Osteoporosis screening SR",
                   "OT   Osteoporosis screening report"):
        assert series in out
    assert "no risk probability: model uncalibrated" in out
    measurements = json.loads(next(tmp_path.glob("node/results/job-*/measurements.json")).read_text())
    assert measurements["levels"]["L1"]["genant_grade"] == 2  # the phantom's wedge fracture
    assert "Traceback" not in result.stderr


def test_demo_without_a_pacs_keeps_results_in_a_folder(tmp_path):
    result = _demo(tmp_path, "--no-orthanc")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Orthanc is not installed" not in result.stdout  # it was told not to use it, not missing
    assert "no PACS: the results folder above" in result.stdout
    job_dir = next(tmp_path.glob("node/results/job-*"))
    assert {p.name for p in job_dir.iterdir()} >= {"seg.dcm", "sr.dcm", "report.dcm", "overlay.png"}
