from pathlib import Path

import pytest

from scpnode.config import ConfigError, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_defaults_without_file():
    settings = load_settings(None)
    assert settings.node.ae_title == "SCPNODE"
    assert settings.node.port == 11112
    assert settings.completion.quiet_seconds == 30
    assert settings.pipeline.device == "auto"
    assert settings.node.database.is_absolute()


def test_relative_paths_resolve_next_to_the_file(tmp_path):
    settings = load_settings(write(tmp_path, '[node]\nstorage_dir = "store"\n'))
    assert settings.node.storage_dir == tmp_path / "store"


def test_peers_and_destinations(tmp_path):
    settings = load_settings(write(tmp_path, """
[[peers]]
ae_title = "PACS"
host = "10.0.0.5"
max_associations = 2

[[destinations]]
name = "pacs"
ae_title = "PACS"
host = "10.0.0.5"
port = 104
"""))
    assert settings.peers[0].max_associations == 2
    assert settings.destinations[0].port == 104


@pytest.mark.parametrize("text, key", [
    ('[node]\nport = 70000\n', "node.port"),
    ('[node]\nprot = 104\n', "node.prot: unknown key"),
    ('[node]\nae_title = "THIS_TITLE_IS_TOO_LONG"\n', "node.ae_title"),
    ('[pipeline]\ndevice = "tpu"\n', "pipeline.device"),
    ('[[peers]]\nae_title = "X"\n', "peers.0.host"),
    ('[tls]\nenabled = true\n', "tls: enabled needs cert_file"),
    ('node = [', "not valid TOML"),
])
def test_bad_config_gives_one_line_naming_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text))
    message = str(err.value)
    assert key in message
    assert "\n" not in message


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "absent.toml")


def test_stow_rs_destination_with_secrets_beside_the_file(tmp_path):
    settings = load_settings(write(tmp_path, """
[[destinations]]
name = "archive"
protocol = "stow-rs"
url = "https://vna.example.org/dicom-web"
username = "scpnode"
password_file = "secrets/vna-password"
"""))
    [destination] = settings.destinations
    assert destination.protocol == "stow-rs" and destination.password_file == tmp_path / "secrets" / "vna-password"


@pytest.mark.parametrize("table, message", [
    ('name = "p"\nhost = "10.0.0.5"', "a dimse destination needs ae_title and host"),
    ('name = "p"\nae_title = "PACS"\nhost = "h"\nurl = "http://h/dicom-web"', "apply to protocol 'stow-rs'"),
    ('name = "p"\nprotocol = "stow-rs"', "needs url"),
    ('name = "p"\nprotocol = "stow-rs"\nurl = "ftp://h"', "needs url"),
    ('name = "p"\nprotocol = "stow-rs"\nurl = "http://h"\ntls = true', "use an https:// url"),
    ('name = "p"\nprotocol = "stow-rs"\nurl = "http://h"\nusername = "u"', "username and password_file go together"),
    ('name = "p"\nprotocol = "smtp"\nurl = "http://h"', "protocol"),
])
def test_incomplete_destinations_are_refused_in_one_line(tmp_path, table, message):
    with pytest.raises(ConfigError, match=message) as error:
        load_settings(write(tmp_path, f"[[destinations]]\n{table}\n"))
    assert "\n" not in str(error.value)
