"""The node status page's "peers last seen" query: right answers, and an index seek per peer, not a scan."""

import pytest

from scpnode.config import Settings
from scpnode.schema import open_node_database
from scpnode.storage import index
from scpnode.web.node_status import DatabaseNodeStatus


@pytest.fixture
def db(tmp_path):
    database = open_node_database(tmp_path / "node.db")
    database["studies"].insert({"study_instance_uid": "1.7", "first_received_at": 0, "last_received_at": 0})
    database["series"].insert({"series_instance_uid": "1.8", "study_instance_uid": "1.7", "folder": "/x",
                               "state": "open", "first_received_at": 0, "opened_at": 0, "last_received_at": 0})
    received = [("CT1", 1_780_000_000.0), ("CT1", 1_780_000_600.0), ("MR_2", 1_780_000_300.0),
                ("CT1", 1_779_999_000.0), (None, 1_790_000_000.0), ("A", 1_700_000_000.0)]
    database["instances"].insert_all(
        {"sop_instance_uid": f"1.9.{n}", "series_instance_uid": "1.8", "study_instance_uid": "1.7",
         "sop_class_uid": "1.2", "transfer_syntax_uid": "1.2.840.10008.1.2.1", "path": "/x", "size": 10,
         "sha256": "0", "received_at": at, "calling_ae_title": ae} for n, (ae, at) in enumerate(received))
    return database


def test_peers_last_seen_is_the_latest_instance_of_each_calling_ae(db):
    assert index.peers_last_seen(db) == {
        "A": 1_700_000_000.0, "CT1": 1_780_000_600.0, "MR_2": 1_780_000_300.0}
    settings = Settings.model_validate({"peers": [{"ae_title": "PACS", "host": "10.0.0.5"},
                                                  {"ae_title": "CT1", "host": "10.0.0.7"}]})
    peers = DatabaseNodeStatus(settings, db).snapshot().peers
    assert [(p.ae_title, p.host, p.last_seen) for p in peers] == [
        ("A", "(not configured)", "2023-11-14T22:13:20+00:00"), ("CT1", "10.0.0.7", "2026-05-28T20:36:40+00:00"),
        ("MR_2", "(not configured)", "2026-05-28T20:31:40+00:00"), ("PACS", "10.0.0.5", "never")]


def test_peers_last_seen_seeks_the_peer_index_instead_of_scanning_instances(db):
    plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + index.PEERS_LAST_SEEN).fetchall()]
    reads = [step for step in plan if "instances" in step]
    assert reads and all(step.startswith("SEARCH instances USING COVERING INDEX instances_peer_received")
                         for step in reads), plan
    assert not any(step.startswith("SCAN instances") for step in plan), plan
