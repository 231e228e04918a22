"""Fixtures for end-to-end runs: a whole node (pipeline included) next to a real Orthanc PACS."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scpnode.assembly import assemble_node
from scpnode.config import Settings, settings_from_dict
from scpnode.delivery.orthanc import LocalOrthanc, free_port
from scpnode.node import Node
from scpnode.pipeline.jobs import FINAL_STATES, Job, JobQueue
from scpnode.schema import open_node_database

NODE_AET = "SCPNODE"
PHANTOM_SHAPE = (288, 288, 176)
"""Reduced matrix for end-to-end tests (1.4 mm pixels, ~2.1 mm slices); the benchmark runs 512 x 512 x 300."""


def e2e_settings(workdir: Path, pacs: LocalOrthanc, port: int, **overrides: dict) -> Settings:
    """A node on loopback that accepts the PACS and sends results back to it."""
    data = {
        "node": {"ae_title": NODE_AET, "host": "127.0.0.1", "port": port,
                 "storage_dir": str(workdir / "store"), "database": str(workdir / "node.db"),
                 "results_dir": str(workdir / "results")},
        "peers": [{"ae_title": pacs.aet, "host": "127.0.0.1"}, {"ae_title": "STORESCU", "host": "127.0.0.1"}],
        "destinations": [{"name": "pacs", "ae_title": pacs.aet, "host": "127.0.0.1", "port": pacs.dicom_port}],
        "completion": {"quiet_seconds": 2.0, "check_interval_seconds": 0.5},
        "web": {"enabled": False},
        **overrides,
    }
    return settings_from_dict(data, source="e2e")


@dataclass
class NodeAndPacs:
    node: Node
    settings: Settings
    pacs: LocalOrthanc

    def jobs(self) -> JobQueue:
        return JobQueue(open_node_database(self.settings.node.database))

    def wait_for_jobs(self, count: int, timeout: float = 600.0) -> list[Job]:
        """Wait until ``count`` jobs exist and all are final; return them oldest first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            jobs = self.jobs().recent(100)
            if len(jobs) >= count and all(job.state in FINAL_STATES for job in jobs):
                return sorted(jobs, key=lambda j: j.id)
            time.sleep(1.0)
        raise AssertionError(f"jobs not finished in {timeout:.0f} s: {[(j.id, j.state, j.stage) for j in jobs]}")

    def wait_for_outbox_empty(self, timeout: float = 120.0) -> None:
        from scpnode.delivery import outbox
        db = open_node_database(self.settings.node.database)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(item.state == outbox.OutboxState.SENT for item in outbox.items(db)):
                return
            time.sleep(0.5)
        raise AssertionError("outbox not delivered")


@pytest.fixture
def node_and_pacs(tmp_path: Path, orthanc: LocalOrthanc) -> Iterator[NodeAndPacs]:
    """A running node (pipeline, no web UI) whose PACS is the ``orthanc`` fixture."""
    port = free_port()
    orthanc.add_modality("scpnode", NODE_AET, "127.0.0.1", port)
    # The real CT in ../shared/data has 3 mm pixels; clinical defaults stop at 1.5 mm.
    settings = e2e_settings(tmp_path / "node", orthanc, port, pipeline={"concurrency": 2},
                            selection={"max_pixel_spacing_mm": 3.5})
    node = assemble_node(settings, web=False, poll_seconds=0.3, sender_options={"poll_seconds": 0.3})
    node.start()
    try:
        yield NodeAndPacs(node, settings, orthanc)
    finally:
        node.stop()


def push_study(pacs: LocalOrthanc, files: list[Path], study_uid: str) -> None:
    """Upload a study into Orthanc, then have Orthanc send it to the node (as a PACS routing rule would)."""
    for path in files:
        pacs.upload(path)
    pacs.post("/modalities/scpnode/store", {"Resources": [pacs.find_study(study_uid)], "Synchronous": True})


def series_of_study(pacs: LocalOrthanc, study_uid: str) -> dict[str, int]:
    """Modality -> number of instances, over all series of the study in Orthanc."""
    orthanc_id = pacs.find_study(study_uid)
    counts: dict[str, int] = {}
    for series in pacs.get(f"/studies/{orthanc_id}/series?expand") if orthanc_id else []:
        modality = series["MainDicomTags"].get("Modality", "")
        counts[modality] = counts.get(modality, 0) + len(series["Instances"])
    return counts


def serve_config(workdir: Path, port: int, pacs: LocalOrthanc, *, sender_aet: str, quiet_seconds: float,
                 web_port: int | None = None) -> Path:
    """A TOML configuration for ``scpnode serve`` in ``workdir``: one sender, results to ``pacs``."""
    web = f'host = "127.0.0.1"\nport = {web_port}' if web_port else "enabled = false"
    path = workdir / "node.toml"
    path.write_text(f"""
[node]
ae_title = "{NODE_AET}"
host = "127.0.0.1"
port = {port}
storage_dir = "store"
database = "node.db"
results_dir = "results"

[[peers]]
ae_title = "{sender_aet}"
host = "127.0.0.1"

[[destinations]]
name = "pacs"
ae_title = "{pacs.aet}"
host = "127.0.0.1"
port = {pacs.dicom_port}

[completion]
quiet_seconds = {quiet_seconds}
check_interval_seconds = 0.5

[web]
{web}
""")
    return path


def start_serve(config: Path, log: Path) -> subprocess.Popen:
    """``scpnode serve`` as its own process group (so a test can kill it and its workers like a crash)."""
    return subprocess.Popen([sys.executable, "-m", "scpnode.cli", "--config", str(config), "serve"],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


def wait_until(predicate: Callable[[], object], timeout: float, what: str):
    """Poll ``predicate`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")
