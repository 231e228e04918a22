"""The outbox table: queueing files and data sets, one pending item per object and destination, retry."""

from __future__ import annotations

import pytest
from pydicom.uid import generate_uid

from scpnode.delivery import outbox
from scpnode.delivery.outbox import OutboxState
from scpnode.schema import open_node_database
from tests.integration.node_helpers import ct_slice


@pytest.fixture
def db(tmp_path):
    return open_node_database(tmp_path / "var" / "node.db")


def test_data_sets_are_spooled_durably_and_files_are_queued_in_place(db, tmp_path):
    ds = ct_slice(generate_uid(), generate_uid(), 0)
    item_id = outbox.enqueue(db, ds, "pacs", now=10.0)
    [item] = outbox.items(db)
    assert item.id == item_id and item.state == OutboxState.PENDING and item.next_try_at == 10.0
    assert item.path == (tmp_path / "var" / "outbox" / f"{ds.SOPInstanceUID}.dcm").resolve()
    assert item.path.is_file() and item.sop_class_uid == ds.SOPClassUID

    other = ct_slice(generate_uid(), generate_uid(), 1)
    path = tmp_path / "sr.dcm"
    other.save_as(path, enforce_file_format=True)
    outbox.enqueue(db, path, "pacs", now=11.0)
    assert [i.path for i in outbox.due_items(db, now=12.0)] == [item.path, path.resolve()]


def test_one_pending_item_per_object_and_destination(db):
    ds = ct_slice(generate_uid(), generate_uid(), 0)
    first = outbox.enqueue(db, ds, "pacs")
    assert outbox.enqueue(db, ds, "pacs") == first
    assert outbox.enqueue(db, ds, "archive") != first
    outbox.mark_sent(db, first)
    assert outbox.enqueue(db, ds, "pacs") != first  # a new version after delivery is sent again
    assert len(outbox.items(db)) == 3


def test_failures_stay_visible_and_can_be_retried(db):
    item_id = outbox.enqueue(db, ct_slice(generate_uid(), generate_uid(), 0), "pacs", now=0.0)
    outbox.mark_attempt_failed(db, item_id, "destination not reachable", next_try_at=5.0, refused=False,
                               give_up=False)
    assert outbox.due_items(db, now=4.0) == []
    [item] = outbox.due_items(db, now=5.0)
    assert (item.attempts, item.refusals, item.last_error) == (1, 0, "destination not reachable")
    outbox.mark_attempt_failed(db, item_id, "destination answered status 0xA900", next_try_at=9.0, refused=True,
                               give_up=True)
    [failed] = outbox.items(db, OutboxState.FAILED)
    assert failed.last_error == "destination answered status 0xA900" and outbox.due_items(db, now=100.0) == []
    assert outbox.retry(db, item_id, now=50.0)
    [again] = outbox.due_items(db, now=50.0)
    assert again.state == OutboxState.PENDING and again.refusals == 0 and again.attempts == 2


def test_objects_without_uids_or_not_dicom_are_refused(db, tmp_path):
    ds = ct_slice(generate_uid(), generate_uid(), 0)
    del ds.SOPInstanceUID
    with pytest.raises(ValueError, match="SOP Instance UID"):
        outbox.enqueue(db, ds, "pacs")
    junk = tmp_path / "junk.dcm"
    junk.write_text("not dicom")
    with pytest.raises(ValueError, match="cannot queue"):
        outbox.enqueue(db, junk, "pacs")
    assert outbox.items(db) == []
