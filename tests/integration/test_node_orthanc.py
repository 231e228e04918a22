"""Orthanc as the PACS: it pushes a study to the node, the node sends objects back through the outbox,
and Orthanc going down in the middle of sending loses nothing and duplicates nothing."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.uid import generate_uid

from scpnode.delivery import outbox
from scpnode.node import Node
from scpnode.storage import index
from scpnode.storage.index import SeriesState
from tests.integration.node_helpers import ct_slice, node_settings, wait_for, write_ct_series

pytestmark = pytest.mark.integration


def test_orthanc_pushes_a_study_and_receives_results_across_an_outage(orthanc, tmp_path):
    selected = []
    settings = node_settings(
        tmp_path / "node", peers=[{"ae_title": orthanc.aet, "host": "127.0.0.1"}],
        destinations=[{"name": "pacs", "ae_title": orthanc.aet, "host": "127.0.0.1", "port": orthanc.dicom_port}])
    with Node(settings, on_series_selected=selected.append,
              sender_options={"poll_seconds": 0.1, "retry_base_seconds": 0.2, "retry_max_seconds": 0.5,
                              "batch_size": 5}) as node:
        orthanc.add_modality("scpnode", "SCPNODE", "127.0.0.1", node.port)
        files = write_ct_series(tmp_path / "study", 24)
        for path in files:
            orthanc.upload(path)
        study = pydicom.dcmread(files[0], stop_before_pixels=True)
        orthanc_study = orthanc.find_study(study.StudyInstanceUID)
        answer = orthanc.post("/modalities/scpnode/store", {"Resources": [orthanc_study], "Synchronous": True})
        assert answer["InstancesCount"] == 24 and answer["FailedInstancesCount"] == 0
        db = node.database()
        assert db["instances"].count == 24
        wait_for(lambda: selected, timeout=20)
        assert selected[0].series_instance_uid == study.SeriesInstanceUID
        assert selected[0].state == SeriesState.SELECTED

        # Results go back: 40 objects into the same study; Orthanc stops after the first arrive.
        results_series = generate_uid()
        results = [ct_slice(study.StudyInstanceUID, results_series, i, seed=7) for i in range(40)]
        for ds in results:
            outbox.enqueue(db, ds, "pacs")
        node.sender.wake()
        wait_for(lambda: outbox.items(db, outbox.OutboxState.SENT), timeout=30, interval=0.01)
        orthanc.stop()
        wait_for(lambda: any(item.last_error for item in outbox.items(db, outbox.OutboxState.PENDING)), timeout=30)
        assert outbox.items(db, outbox.OutboxState.PENDING)  # waiting, not dropped
        assert not outbox.items(db, outbox.OutboxState.FAILED)
        orthanc.start()  # same workdir and ports: the PACS comes back
        wait_for(lambda: len(outbox.items(db, outbox.OutboxState.SENT)) == 40, timeout=60)

    sent = outbox.items(db, outbox.OutboxState.SENT)
    assert len({item.sop_instance_uid for item in sent}) == 40
    assert any(item.attempts > 1 for item in sent)  # some did go through the outage
    in_pacs = orthanc.study_instances(study.StudyInstanceUID)
    uids = [instance["MainDicomTags"]["SOPInstanceUID"] for instance in in_pacs]
    assert len(uids) == len(set(uids)) == 64
    assert {ds.SOPInstanceUID for ds in results} <= set(uids)
    assert index.series_ref(db, study.SeriesInstanceUID).instance_count == 24
