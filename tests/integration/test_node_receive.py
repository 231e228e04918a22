"""The node receives from real senders (DCMTK storescu, pynetdicom), stores, indexes, completes and selects."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless, JPEGLosslessSV1, JPEGLSLossless,
    RLELossless, generate_uid,
)
from pynetdicom import AE

from scpnode.node import Node
from scpnode.storage import index
from scpnode.storage.index import SeriesState
from tests.integration.node_helpers import (
    CT_IMAGE_STORAGE, ct_slice, dataset_bytes, node_settings, storescu, wait_for, write_ct_series,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def running_node(tmp_path: Path, require_tool):
    require_tool("storescu")
    selected = []
    node = Node(node_settings(tmp_path / "node"), on_series_selected=selected.append)
    node.start()
    node.selected = selected
    try:
        yield node
    finally:
        node.stop()


def stored_file(node: Node, sent: Path) -> Path:
    ds = pydicom.dcmread(sent, stop_before_pixels=True)
    return node.store.instance_path(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)


def series_state(node: Node, series_uid: str) -> SeriesState | None:
    ref = index.series_ref(node.database(), series_uid)
    return ref.state if ref else None


def test_storescu_series_is_stored_byte_identical_indexed_completed_and_selected(running_node, tmp_path):
    files = write_ct_series(tmp_path / "series", 30)
    result = storescu(running_node.port, files)
    assert result.returncode == 0, result.stderr
    for sent in files:
        assert dataset_bytes(stored_file(running_node, sent)) == dataset_bytes(sent)
    series_uid = pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID
    ref = index.series_ref(running_node.database(), series_uid)
    assert ref.instance_count == 30 and ref.folder == stored_file(running_node, files[0]).parent
    wait_for(lambda: series_state(running_node, series_uid) == SeriesState.SELECTED, timeout=20)
    assert [s.series_instance_uid for s in running_node.selected] == [series_uid]
    assert running_node.selected[0].instance_count == 30
    assert not list(running_node.store.root.rglob("*.part"))


def test_jpeg2000_pet_ct_slices_arrive_compressed_and_are_rejected_for_coverage(running_node, tmp_path, shared_data,
                                                                                 require_tool):
    dcmodify = require_tool("dcmodify")
    # The shared slices are anonymised down to empty SOP Class/Instance, Study and Series UIDs;
    # DCMTK cannot send them as they are. Fill them in on copies (the JPEG 2000 pixel data stays encapsulated).
    copies = []
    study_uid, series_uid = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    for source in sorted((shared_data / "real_ct" / "pet_ct_slices").iterdir()):
        copy = tmp_path / "pet" / source.name
        copy.parent.mkdir(exist_ok=True)
        copy.write_bytes(source.read_bytes())
        sop_uid = str(pydicom.filereader.read_file_meta_info(source).MediaStorageSOPInstanceUID)
        subprocess.run([dcmodify, "-nb", "-i", f"(0008,0016)={CT_IMAGE_STORAGE}", "-i", f"(0008,0018)={sop_uid}",
                        "-i", f"(0020,000d)={study_uid}", "-i", f"(0020,000e)={series_uid}", str(copy)],
                       check=True, capture_output=True)
        copies.append(copy)
    result = storescu(running_node.port, copies, "-xv", "-R")
    assert result.returncode == 0, result.stderr
    for sent in copies:
        stored = stored_file(running_node, sent)
        assert dataset_bytes(stored) == dataset_bytes(sent)
        assert pydicom.dcmread(stored, stop_before_pixels=True).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
    wait_for(lambda: series_state(running_node, series_uid) == SeriesState.REJECTED, timeout=20)
    ref = index.series_ref(running_node.database(), series_uid)
    assert ref.instance_count == len(copies) == 20
    assert ref.reason.startswith("coverage: 38 mm craniocaudal < 50 mm")
    assert running_node.selected == []


def test_unknown_calling_ae_is_rejected_and_known_one_can_echo(running_node, require_tool):
    echoscu = require_tool("echoscu")
    refused = subprocess.run([echoscu, "-aet", "INTRUDER", "-aec", "SCPNODE", "127.0.0.1", str(running_node.port)],
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0
    assert "Calling AE Title Not Recognized" in refused.stderr
    accepted = subprocess.run([echoscu, "-aet", "STORESCU", "-aec", "SCPNODE", "127.0.0.1", str(running_node.port)],
                              capture_output=True, text=True, timeout=30)
    assert accepted.returncode == 0, accepted.stderr


def test_an_association_to_another_called_ae_title_is_rejected(running_node, require_tool, caplog):
    echoscu = require_tool("echoscu")
    with caplog.at_level("WARNING", logger="scpnode.network.receiver"):
        refused = subprocess.run([echoscu, "-aet", "STORESCU", "-aec", "NOTNODE", "127.0.0.1",
                                  str(running_node.port)], capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0
    assert "Called AE Title Not Recognized" in refused.stderr
    assert [getattr(r, "reason", None) for r in caplog.records if r.getMessage() == "association_rejected"] == [
        "called AE title 'NOTNODE' is not this node's 'SCPNODE'"]


def test_resend_of_same_content_does_not_reprocess_but_changed_content_does(running_node, tmp_path):
    files = write_ct_series(tmp_path / "series", 24)
    series_uid = pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID
    assert storescu(running_node.port, files).returncode == 0
    wait_for(lambda: len(running_node.selected) == 1, timeout=20)

    assert storescu(running_node.port, files).returncode == 0  # identical resend
    ref = index.series_ref(running_node.database(), series_uid)
    assert ref.state == SeriesState.SELECTED and ref.revision == 1 and ref.instance_count == 24

    changed = pydicom.dcmread(files[5])
    changed.WindowCenter = 40  # same SOP Instance UID, new content
    changed.save_as(files[5])
    assert storescu(running_node.port, [files[5]]).returncode == 0
    assert series_state(running_node, series_uid) == SeriesState.RECEIVED
    wait_for(lambda: len(running_node.selected) == 2, timeout=20)
    ref = index.series_ref(running_node.database(), series_uid)
    assert ref.revision == 2 and ref.instance_count == 24
    assert running_node.selected[1].revision == 2
    assert dataset_bytes(stored_file(running_node, files[5])) == dataset_bytes(files[5])


def test_four_parallel_senders_lose_nothing(running_node, tmp_path):
    batches = [write_ct_series(tmp_path / f"series{i}", 25, seed=i) for i in range(4)]
    results = [None] * 4

    def send(i: int) -> None:
        results[i] = storescu(running_node.port, batches[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    db = running_node.database()
    assert db["instances"].count == 100
    for batch in batches:
        for sent in batch:
            assert dataset_bytes(stored_file(running_node, sent)) == dataset_bytes(sent)
    wait_for(lambda: len(running_node.selected) == 4, timeout=20)


def test_per_peer_association_limit(tmp_path, require_tool):
    settings = node_settings(tmp_path / "node", peers=[{"ae_title": "PYSCU", "host": "127.0.0.1",
                                                        "max_associations": 1}])
    with Node(settings) as node:
        ae = AE(ae_title="PYSCU")
        ae.add_requested_context("1.2.840.10008.1.1")
        first = ae.associate("127.0.0.1", node.port, ae_title="SCPNODE")
        assert first.is_established
        second = ae.associate("127.0.0.1", node.port, ae_title="SCPNODE")
        assert second.is_rejected
        first.release()  # frees the peer's slot once the node has seen the connection close

        def associate_if_free():
            assoc = ae.associate("127.0.0.1", node.port, ae_title="SCPNODE")
            return assoc if assoc.is_established else None

        wait_for(associate_if_free, timeout=10).release()


@pytest.mark.parametrize("transfer_syntax", [RLELossless, JPEG2000Lossless, JPEGLSLossless,
                                             DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_compressed_and_other_transfer_syntaxes_are_stored_as_sent(running_node, transfer_syntax):
    ds = ct_slice(generate_uid(), generate_uid(), 0)
    original = ds.pixel_array.copy()
    if transfer_syntax.is_compressed:
        ds.compress(transfer_syntax)
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(CT_IMAGE_STORAGE, transfer_syntax)
    assoc = ae.associate("127.0.0.1", running_node.port, ae_title="SCPNODE")
    assert assoc.accepted_contexts[0].transfer_syntax[0] == transfer_syntax
    assert assoc.send_c_store(ds).Status == 0x0000
    assoc.release()
    stored = pydicom.dcmread(running_node.store.instance_path(ds.StudyInstanceUID, ds.SeriesInstanceUID,
                                                               ds.SOPInstanceUID))
    assert stored.file_meta.TransferSyntaxUID == transfer_syntax
    assert (stored.pixel_array == original).all()


def test_jpeg_lossless_from_dcmtk_is_stored_as_sent(running_node, tmp_path, require_tool):
    dcmcjpeg = require_tool("dcmcjpeg")
    [source] = write_ct_series(tmp_path / "series", 1)
    compressed = tmp_path / "jpeg-lossless.dcm"
    subprocess.run([dcmcjpeg, "+e1", str(source), str(compressed)], check=True, capture_output=True)
    result = storescu(running_node.port, [compressed], "-xs", "-R")
    assert result.returncode == 0, result.stderr
    stored = stored_file(running_node, compressed)
    assert pydicom.dcmread(stored, stop_before_pixels=True).file_meta.TransferSyntaxUID == JPEGLosslessSV1
    assert dataset_bytes(stored) == dataset_bytes(compressed)
    assert (pydicom.dcmread(stored).pixel_array == pydicom.dcmread(source).pixel_array).all()


def test_stop_lets_an_association_in_progress_finish_and_refuses_new_ones(tmp_path, require_tool):
    require_tool("storescu")
    files = write_ct_series(tmp_path / "series", 60, size=256)
    node = Node(node_settings(tmp_path / "node"))
    node.start()
    port = node.port
    sender = subprocess.Popen(["storescu", "-aet", "STORESCU", "-aec", "SCPNODE", "127.0.0.1", str(port),
                               *map(str, files)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: node.database()["instances"].count >= 5, timeout=30, interval=0.01)
    node.stop()
    output, _ = sender.communicate(timeout=60)
    assert sender.returncode == 0, output
    assert len(list(node.store.root.rglob("*.dcm"))) == 60
    late = storescu(port, files[:1])
    assert late.returncode != 0


def _mr_series(folder: Path, count: int) -> list[Path]:
    """A CT-like series relabelled as MR Image Storage (the node reads nothing MR-specific)."""
    files = write_ct_series(folder, count)
    for path in files:
        ds = pydicom.dcmread(path)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        ds.Modality = "MR"
        del ds.RescaleIntercept, ds.RescaleSlope
        ds.save_as(path, enforce_file_format=True)
    return files


@pytest.mark.parametrize("accept_mr", [False, True])
def test_mr_is_accepted_only_where_configured_and_never_analysed(tmp_path, require_tool, accept_mr):
    require_tool("storescu")
    selected = []
    node = Node(node_settings(tmp_path / "node", node={"accept_mr": accept_mr}), on_series_selected=selected.append)
    node.start()
    try:
        files = _mr_series(tmp_path / "mr", 25)
        series_uid = pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID
        result = storescu(node.port, files)
        if not accept_mr:  # no presentation context for MR: storescu cannot send a single instance
            assert result.returncode != 0 and index.series_ref(node.database(), series_uid) is None
            return
        assert result.returncode == 0, result.stderr
        assert stored_file(node, files[0]).is_file()
        wait_for(lambda: series_state(node, series_uid) == SeriesState.REJECTED, timeout=20)
        ref = index.series_ref(node.database(), series_uid)
        assert "MR not in ['CT']" in (ref.reason or "") and selected == []
    finally:
        node.stop()


def test_the_selection_cannot_be_told_to_analyse_mr(tmp_path):
    from scpnode.config import ConfigError

    with pytest.raises(ConfigError, match="the node analyses CT only"):
        node_settings(tmp_path, selection={"modalities": ["CT", "MR"]})
