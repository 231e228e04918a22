"""``scpnode users`` and ``scpnode worklist`` on a real node database."""

import csv
import io
from datetime import date

import pytest

from scpnode.cli import main
from scpnode.config import WorklistSettings
from scpnode.schema import open_node_database
from scpnode.web.users import authenticate
from scpnode.worklist import ensure_schema
from tests.unit.worklist_samples import add_study


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text('[node]\ndatabase = "var/node.db"\nstorage_dir = "var/store"\n')
    return path


@pytest.fixture
def scpnode(config, capsys, monkeypatch):
    """Run the command line in-process; returns (exit code, stdout, stderr)."""

    def run(*args, stdin=""):
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = main(["--config", str(config), *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_users_add_list_disable(scpnode, tmp_path):
    password = "correct horse battery\n"
    assert scpnode("users", "add", "carol", "--password-stdin", stdin=password)[0] == 0
    assert scpnode("users", "add", "root", "--role", "admin", "--password-stdin", stdin=password)[0] == 0
    code, _, err = scpnode("users", "add", "carol", "--password-stdin", stdin=password)
    assert code == 2 and "exists already" in err and "Traceback" not in err
    code, _, err = scpnode("users", "add", "dave", "--password-stdin", stdin="short\n")
    assert code == 2 and "at least 10 characters" in err
    code, _, err = scpnode("users", "add", "erin")
    assert code == 2 and "--password-stdin" in err

    assert scpnode("users", "disable", "carol")[0] == 0
    listing = scpnode("users", "list")[1].splitlines()
    assert [line.split()[:3] for line in listing[1:]] == [["carol", "coordinator", "disabled"],
                                                          ["root", "admin", "active"]]
    db = open_node_database(tmp_path / "var" / "node.db")
    assert authenticate(db, "carol", "correct horse battery") is None
    assert authenticate(db, "root", "correct horse battery").username == "root"
    assert scpnode("users", "disable", "nobody")[0] == 2


def test_worklist_list_and_export(scpnode, tmp_path):
    db = open_node_database(tmp_path / "var" / "node.db")
    ensure_schema(db)
    for i in range(5):
        add_study(db, i)
    flagged = add_study(db, 9, l1_hu=90)

    code, out, err = scpnode("worklist", "list", "--page-size", "3")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 4 and lines[1].split()[0] == str(flagged) and "l1_hu" in lines[1]
    assert "page 1 of 2, 6 rows" in err

    code, out, _ = scpnode("worklist", "export", "--out", "-", "--flag-reason", "l1_hu")
    assert code == 0 and [r["accession_number"] for r in csv.DictReader(io.StringIO(out))] == ["ACC00009"]
    written = tmp_path / "export.csv"
    assert scpnode("worklist", "export", "--out", str(written), "--status", "new")[0] == 0
    assert len(list(csv.DictReader(written.open(encoding="utf-8")))) == 6

    code, _, err = scpnode("worklist", "list", "--from", "2026-31-01")
    assert code == 2 and "date_from must be a date" in err


def test_terminal_escapes_in_patient_fields_are_shown_not_obeyed(scpnode, tmp_path):
    from scpnode.worklist import StudyInfo, add_scored_study
    from tests.unit.worklist_samples import measurements

    db = open_node_database(tmp_path / "var" / "node.db")
    ensure_schema(db)
    hostile = StudyInfo(study_uid="1.2.826.0.1.3680043.10.99", series_uid="1.2.826.0.1.3680043.10.98",
                        patient_id="PAT\x1b[2J\x1b]0;owned\x07", patient_name="X^Y", accession_number="ACC\x9b31m",
                        study_date=date(2026, 1, 2), study_description="CT")
    add_scored_study(db, hostile, measurements(90.0, 70.0, 0, None), WorklistSettings())
    code, out, _ = scpnode("worklist", "list")
    assert code == 0 and "\x1b" not in out and "\x9b" not in out and "\x07" not in out
    assert "PAT\\x1b[2J\\x1b]" in out and "ACC\\x9b31m" in out
