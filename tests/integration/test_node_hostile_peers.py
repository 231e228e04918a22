"""Sockets that never negotiate cannot lock senders out (scpnode.network.connection_guard).

As an attacker on the hospital network would: no AE title needed, only TCP.
12 connections send an A-ASSOCIATE-RQ header announcing 4 GB and stop, 12
send 4 KB of random bytes, 50 connect and send nothing; all are held open.
A sender from an allowed peer must store an instance within a few seconds
before, during and after, and every bad socket must be closed by the node
within the negotiation timeout.
"""

from __future__ import annotations

import os
import resource
import socket
import time
from pathlib import Path

import pytest

from scpnode.node import Node
from tests.integration.node_helpers import node_settings, storescu, write_ct_series

pytestmark = pytest.mark.integration

NEGOTIATION_TIMEOUT = 3.0


def _connect(port: int, payload: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if payload:
        sock.sendall(payload)
    return sock


def _closed_by_peer(sock: socket.socket, deadline: float) -> bool:
    """True once the node has closed ``sock`` (EOF or reset) before ``deadline``."""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        if not data:
            return True
        # An A-ASSOCIATE-RJ or A-ABORT before the close is fine: keep reading to the EOF.
    return False


def test_half_open_random_and_idle_connections_do_not_keep_a_sender_out(tmp_path: Path, require_tool) -> None:
    require_tool("storescu")
    settings = node_settings(tmp_path / "node")
    settings.node.negotiation_timeout_seconds = NEGOTIATION_TIMEOUT
    files = write_ct_series(tmp_path / "series", 4)
    with Node(settings) as node:
        def send(path: Path) -> float:
            started = time.monotonic()
            result = storescu(node.port, [path], timeout=30)
            assert result.returncode == 0, result.stderr
            return time.monotonic() - started

        seconds = [send(files[0])]
        half_open = [_connect(node.port, b"\x01\x00" + (0xFFFFFFFF).to_bytes(4, "big")) for _ in range(12)]
        random_bytes = [_connect(node.port, os.urandom(4096)) for _ in range(12)]
        idle = [_connect(node.port) for _ in range(50)]
        opened = time.monotonic()
        seconds.append(send(files[1]))
        time.sleep(NEGOTIATION_TIMEOUT / 2)
        seconds.append(send(files[2]))

        bad = half_open + random_bytes + idle
        deadline = opened + NEGOTIATION_TIMEOUT + 2.0
        still_open = [i for i, sock in enumerate(bad) if not _closed_by_peer(sock, deadline)]
        seconds.append(send(files[3]))
        for sock in bad:
            sock.close()
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"storescu seconds per instance: {[round(s, 2) for s in seconds]}; "
              f"bad sockets still open after {NEGOTIATION_TIMEOUT + 2:g} s: {len(still_open)} of {len(bad)}; "
              f"pending now: {node.receiver.guard.pending}; peak RSS of test and node: {rss_mb:.0f} MB")
        assert still_open == [], "every socket that never negotiated is closed by the node"
        assert max(seconds) < 5.0, seconds
        assert node.database()["instances"].count == 4
        assert node.receiver.guard.pending == 0


def test_an_address_not_in_the_peers_list_is_closed_at_connect(tmp_path: Path) -> None:
    from scpnode.network.connection_guard import ConnectionGuard

    guard = ConnectionGuard(allowed_addresses={"127.0.0.1"}, max_pending=2, max_pending_per_address=1,
                            negotiation_timeout=1.0, read_timeout=1.0)
    a, b = socket.socketpair()
    try:
        assert not guard.admit(a, ("192.0.2.9", 40000))
        assert guard.admit(a, ("127.0.0.1", 40001)) and guard.pending == 1
        c, d = socket.socketpair()
        assert guard.admit(c, ("127.0.0.1", 40002)) and guard.pending == 1, "the older one of the address went"
        assert b.recv(1) == b""
        assert guard.expire(now=time.monotonic() + 5) == 1 and guard.pending == 0
        assert d.recv(1) == b""
    finally:
        for sock in (a, b):
            sock.close()
