"""GET /healthz: no login, no patient data, 200 when healthy and 503 with the problems otherwise."""

import time

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SegmentationStorage, generate_uid
from starlette.testclient import TestClient

from scpnode.config import Settings
from scpnode.db import ThreadDatabases
from scpnode.delivery import outbox
from scpnode.pipeline.jobs import FAILED, AnalysisTarget, JobQueue
from scpnode.schema import prepare
from scpnode.web import create_app
from tests.unit.worklist_samples import add_study


@pytest.fixture
def node(tmp_path):
    settings = Settings.model_validate({
        "node": {"database": str(tmp_path / "node.db"), "storage_dir": str(tmp_path / "store")}})
    databases = ThreadDatabases(settings.node.database)
    db = databases.get()
    prepare(db)
    add_study(db, 1)
    return db, TestClient(create_app(settings, databases)), tmp_path


def test_healthy_node_answers_200_without_login(node):
    db, client, _ = node
    response = client.get("/healthz", follow_redirects=False)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["problems"] == []
    assert set(body) == {"status", "problems", "jobs", "outbox", "pending", "disks"}
    assert body["jobs"]["failed"] == 0 and body["outbox"]["pending"] == 0
    assert body["pending"] == {"series_receiving": 0, "oldest_outbox_item_seconds": None}
    assert not any(value in response.text for value in ("PAT00001", "Patient1", "ACC00001", "3680043"))


def test_failed_job_and_stale_results_make_it_503(node, tmp_path):
    db, client, _ = node
    queue = JobQueue(db)
    job = queue.enqueue(AnalysisTarget("1.2.3", "1.2.3.4", tmp_path, 1))
    queue.claim_next()
    queue.finish(job.id, FAILED, error="segment: boom")
    assert client.get("/healthz").json()["problems"] == ["1 failed jobs"]

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = SegmentationStorage, generate_uid()
    outbox.enqueue(db, ds, "pacs", now=time.time() - 2 * 3600)

    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["problems"][0] == "1 failed jobs" and body["problems"][1].startswith("results pending for 2.0 h")
    assert body["outbox"]["pending"] == 1 and body["pending"]["oldest_outbox_item_seconds"] > 7000


def test_unreadable_database_is_503_error(node):
    db, client, _ = node
    db.execute("DROP TABLE outbox")  # not an outbox any more: a query fails
    db.execute("CREATE TABLE outbox (id INTEGER)")
    db.conn.commit()
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json()["status"] == "error"
