"""kill -9 of ``scpnode serve`` in the middle of a transfer: nothing acknowledged is lost, the series completes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from scpnode.delivery.orthanc import free_port
from scpnode.schema import open_node_database
from scpnode.storage import index
from scpnode.storage.index import SeriesState
from tests.integration.node_helpers import dataset_bytes, storescu, wait_for, write_ct_series

pytestmark = pytest.mark.integration

SCPNODE = [sys.executable, "-m", "scpnode.cli"]


def write_config(folder: Path, port: int) -> Path:
    config = folder / "node.toml"
    config.write_text(f"""
[node]
host = "127.0.0.1"
port = {port}
storage_dir = "store"
database = "node.db"

[[peers]]
ae_title = "STORESCU"
host = "127.0.0.1"

[completion]
quiet_seconds = 1.0
check_interval_seconds = 0.2

[selection]
# no series is selected, so that the inference pipeline that serve also runs stays idle;
# completion and selection still run, and the rejection shows they did
min_coverage_mm = 5000.0

[web]
enabled = false

[logging]
file = "node.log"
""")
    return config


def start_node(config: Path, port: int) -> subprocess.Popen:
    process = subprocess.Popen([*SCPNODE, "--config", str(config), "serve"], cwd=config.parent,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: _port_open(port) or process.poll() is not None, timeout=60)
    assert process.poll() is None, f"scpnode serve exited with {process.returncode}"
    return process


def _port_open(port: int) -> bool:
    import socket
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def acknowledged_files(storescu_log: str) -> list[Path]:
    """Files storescu got a Success response for (from its verbose log)."""
    acknowledged, current = [], None
    for line in storescu_log.splitlines():
        if match := re.search(r"Sending file: (.+)$", line):
            current = Path(match.group(1).strip())
        elif "Received Store Response (Success)" in line and current is not None:
            acknowledged.append(current)
            current = None
    return acknowledged


def count_instances(database: Path) -> int:
    if not database.exists():
        return 0
    db = open_node_database(database)
    try:
        return db["instances"].count if db["instances"].exists() else 0
    finally:
        db.conn.close()


def test_kill_9_mid_transfer_loses_nothing_acknowledged_and_series_completes(tmp_path, require_tool):
    require_tool("storescu")
    port = free_port()
    config = write_config(tmp_path, port)
    files = write_ct_series(tmp_path / "series", 80, size=256)
    series_uid = pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID

    node = start_node(config, port)
    sender = subprocess.Popen(["storescu", "-v", "-aet", "STORESCU", "-aec", "SCPNODE", "127.0.0.1", str(port),
                               *map(str, files)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: count_instances(tmp_path / "node.db") >= 10, timeout=60, interval=0.01)
        os.kill(node.pid, signal.SIGKILL)
        node.wait()
        log, _ = sender.communicate(timeout=60)
    finally:
        if node.poll() is None:
            node.kill()
    acknowledged = acknowledged_files(log)
    assert 0 < len(acknowledged) < len(files), "the kill should land in the middle of the transfer"

    node = start_node(config, port)
    try:
        db = open_node_database(tmp_path / "node.db")
        for sent in acknowledged:
            ds = pydicom.dcmread(sent, stop_before_pixels=True)
            row = index.find_instance(db, ds.SOPInstanceUID)
            assert row is not None, f"acknowledged {sent.name} is not indexed after the restart"
            assert dataset_bytes(Path(row["path"])) == dataset_bytes(sent)
        assert not list((tmp_path / "store").rglob("*.part"))
        # what arrived before the crash completes after the restart (state was in SQLite)...
        wait_for(lambda: index.series_ref(db, series_uid).state == SeriesState.REJECTED, timeout=30)
        assert index.series_ref(db, series_uid).revision == 1
        # ...and when the sender resends everything, the series reopens, completes and is decided again
        result = storescu(port, files)
        assert result.returncode == 0, result.stderr
        wait_for(lambda: (ref := index.series_ref(db, series_uid)).state == SeriesState.REJECTED
                 and ref.revision == 2, timeout=30)
        ref = index.series_ref(db, series_uid)
        assert ref.instance_count == 80 and ref.reason.startswith("coverage: 198 mm")
    finally:
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=60) == 0  # graceful stop on SIGTERM
