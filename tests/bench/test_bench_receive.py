"""Receive throughput: the node next to a bare pynetdicom SCP and DCMTK storescp, 1 and 4 associations.

All cases are measured in one run with the same sender (DCMTK storescu
processes), the same files (240 CT slices of 256 x 256, 16 bit) and the same
machine. The bare pynetdicom SCP only writes the received bytes to a file
(and, as a second reference, fsyncs it); the node also checks them, writes
under a temporary name, fsyncs file and folder (unless ``sync_writes =
false``), renames and indexes in SQLite before it answers. The ratios compare
like with like: node vs bare+fsync, node without sync vs bare. DCMTK storescp
runs with TCP_NODELAY=1 and ``--fork`` (one process per association).
Figures are printed, never asserted.

Where the time goes (2-core VM, one 256 x 256 slice, ~4 ms in all): pynetdicom
itself (PDUs, DIMSE, its polling threads) ~3 ms, the same for the bare SCP;
the node's check (``scpnode.network.header_scan``) 0.17 ms, SHA-256 0.09 ms, SQLite
index 0.25 ms, file create and write ~0.3 ms, fsyncs ~0.4 (file) + ~0.2 ms
(folder). With 4 associations the 2 cores are shared with 4 storescu
processes and pynetdicom's polling threads, and the node's extra CPU per
instance weighs more.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pytest
from pynetdicom import evt

from scpnode.delivery.orthanc import free_port
from scpnode.network.receiver import make_application_entity
from scpnode.node import Node
from tests.bench.scale import FULL
from tests.integration.node_helpers import node_settings, wait_for, write_ct_series

pytestmark = pytest.mark.bench

SLICES = 240
SIZE = 256
ROUNDS = 5 if FULL else 3


@contextmanager
def bare_pynetdicom(folder: Path, sync: bool = False) -> Iterator[int]:
    """A pynetdicom SCP whose handler only writes the encoded bytes (same contexts and PDU size as the node)."""
    folder.mkdir(parents=True)
    ae = make_application_entity("SCPNODE", 10)

    def write_bytes(event) -> int:
        with open(folder / f"{event.request.AffectedSOPInstanceUID}.dcm", "wb") as handle:
            handle.write(event.encoded_dataset())
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        return 0x0000

    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, write_bytes)])
    try:
        yield port
    finally:
        server.shutdown()


@contextmanager
def our_node(folder: Path, sync: bool = True) -> Iterator[int]:
    # completion checks at the production interval (the test helper's 0.2 s would add load)
    settings = node_settings(folder, node={"sync_writes": sync},
                             completion={"quiet_seconds": 60.0, "check_interval_seconds": 2.0})
    with Node(settings) as node:
        yield node.port


@contextmanager
def dcmtk_storescp(folder: Path) -> Iterator[int]:
    folder.mkdir(parents=True)
    port = free_port()
    process = subprocess.Popen(["storescp", "--fork", "-od", str(folder), str(port)],
                               env={**os.environ, "TCP_NODELAY": "1"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: subprocess.run(["echoscu", "-aet", "STORESCU", "127.0.0.1", str(port)],
                                        capture_output=True).returncode == 0, timeout=20)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def send_parallel(port: int, batches: list[list[Path]]) -> float:
    """Send each batch over its own association (one storescu each); return the wall time."""
    errors = []

    def send(batch: list[Path]) -> None:
        result = subprocess.run(["storescu", "-aet", "STORESCU", "-aec", "SCPNODE", "127.0.0.1", str(port),
                                 *map(str, batch)], capture_output=True, text=True, env={**os.environ,
                                                                                        "TCP_NODELAY": "1"})
        if result.returncode != 0:
            errors.append(result.stderr[-500:])

    threads = [threading.Thread(target=send, args=(batch,)) for batch in batches]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    assert not errors, errors
    return elapsed


def test_receive_throughput(tmp_path, require_tool, bench_report):
    for tool in ("storescu", "storescp", "echoscu"):
        require_tool(tool)
    files = [write_ct_series(tmp_path / f"data{i}", SLICES // 4, size=SIZE, seed=i) for i in range(4)]
    megabytes = sum(p.stat().st_size for batch in files for p in batch) / 1e6
    receivers: dict[str, Callable] = {
        "bare pynetdicom": bare_pynetdicom,
        "bare pynetdicom + fsync": partial(bare_pynetdicom, sync=True),
        "scpnode": our_node,
        "scpnode sync_writes=false": partial(our_node, sync=False),
        "DCMTK storescp": dcmtk_storescp,
    }
    # Best of ROUNDS, cases interleaved, so that load from other processes on the machine
    # (which only ever slows a case down) weighs on every receiver alike.
    seconds: dict[tuple[str, int], float] = {}
    for round_ in range(ROUNDS):
        for associations in (1, 4):
            batches = [sum(files, [])] if associations == 1 else files
            for name, receiver in receivers.items():
                with receiver(tmp_path / f"{round_}-{associations}-{len(seconds)}-{name.replace(' ', '_')}") as port:
                    elapsed = send_parallel(port, batches)
                seconds[name, associations] = min(elapsed, seconds.get((name, associations), elapsed))
    for (name, associations), best in seconds.items():
        bench_report(f"{name}, {associations} association(s), {SLICES} x {SIZE}x{SIZE} CT, best of {ROUNDS}",
                     images_per_s=SLICES / best, mb_per_s=megabytes / best, seconds=best)
    for associations in (1, 4):
        bench_report(f"scpnode / bare pynetdicom, {associations} association(s)",
                     durable=seconds["bare pynetdicom + fsync", associations] / seconds["scpnode", associations],
                     unsynced=seconds["bare pynetdicom", associations]
                     / seconds["scpnode sync_writes=false", associations])
