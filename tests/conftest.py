"""Fixtures shared by the whole suite.

- ``shared_data``: the real data in ../shared/data (the one way tests find it).
- ``require_tool``: a real peer program (Orthanc, DCMTK, dicom3tools, Chromium).
  Outside CI a missing peer skips the test; with ``CI=true`` it fails it.
- ``orthanc``: a private Orthanc on free loopback ports, torn down after the test;
  ``orthanc_dicomweb`` the same with its DICOMweb plugin.
- ``output_dir``: tests/output/<test name>, kept after the run for figures and
  pictures that a person looks at.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from scpnode.delivery.orthanc import DICOMWEB_PLUGIN, LocalOrthanc

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is missing; in CI every peer and data set must be present")
    pytest.skip(f"{what} is missing")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of ../shared/data (real CT and third-party DICOM objects)."""
    if not (SHARED_DATA / "real_ct").is_dir():
        _missing(f"shared data folder {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def require_tool() -> Callable[[str], str]:
    """Return the path of a peer program, failing (CI) or skipping when absent."""

    def require(name: str) -> str:
        path = shutil.which(name)
        if path is None:
            _missing(f"peer program '{name}'")
        return path

    return require


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextmanager
def chromium(require_tool: Callable[[str], str], args: list[str]):
    """Debian's Chromium with ``args``, driven by Playwright (never a downloaded browser)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = require_tool("chromium")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=args)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser(require_tool: Callable[[str], str]):
    """Debian's Chromium, headless, driven by Playwright."""
    with chromium(require_tool, CHROMIUM_ARGS) as launched:
        yield launched


@pytest.fixture
def orthanc(tmp_path: Path, require_tool: Callable[[str], str]) -> Iterator[LocalOrthanc]:
    """A running private Orthanc (AE title ORTHANC) on free loopback ports."""
    require_tool("Orthanc")
    server = LocalOrthanc(workdir=tmp_path / "orthanc").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def orthanc_dicomweb(tmp_path: Path, require_tool: Callable[[str], str]) -> Iterator[LocalOrthanc]:
    """A running private Orthanc with its DICOMweb plugin (``orthanc_dicomweb.dicomweb_url``)."""
    require_tool("Orthanc")
    if not DICOMWEB_PLUGIN.is_file():
        _missing(f"Orthanc DICOMweb plugin {DICOMWEB_PLUGIN} (Debian package orthanc-dicomweb)")
    server = LocalOrthanc(workdir=tmp_path / "orthanc-dicomweb", dicomweb=True).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def single_torch_thread() -> Iterator[None]:
    """Torch on one thread for a module: a tiny network is faster so; on a busy 2-core machine two
    threads spin against each other."""
    import torch  # only the modules that ask for it pay for importing torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def output_dir(request: pytest.FixtureRequest) -> Path:
    """A per-test folder under tests/output that survives the run."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid.split("::", 1)[-1])[:100]
    path = PROJECT_ROOT / "tests" / "output" / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


_BENCH_LINES: list[str] = []


@pytest.fixture
def bench_report(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Record a benchmark figure; all figures are printed at the end of the run.

    ``bench_report("segment 512x512x300", seconds=12.3, peak_mb=2100)``
    Benchmarks print figures; they never assert on timings.
    """

    def report(label: str, **figures: float | int | str) -> None:
        text = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items())
        _BENCH_LINES.append(f"{request.node.name}: {label}: {text}")

    return report


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: D103 - pytest hook
    if _BENCH_LINES:
        terminalreporter.section("benchmark figures")
        for line in _BENCH_LINES:
            terminalreporter.write_line(line)
