"""The node database is brought to this software's version in one place, and older databases keep their data."""

from pathlib import Path

from scpnode.config import settings_from_dict
from scpnode.db import migrate, open_database
from scpnode.delivery import outbox
from scpnode.delivery.orthanc import free_port
from scpnode.node import Node
from scpnode.pipeline import jobs
from scpnode.pipeline.jobs import JobQueue
from scpnode.schema import open_node_database
from scpnode.storage import index


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
    first, second = (queue.enqueue("1.2", f"1.2.{n}", "/store", f"sig{n}") for n in (1, 2))
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
