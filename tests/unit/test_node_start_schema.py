"""A freshly started node's database has every table and column that later commands expect."""

from scpnode import index, retention
from scpnode.config import settings_from_dict
from scpnode.db import open_database
from scpnode.node import Node
from scpnode.orthanc import free_port


def test_a_freshly_started_node_has_the_retention_columns_and_the_peer_index(tmp_path):
    settings = settings_from_dict({"node": {"host": "127.0.0.1", "port": free_port(),
                                            "storage_dir": str(tmp_path / "store"),
                                            "database": str(tmp_path / "node.db")}})
    with Node(settings):
        pass
    db = open_database(tmp_path / "node.db")
    assert "purged_at" in db["instances"].columns_dict and "purged_at" in db["series"].columns_dict
    assert "instances_peer_received" in {ix.name for ix in db["instances"].indexes}
    versions = dict(db.execute("select component, version from schema_versions").fetchall())
    assert versions["retention"] == len(retention.MIGRATIONS) and versions["index"] == len(index.MIGRATIONS)
