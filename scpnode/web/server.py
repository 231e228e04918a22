"""Running the web UI inside the node: uvicorn in a background thread."""

from __future__ import annotations

import threading
import time

import uvicorn
from starlette.applications import Starlette

START_TIMEOUT_SECONDS = 15.0


class WebServerError(RuntimeError):
    """The web UI could not start (port taken, bad address)."""


class WebServer:
    """uvicorn serving ``app`` on ``host:port`` from a daemon thread, with :meth:`start` and :meth:`stop`.

    Logging goes through the node's own handlers (``log_config=None``); the
    access log lists paths and filter parameters only, no patient data (see
    :mod:`scpnode.web.app`). Bind to 127.0.0.1 (the ``[web] host`` default)
    and put a TLS reverse proxy in front for other machines (README). uvicorn
    believes ``X-Forwarded-For``/``-Proto`` only from ``trusted_proxies``
    (``[web] trusted_proxies``, default 127.0.0.1: a proxy on the same
    machine), given explicitly so that a ``FORWARDED_ALLOW_IPS`` in the
    environment (container images often set "*") cannot widen it. Has the
    ``start``/``stop`` of a :class:`scpnode.node.Node` service.
    """

    def __init__(self, app: Starlette, host: str = "127.0.0.1", port: int = 8080,
                 trusted_proxies: list[str] | None = None):
        config = uvicorn.Config(app, host=host, port=port, log_config=None, server_header=False,
                                timeout_graceful_shutdown=5, proxy_headers=True,
                                forwarded_allow_ips=list(trusted_proxies if trusted_proxies is not None
                                                         else ["127.0.0.1", "::1"]))
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "WebServer":
        """Start serving; returns once the socket listens.

        Raises:
            WebServerError: the server did not come up (e.g. the port is in use).
        """
        self._thread = threading.Thread(target=self._server.run, name="web-ui", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise WebServerError(f"web UI did not start on {self.host}:{self.port} (address in use?)")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Finish open requests (up to 5 s) and stop."""
        if self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> "WebServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
