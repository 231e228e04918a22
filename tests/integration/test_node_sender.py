"""The outbox sender against real peers: a destination that is down, and one that refuses the object."""

from __future__ import annotations

import time

import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE, evt

from scpnode.config import DestinationSettings, TlsSettings
from scpnode.db import ThreadDatabases
from scpnode.delivery import outbox
from scpnode.delivery.orthanc import free_port
from scpnode.delivery.outbox import OutboxState
from scpnode.delivery.sender import OutboxSender
from scpnode.network.receiver import STORAGE_SOP_CLASSES
from scpnode.schema import prepare
from tests.integration.node_helpers import ct_slice

pytestmark = pytest.mark.integration


def make_sender(tmp_path, port: int) -> OutboxSender:
    destination = DestinationSettings(name="pacs", ae_title="PACS", host="127.0.0.1", port=port)
    databases = ThreadDatabases(tmp_path / "node.db")
    prepare(databases.get())  # as the node does at start
    return OutboxSender(databases, [destination], "SCPNODE", TlsSettings(),
                        retry_base_seconds=1.0, retry_max_seconds=4.0, max_refusals=2, timeout_seconds=5)


def test_unreachable_destination_keeps_items_pending_with_backoff(tmp_path):
    sender = make_sender(tmp_path, free_port())  # nothing listens there
    db = sender.databases.get()
    outbox.enqueue(db, ct_slice(generate_uid(), generate_uid(), 0), "pacs", now=0.0)
    start = time.time()
    for _ in range(5):  # many more than max_refusals: not reachable is never a refusal
        sender.send_due(now=1e12)
    [item] = outbox.items(db)
    assert item.state == OutboxState.PENDING and item.attempts == 5 and item.refusals == 0
    assert item.last_error.startswith("destination not reachable (PACS@127.0.0.1:")
    assert start + 4.0 <= item.next_try_at <= time.time() + 4.0  # 1, 2, 4, 4, 4 s: capped


def test_refusing_destination_fails_the_item_after_max_refusals_and_retry_delivers(tmp_path):
    answers = [0xA900, 0xA900, 0x0000]
    received = []

    def handle_store(event):
        status = answers.pop(0)
        if status == 0x0000:
            received.append(event.dataset.SOPInstanceUID)
        return status

    ae = AE(ae_title="PACS")
    for sop_class in STORAGE_SOP_CLASSES:
        ae.add_supported_context(sop_class)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, handle_store)])
    try:
        sender = make_sender(tmp_path, port)
        db = sender.databases.get()
        ds = ct_slice(generate_uid(), generate_uid(), 0)
        item_id = outbox.enqueue(db, ds, "pacs")
        assert sender.send_due(now=1e12) == 0
        assert sender.send_due(now=1e12) == 0
        [failed] = outbox.items(db, OutboxState.FAILED)
        assert failed.refusals == 2 and failed.last_error == "destination answered status 0xA900"
        assert sender.send_due(now=1e12) == 0  # failed items are not retried on their own
        assert outbox.retry(db, item_id)
        assert sender.send_due(now=1e12) == 1
        assert received == [ds.SOPInstanceUID]
        assert outbox.items(db, OutboxState.SENT)[0].attempts == 3
    finally:
        server.shutdown()
