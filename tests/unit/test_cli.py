import subprocess
import sys

from scpnode import __version__
from scpnode.cli import COMMAND_MODULES, main


def test_help_lists_every_subcommand(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    for name in ("serve", "demo", "segment", "analyze", "cohort", "worklist"):
        assert name in out
    assert set(COMMAND_MODULES) >= {"serve", "demo", "segment", "analyze", "cohort", "worklist"}


def test_console_script_version():
    result = subprocess.run([sys.executable, "-m", "scpnode.cli", "--version"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"scpnode {__version__}"


def test_bad_config_is_one_line_not_a_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[node]\nport = 'abc'\n")
    result = subprocess.run([sys.executable, "-m", "scpnode.cli", "--config", str(bad), "status"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "node.port" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
