"""STOW-RS destinations against Orthanc's DICOMweb plugin: delivery, an outage, refusals, credentials."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from scpnode.config import ConfigError, DestinationSettings, TlsSettings
from scpnode.db import ThreadDatabases
from scpnode.delivery import outbox
from scpnode.delivery.orthanc import LocalOrthanc
from scpnode.delivery.outbox import OutboxState
from scpnode.delivery.sender import OutboxSender
from scpnode.schema import prepare
from tests.integration.node_helpers import ct_slice

pytestmark = pytest.mark.integration


def stow_sender(tmp_path: Path, url: str, **credentials) -> OutboxSender:
    destination = DestinationSettings(name="web", protocol="stow-rs", url=url, **credentials)
    databases = ThreadDatabases(tmp_path / "node.db")
    prepare(databases.get())  # as the node does at start
    return OutboxSender(databases, [destination], "SCPNODE", TlsSettings(),
                        retry_base_seconds=1.0, retry_max_seconds=4.0, max_refusals=2, timeout_seconds=5)


def comprehensive_sr(study_uid: str) -> Dataset:
    sr = Dataset()
    sr.file_meta = FileMetaDataset()
    sr.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr.SOPClassUID = sr.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
    sr.SOPInstanceUID = sr.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    sr.StudyInstanceUID, sr.SeriesInstanceUID = study_uid, generate_uid()
    sr.PatientID, sr.Modality, sr.ValueType = "TEST-0001", "SR", "CONTAINER"
    return sr


def stored_uids(orthanc: LocalOrthanc) -> list[str]:
    """SOP Instance UIDs Orthanc holds, once per stored instance."""
    return [orthanc.get(f"/instances/{i}/simplified-tags")["SOPInstanceUID"] for i in orthanc.get("/instances")]


def test_results_are_stored_once_across_an_outage(orthanc_dicomweb, tmp_path, shared_data):
    study_uid = generate_uid()
    third_party_seg = pydicom.dcmread(shared_data / "interop" / "highdicom" / "seg_image_ct_binary.dcm")
    objects = [ct_slice(study_uid, generate_uid(), 0), comprehensive_sr(study_uid), third_party_seg]
    sender = stow_sender(tmp_path, orthanc_dicomweb.dicomweb_url)
    db = sender.databases.get()
    for ds in objects[:2]:
        outbox.enqueue(db, ds, "web")
    assert sender.send_due() == 2

    orthanc_dicomweb.stop()  # the PACS goes down with an object waiting
    outbox.enqueue(db, objects[2], "web")
    assert sender.send_due(now=1e12) == 0
    [waiting] = outbox.items(db, OutboxState.PENDING)
    assert waiting.last_error.startswith("destination not reachable") and waiting.refusals == 0
    orthanc_dicomweb.start()  # same ports, same storage
    assert sender.send_due(now=1e12) == 1

    assert sorted(stored_uids(orthanc_dicomweb)) == sorted(str(ds.SOPInstanceUID) for ds in objects)
    assert [item.state for item in outbox.items(db)] == [OutboxState.SENT] * 3


def test_wrong_url_is_a_refusal_that_stays_visible(orthanc_dicomweb, tmp_path):
    sender = stow_sender(tmp_path, orthanc_dicomweb.url + "/no-such-dicomweb")
    db = sender.databases.get()
    outbox.enqueue(db, ct_slice(generate_uid(), generate_uid(), 0), "web")
    sender.send_due(now=1e12)
    sender.send_due(now=1e12)
    [failed] = outbox.items(db, OutboxState.FAILED)
    assert failed.refusals == 2 and failed.last_error.startswith("HTTP 404")
    assert orthanc_dicomweb.get("/instances") == []


def test_basic_credentials_come_from_a_file(tmp_path, require_tool):
    require_tool("Orthanc")
    server = LocalOrthanc(workdir=tmp_path / "orthanc", dicomweb=True, credentials=("scpnode", "s3cret")).start()
    try:
        right, wrong = tmp_path / "right", tmp_path / "wrong"
        right.write_text("s3cret\n")
        wrong.write_text("guess\n")
        ds = ct_slice(generate_uid(), generate_uid(), 0)
        refused = stow_sender(tmp_path / "a", server.dicomweb_url, username="scpnode", password_file=wrong)
        outbox.enqueue(refused.databases.get(), ds, "web")
        refused.send_due(now=1e12)
        assert outbox.items(refused.databases.get())[0].last_error.startswith("HTTP 401")

        accepted = stow_sender(tmp_path / "b", server.dicomweb_url, username="scpnode", password_file=right)
        outbox.enqueue(accepted.databases.get(), ds, "web")
        assert accepted.send_due() == 1
        assert stored_uids(server) == [ds.SOPInstanceUID]
    finally:
        server.stop()


def test_unreadable_credentials_file_stops_the_start(tmp_path):
    with pytest.raises(ConfigError, match="destination 'web': cannot read .*missing"):
        stow_sender(tmp_path, "http://127.0.0.1:9/dicom-web", username="scpnode", password_file=tmp_path / "missing")
