"""The node database is brought to this software's version in one place, and older databases keep their data."""

from pathlib import Path

import pytest

from scpnode import worklist
from scpnode.config import settings_from_dict
from scpnode.db import migrate, open_database
from scpnode.delivery import outbox
from scpnode.delivery.orthanc import free_port
from scpnode.node import Node
from scpnode.pipeline import jobs
from scpnode.pipeline.jobs import AnalysisTarget, JobQueue
from scpnode.schema import open_node_database
from scpnode.storage import index
from scpnode.timestamps import iso_utc
from scpnode.web import security_audit, users
from scpnode.web import tables as web_tables
from scpnode.web.users import get_user


def test_a_freshly_started_node_has_every_table_the_commands_read(tmp_path):
    settings = settings_from_dict({"node": {"host": "127.0.0.1", "port": free_port(),
                                            "storage_dir": str(tmp_path / "store"),
                                            "database": str(tmp_path / "node.db")}})
    with Node(settings):
        pass
    db = open_database(tmp_path / "node.db")
    assert "purged_at" in db["instances"].columns_dict and "purged_at" in db["series"].columns_dict
    assert "job_id" in db["outbox"].columns_dict
    assert "instances_peer_received" in {ix.name for ix in db["instances"].indexes}
    assert {"jobs", "worklist", "worklist_audit", "users", "web_sessions", "security_audit"} <= set(db.table_names())
    versions = dict(db.execute("select component, version from schema_versions").fetchall())
    assert versions["index"] == len(index.MIGRATIONS) and versions["outbox"] == len(outbox.MIGRATIONS)


def test_the_apis_do_not_migrate(tmp_path):
    db = open_database(tmp_path / "node.db")
    queue = JobQueue(db)  # a worker's poll must not take the write lock to check a schema
    assert "jobs" not in db.table_names() and queue.db is db


def test_an_older_database_keeps_its_retention_marks_and_its_outbox_learns_the_jobs(tmp_path):
    """Before the index owned the retention marks, a ``retention`` component added them; before the
    outbox named its job, retention matched result files to job folders."""
    db = open_database(tmp_path / "node.db")
    migrate(db, "index", index.MIGRATIONS[:3])
    migrate(db, "retention", ["ALTER TABLE instances ADD COLUMN purged_at REAL;\n"
                              " ALTER TABLE series ADD COLUMN purged_at REAL;"])
    migrate(db, "jobs", jobs.MIGRATIONS)
    migrate(db, "outbox", outbox.MIGRATIONS[:1])
    queue = JobQueue(db)
    first, second = (queue.enqueue(AnalysisTarget("1.2", f"1.2.{n}", Path("/store"), 1)) for n in (1, 2))
    result_dir = tmp_path / "results" / "job-1"
    queue.claim_next()
    queue.finish(first.id, jobs.DONE, result_dir=str(result_dir))
    for n, path in enumerate([result_dir / "sr.dcm", result_dir / "revision-1" / "sr.dcm", tmp_path / "by-hand.dcm"]):
        db.execute("INSERT INTO outbox (path, destination, sop_instance_uid, sop_class_uid, state, next_try_at,"
                   " created_at) VALUES (?, 'pacs', ?, '1.2', 'sent', 0, 0)", [str(path), f"1.3.{n}"])
    db.conn.commit()

    db = open_node_database(tmp_path / "node.db")
    assert "purged_at" in db["series"].columns_dict
    assert [item.job_id for item in outbox.items(db)] == [first.id, first.id, None]
    assert outbox.job_items(db, second.id) == []
    assert Path(outbox.job_items(db, first.id)[1].path).parent.name == "revision-1"


def test_times_stored_as_text_by_earlier_versions_become_epoch_seconds(tmp_path):
    db = open_database(tmp_path / "node.db")
    migrate(db, "jobs", jobs.MIGRATIONS[:3])
    migrate(db, "worklist", worklist.MIGRATIONS[:2])
    migrate(db, "users", users.MIGRATIONS[:3])
    migrate(db, "web", web_tables.MIGRATIONS[:1])
    db.execute("INSERT INTO jobs (study_uid, series_uid, state, created_at, started_at, finished_at)"
               " VALUES ('1.2', '1.2.3', 'done', '2026-12-01T10:00:00.250+00:00', '2026-12-01T10:00:01.000+00:00',"
               " NULL)")
    db.execute("INSERT INTO users (username, password_hash, role, created_at, last_login_at)"
               " VALUES ('carol', 'x', 'coordinator', '2026-12-01T10:00:00+00:00', NULL)")
    db.execute("INSERT INTO security_audit (at, event) VALUES ('2026-12-01T11:00:00+00:00', 'login_locked_out')")
    db.conn.commit()

    db = open_node_database(tmp_path / "node.db")
    job = JobQueue(db).get(1)
    assert job.created_at == pytest.approx(1796119200.25) and job.finished_at is None
    assert iso_utc(job.started_at) == "2026-12-01T10:00:01+00:00"
    assert get_user(db, "carol").created_at == pytest.approx(1796119200.0)
    assert [iso_utc(e.at) for e in security_audit.recent(db)] == ["2026-12-01T11:00:00+00:00"]
    assert db["jobs"].columns_dict["created_at"] is float and db["worklist"].columns_dict["updated_at"] is float
