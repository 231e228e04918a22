"""deploy/: the production configuration loads, and the systemd units are valid and fit it."""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from scpnode.cli import COMMAND_MODULES
from scpnode.config import load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROJECT_ROOT = DEPLOY.parent
INSTALL_PREFIX = "/opt/scpnode"
"""Where the units expect the project (checkout with its .venv); README "Operations"."""
UNITS = ("scpnode.service", "scpnode-purge.service", "scpnode-purge.timer")


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read(DEPLOY / "systemd" / name)
    return parser


def _environment() -> dict[str, str]:
    lines = (DEPLOY / "systemd" / "scpnode.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_production_configuration_is_locked_down():
    settings = load_settings(DEPLOY / "scpnode.production.toml")
    assert settings.tls.enabled and settings.tls.require_client_cert and settings.tls.ca_file
    assert settings.node.require_known_peers and settings.peers
    assert all(peer.host != "*" for peer in settings.peers)
    assert settings.destinations and all(d.tls for d in settings.destinations)
    assert settings.pipeline.device in ("auto", "cuda")
    assert settings.retention.purge_images_after_days is not None
    assert settings.web.host == "127.0.0.1" and settings.web.secure_cookies
    state = Path("/var/lib") / _unit("scpnode.service")["Service"]["StateDirectory"]
    for path in (settings.node.storage_dir, settings.node.database, settings.node.results_dir):
        assert path.is_relative_to(state), path


def test_service_runs_serve_unprivileged_with_graceful_stop():
    service = _unit("scpnode.service")["Service"]
    assert service["User"] == "scpnode" and service["Group"] == "scpnode"
    assert service["ExecStart"].split()[0] == f"{INSTALL_PREFIX}/.venv/bin/scpnode"
    assert service["ExecStart"].split()[-1] == "serve"
    assert service["StateDirectory"] == "scpnode" and service["ReadWritePaths"] == "/var/lib/scpnode"
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM" and service["KillMode"] == "mixed"
    assert int(service["TimeoutStopSec"]) >= 120  # a running job finishes, then associations (30 s)
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "ProtectKernelTunables", "RestrictSUIDSGID"):
        assert service[key] == "yes", key
    assert service["ProtectSystem"] == "strict"
    assert service["EnvironmentFile"] == "/etc/scpnode/scpnode.env"
    assert _environment()["SCPNODE_CONFIG"] == "/etc/scpnode/scpnode.toml"


def test_purge_timer_runs_the_purge_command():
    assert "purge" in COMMAND_MODULES
    service = _unit("scpnode-purge.service")["Service"]
    assert service["Type"] == "oneshot" and service["User"] == "scpnode"
    assert service["ExecStart"].split()[-1] == "purge"
    assert _unit("scpnode-purge.timer")["Timer"]["OnCalendar"]


@pytest.mark.integration
def test_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd); not one of the test peers")
    # The units name the install location; verify them against this checkout, which has the executable.
    for name in UNITS:
        text = (DEPLOY / "systemd" / name).read_text().replace(INSTALL_PREFIX, str(PROJECT_ROOT))
        (tmp_path / name).write_text(text)
    if not (PROJECT_ROOT / ".venv" / "bin" / "scpnode").exists():
        pytest.skip("no .venv/bin/scpnode in this checkout (run deploy/install.sh)")
    result = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / n) for n in UNITS)],
                            capture_output=True, text=True, timeout=60)
    ours = [line for line in result.stderr.splitlines() if any(n in line for n in UNITS)]
    assert result.returncode == 0 and not ours, result.stderr


def test_orthanc_configuration_registers_the_node_and_the_script():
    config = json.loads((DEPLOY / "orthanc" / "orthanc-scpnode.json").read_text())
    node = config["DicomModalities"][config["ScpnodeRouting"]["Modality"]]
    production = load_settings(DEPLOY / "scpnode.production.toml")
    assert node["AET"] == production.node.ae_title and node["Port"] == production.node.port
    assert node["UseDicomTls"] == production.tls.enabled
    assert [Path(p).name for p in config["LuaScripts"]] == ["route-to-scpnode.lua"]
    assert (DEPLOY / "orthanc" / "route-to-scpnode.lua").read_text().count("function OnStableSeries(") == 1
