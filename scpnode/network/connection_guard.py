"""Connections that have not negotiated an association yet: admitted early, capped, timed out.

pynetdicom counts a TCP connection as an association from the moment it is
accepted, gives the accepted socket no read timeout, and learns who the peer
is only from its A-ASSOCIATE-RQ. So a few sockets that connect and then send
nothing, or a PDU header announcing gigabytes that never come (its reader
then blocks in ``recv`` and the ARTIM timer is never checked), fill
``maximum_associations`` and every sender is refused "local limit exceeded"
for as long as they are held.

:class:`ConnectionGuard` and the server class it makes keep pynetdicom and
close that gap around it:

- every accepted socket gets a read timeout before anything is read from it
  (the TLS handshake included), so no thread waits on a peer forever;
- with ``[node] require_known_peers``, an address that no ``[[peers]]`` entry
  names is closed at accept: the allowlist as early as TCP allows (the AE
  title comes only with the A-ASSOCIATE-RQ);
- connections that have not yet sent their A-ASSOCIATE-RQ ("pending") are
  counted apart from associations: at most ``max_pending_connections`` in all
  and ``max_pending_per_address`` from one address. A new connection beyond a
  cap closes the oldest pending one (of its own address at the per-address
  cap). A real sender negotiates within milliseconds of connecting, so sockets
  a bad peer holds open cannot keep it out;
- a pending connection that has not negotiated within
  ``negotiation_timeout_seconds`` is closed.

pynetdicom's own ``maximum_associations`` is raised by the pending cap; the
limit on negotiated associations is enforced by the receiver
(:class:`scpnode.network.receiver.PeerPolicy`).
"""

from __future__ import annotations

import logging
import socket
import socketserver
import ssl
import threading
import time
from collections import OrderedDict

from pynetdicom.transport import ThreadedAssociationServer

from scpnode.logs import log_event

LOGGER = logging.getLogger(__name__)

ConnectionKey = tuple[str, int]
"""(address, port) of the peer's end of a TCP connection."""

SWEEP_SECONDS = 0.5
"""How often pending connections are checked against the negotiation timeout."""


class ConnectionGuard:
    """Pending connections of one listener (thread-safe).

    Args:
        allowed_addresses: peer addresses that may connect; None: any address.
        max_pending: connections without A-ASSOCIATE-RQ, in all.
        max_pending_per_address: the same, from one address.
        negotiation_timeout: seconds a connection may take to send its A-ASSOCIATE-RQ.
        read_timeout: seconds any read on an accepted socket may wait.
    """

    def __init__(self, allowed_addresses: set[str] | None, max_pending: int, max_pending_per_address: int,
                 negotiation_timeout: float, read_timeout: float) -> None:
        self.allowed_addresses = allowed_addresses
        self.max_pending = max_pending
        self.max_pending_per_address = max_pending_per_address
        self.negotiation_timeout = negotiation_timeout
        self.read_timeout = read_timeout
        self._pending: OrderedDict[ConnectionKey, tuple[socket.socket, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def admit(self, sock: socket.socket, key: ConnectionKey, now: float | None = None) -> bool:
        """Count a new connection in (closing the oldest pending ones beyond the caps); False: refuse it."""
        address = key[0]
        if self.allowed_addresses is not None and address not in self.allowed_addresses:
            log_event(LOGGER, "connection_refused", logging.WARNING, address=address, reason="address not in [[peers]]")
            return False
        evicted = []
        with self._lock:
            same_address = [k for k in self._pending if k[0] == address]
            if len(same_address) >= self.max_pending_per_address:
                evicted.append(same_address[0])
            if len(self._pending) - len(evicted) >= self.max_pending:
                evicted.append(next(k for k in self._pending if k not in evicted))
            closing = [self._pending.pop(k)[0] for k in evicted]
            self._pending[key] = (sock, time.monotonic() if now is None else now)
        for old, old_key in zip(closing, evicted):
            _close(old)
            log_event(LOGGER, "connection_closed", logging.WARNING, address=old_key[0],
                      reason="pending connection evicted by a newer one (no A-ASSOCIATE-RQ yet)")
        return True

    def negotiated(self, key: ConnectionKey) -> None:
        """The connection sent its A-ASSOCIATE-RQ: an association now, no longer pending."""
        with self._lock:
            self._pending.pop(key, None)

    closed = negotiated
    """The connection closed (whether it negotiated or not)."""

    def expire(self, now: float | None = None) -> int:
        """Close pending connections older than the negotiation timeout; returns how many."""
        now = time.monotonic() if now is None else now
        with self._lock:
            late = [k for k, (_, since) in self._pending.items() if now - since > self.negotiation_timeout]
            closing = [(k, self._pending.pop(k)[0]) for k in late]
        for key, sock in closing:
            _close(sock)
            log_event(LOGGER, "connection_closed", logging.WARNING, address=key[0],
                      reason=f"no A-ASSOCIATE-RQ within {self.negotiation_timeout:g} s")
        return len(closing)

    def start(self) -> None:
        def sweep() -> None:
            while not self._stop.wait(SWEEP_SECONDS):
                self.expire()

        self._stop.clear()
        self._sweeper = threading.Thread(target=sweep, name="pending-connection-sweeper", daemon=True)
        self._sweeper.start()

    def stop(self) -> None:
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join(timeout=5)
            self._sweeper = None

    def server_class(self) -> type[ThreadedAssociationServer]:
        """A pynetdicom server class that accepts connections through this guard."""
        guard = self

        class GuardedAssociationServer(ThreadedAssociationServer):
            def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
                # pynetdicom's version does the TLS handshake here, in the one thread that
                # accepts for everybody, without a timeout: a peer that stalls the handshake
                # would stop all accepting. Here the socket is time-limited first and the
                # handshake left to the connection's own thread (OpenSSL performs it on the
                # first read).
                client, address = self.socket.accept()
                client.settimeout(guard.read_timeout)
                if self.ssl_context:
                    try:
                        client = self.ssl_context.wrap_socket(client, server_side=True,
                                                              do_handshake_on_connect=False)
                    except (OSError, ssl.SSLError):
                        _close(client)
                        raise
                return client, address

            def verify_request(self, request, client_address) -> bool:  # noqa: ANN001 - socketserver's signature
                return guard.admit(request, (str(client_address[0]), int(client_address[1])))

            def shutdown(self) -> None:
                # pynetdicom's also drops the server from its AE's list of servers started by
                # AE.start_server(), which this one (made with AE.make_server()) is not on.
                socketserver.BaseServer.shutdown(self)
                self.server_close()

        return GuardedAssociationServer


def _close(sock: socket.socket) -> None:
    """Close a socket another thread may be reading: shutdown wakes that read, then close."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
