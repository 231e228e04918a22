"""A real Dask cluster on loopback for tests: ``dask scheduler`` and ``dask worker`` processes.

Workers run without a nanny, one thread each, so that killing one (SIGKILL)
takes its task down with it, as a lost machine would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from distributed import Client
from distributed.security import Security

from scpnode.delivery.orthanc import free_port

DASK = str(Path(sys.executable).with_name("dask"))


class LocalDaskCluster:
    """A scheduler and ``workers`` workers on free loopback ports; logs in ``workdir``.

    With ``pki`` (a folder with ``ca.pem``, ``server.pem``/``.key`` and
    ``client.pem``/``.key``) everything speaks mutual TLS on tls:// addresses.
    """

    def __init__(self, workdir: Path, workers: int = 2, pki: Path | None = None):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.pki = pki
        self.port = free_port()
        self.address = f"{'tls' if pki else 'tcp'}://127.0.0.1:{self.port}"
        self.worker_ports = [free_port() for _ in range(workers)]
        self.scheduler: subprocess.Popen | None = None
        self.workers: dict[int, subprocess.Popen] = {}

    def worker_address(self, index: int) -> str:
        return f"tcp://127.0.0.1:{self.worker_ports[index]}"

    def start(self) -> "LocalDaskCluster":
        """Start whatever is not running (the scheduler first), and wait until every worker has registered."""
        if self.scheduler is None or self.scheduler.poll() is not None:
            self.scheduler = self._spawn("scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                                         "--no-dashboard", *self._tls("tls"))
            self._wait_for_port(self.port)
        for index in range(len(self.worker_ports)):
            if index not in self.workers or self.workers[index].poll() is not None:
                self.workers[index] = self._spawn(
                    f"worker-{index}", "worker", self.address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                    "--host", "127.0.0.1", "--worker-port", str(self.worker_ports[index]), "--name", f"w{index}",
                    "--local-directory", str(self.workdir / f"w{index}"), "--death-timeout", "60", *self._tls())
        with self.client() as client:
            client.wait_for_workers(len(self.worker_ports), timeout=60)
        return self

    def client(self) -> Client:
        security = None
        if self.pki is not None:
            security = Security(tls_ca_file=str(self.pki / "ca.pem"), tls_client_cert=str(self.pki / "client.pem"),
                                tls_client_key=str(self.pki / "client.key"), require_encryption=True)
        return Client(self.address, timeout=20, set_as_default=False, security=security)

    def _tls(self, *protocol: str) -> list[str]:
        if self.pki is None:
            return []
        options = ["--tls-ca-file", str(self.pki / "ca.pem"), "--tls-cert", str(self.pki / "server.pem"),
                   "--tls-key", str(self.pki / "server.key")]
        return [*(["--protocol", protocol[0]] if protocol else []), *options]

    def kill_worker(self, index: int) -> None:
        self._kill(self.workers[index])

    def kill_scheduler(self) -> None:
        self._kill(self.scheduler)

    def stop(self) -> None:
        for process in [*self.workers.values(), self.scheduler]:
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
        for process in [*self.workers.values(), self.scheduler]:
            if process is not None:
                try:
                    process.wait(timeout=1)
                except subprocess.TimeoutExpired:  # a worker still in a task may take long to stop
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = (self.workdir / f"{name}.log").open("ab")
        return subprocess.Popen([DASK, *args], stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                start_new_session=True)

    @staticmethod
    def _kill(process: subprocess.Popen | None) -> None:
        assert process is not None and process.poll() is None, "the process is not running"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)

    @staticmethod
    def _wait_for_port(port: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.1)
        raise AssertionError(f"nothing listens on port {port} after {timeout} s")
