"""Run a private Orthanc (Debian package ``orthanc``) as a PACS peer.

Used by ``scpnode demo`` (a local PACS that receives the results) and by the
test suite. Each instance gets its own generated configuration, storage and
free loopback ports, and is stopped with :meth:`LocalOrthanc.stop`.
Talking to it uses Orthanc's documented REST API through urllib, which keeps
the node free of an HTTP client dependency for this one use.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ORTHANC_BINARY = "Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
"""Orthanc's DICOMweb plugin (Debian package ``orthanc-dicomweb``)."""


class OrthancError(RuntimeError):
    """Orthanc could not be started or answered with an error."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def orthanc_available() -> bool:
    """True when the Orthanc server binary is installed."""
    return shutil.which(ORTHANC_BINARY) is not None


@dataclass
class LocalOrthanc:
    """A private Orthanc server on loopback.

    Args:
        workdir: folder for its configuration, database and log.
        aet: its DICOM AE title.
        modalities: DICOM peers it may send to / accept, ``{name: (aet, host, port)}``.
        lua_scripts: Lua files loaded at start (e.g. routing scripts).
        extra_config: more Orthanc configuration keys.
        dicomweb: load the DICOMweb plugin (QIDO-RS, WADO-RS, STOW-RS under ``/dicom-web``).
        credentials: (user, password) that its HTTP server requires (Basic), or None for none.
    """

    workdir: Path
    aet: str = "ORTHANC"
    modalities: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    lua_scripts: list[Path] = field(default_factory=list)
    extra_config: dict[str, Any] = field(default_factory=dict)
    dicomweb: bool = False
    credentials: tuple[str, str] | None = None
    host: str = "127.0.0.1"
    dicom_port: int = 0
    http_port: int = 0
    _process: subprocess.Popen | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """The DICOMweb base URL (with ``dicomweb=True``)."""
        return f"{self.url}/dicom-web"

    def config(self) -> dict[str, Any]:
        """The Orthanc configuration this instance runs with."""
        return {
            "Name": f"scpnode-{self.aet}",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "storage"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": self.credentials is not None,
            "RegisteredUsers": dict([self.credentials]) if self.credentials else {},
            "HttpServerEnabled": True,
            "Plugins": [str(DICOMWEB_PLUGIN)] if self.dicomweb else [],
            "DicomWeb": {"Enable": self.dicomweb, "Root": "/dicom-web/"},
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomModalities": {name: list(peer) for name, peer in self.modalities.items()},
            "LuaScripts": [str(p) for p in self.lua_scripts],
            "StableAge": 2,
            "ConcurrentJobs": 2,
            "SaveJobs": False,
            "StorageCompression": False,
            **self.extra_config,
        }

    def start(self, timeout: float = 30.0) -> "LocalOrthanc":
        """Write the configuration, start Orthanc and wait until its REST API answers."""
        if not orthanc_available():
            raise OrthancError("Orthanc is not installed (Debian package 'orthanc')")
        if self.dicomweb and not DICOMWEB_PLUGIN.is_file():
            raise OrthancError("Orthanc's DICOMweb plugin is not installed (Debian package 'orthanc-dicomweb')")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.dicom_port = self.dicom_port or free_port(self.host)
        self.http_port = self.http_port or free_port(self.host)
        config_path = self.workdir / "orthanc.json"
        config_path.write_text(json.dumps(self.config(), indent=2))
        log = open(self.workdir / "orthanc.log", "ab")
        self._process = subprocess.Popen(
            [ORTHANC_BINARY, "--no-jobs", str(config_path)],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise OrthancError(f"Orthanc exited with {self._process.returncode}; see {self.workdir / 'orthanc.log'}")
            try:
                self.get("/system")
                return self
            except (OrthancError, OSError):
                time.sleep(0.2)
        self.stop()
        raise OrthancError(f"Orthanc did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> "LocalOrthanc":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- REST ---------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes | dict | list | None = None,
                content_type: str = "application/json", timeout: float = 60.0) -> Any:
        """Call the REST API; JSON answers are decoded, others returned as bytes."""
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if self.credentials is not None:
            token = base64.b64encode(":".join(self.credentials).encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                payload = resp.read()
                if resp.headers.get_content_type() == "application/json":
                    return json.loads(payload or b"null")
                return payload
        except urllib.error.HTTPError as exc:
            raise OrthancError(f"{method} {path}: HTTP {exc.code} {exc.read()[:300]!r}") from None
        except urllib.error.URLError as exc:
            raise OrthancError(f"{method} {path}: {exc.reason}") from None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: bytes | dict | list | None = None) -> Any:
        return self.request("POST", path, body)

    def upload(self, dicom_file: Path) -> dict:
        """Store one DICOM file through REST (``POST /instances``)."""
        return self.request("POST", "/instances", dicom_file.read_bytes(), "application/dicom")

    def add_modality(self, name: str, aet: str, host: str, port: int) -> None:
        """Register a DICOM peer Orthanc may send to (``PUT /modalities/{name}``)."""
        self.request("PUT", f"/modalities/{name}", {"AET": aet, "Host": host, "Port": port})
        self.modalities[name] = (aet, host, port)

    def studies(self) -> list[str]:
        return self.get("/studies")

    def find_study(self, study_uid: str) -> str | None:
        """Orthanc's id of the study with this Study Instance UID, or None."""
        found = self.post("/tools/lookup", study_uid.encode())
        for item in found or []:
            if item.get("Type") == "Study":
                return item["ID"]
        return None

    def study_instances(self, study_uid: str) -> list[dict]:
        """Instances (with their main tags) stored for a study, any series."""
        orthanc_id = self.find_study(study_uid)
        if orthanc_id is None:
            return []
        return self.get(f"/studies/{orthanc_id}/instances?expand")
