"""Bad input gets a DICOM failure status or a recorded rejection, and the node keeps serving."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid
from pynetdicom import AE

from scpnode.network.receiver import STORAGE_SOP_CLASSES
from scpnode.node import Node
from scpnode.storage import index
from scpnode.storage import store as store_module
from scpnode.storage.index import SeriesState
from tests.integration.node_helpers import CT_IMAGE_STORAGE, ct_slice, node_settings, storescu, wait_for, write_ct_series

pytestmark = pytest.mark.integration


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    with Node(node_settings(tmp_path / "node")) as running:
        yield running


def send(port: int, *objects: Path | Dataset) -> list[tuple[int, str]]:
    """C-STORE each object over one association; return (status, error comment) per object."""
    ae = AE(ae_title="PYSCU")
    for sop_class in STORAGE_SOP_CLASSES:  # one context per transfer syntax: files are sent as they are
        ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
    ae.add_requested_context(CT_IMAGE_STORAGE, JPEG2000Lossless)
    assoc = ae.associate("127.0.0.1", port, ae_title="SCPNODE")
    assert assoc.is_established
    try:
        answers = []
        for item in objects:
            status = assoc.send_c_store(item)
            answers.append((int(status.Status), str(status.get("ErrorComment", ""))))
        return answers
    finally:
        assoc.release()


def test_truncated_and_unidentified_objects_get_failure_statuses(node, tmp_path, shared_data, raw_sender):
    good = write_ct_series(tmp_path / "series", 3)
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(good[0].read_bytes()[:-3000])
    no_sop_uid = tmp_path / "no_sop_uid.dcm"
    ds = pydicom.dcmread(good[1])
    del ds.SOPInstanceUID  # the file meta still names it, as a broken device would
    ds.save_as(no_sop_uid)
    # A real anonymised file: the file meta says CT Image Storage, the data set's SOP Class UID is empty.
    empty_sop_class = sorted((shared_data / "real_ct" / "pet_ct_slices").iterdir())[0]

    answers = send(node.port, truncated, no_sop_uid, empty_sop_class, good[2])
    assert answers[0] == (0xC000, "truncated data set")
    assert answers[1] == (0xA900, "SOP Instance UID missing from data set")
    assert answers[2] == (0xA900, "SOP Class UID missing from data set")
    assert answers[3][0] == 0x0000
    assert node.database()["instances"].count == 1
    assert not list(node.store.root.rglob("*.part"))


def test_empty_short_or_long_pixel_data_is_refused(node, tmp_path):
    ds = ct_slice(generate_uid(), generate_uid(), 0)
    ds.PixelData = b""
    assert send(node.port, ds) == [(0xA900, "Pixel Data is empty")]
    short = ct_slice(generate_uid(), generate_uid(), 0)
    short.PixelData = short.PixelData[:100]
    assert send(node.port, short) == [(0xA900, "Pixel Data has 100 bytes, 8192 expected")]
    long = ct_slice(generate_uid(), generate_uid(), 0)
    long.PixelData = long.PixelData + b"\x00\x00"
    assert send(node.port, long) == [(0xA900, "Pixel Data has 8194 bytes, 8192 expected")]
    assert node.database()["instances"].count == 0


def test_a_data_set_cut_inside_the_header_of_its_last_element_is_refused(node, tmp_path, raw_sender):
    """pydicom would read it (it stops quietly at a short last header); the node answers "truncated"."""
    good = write_ct_series(tmp_path / "series", 1)[0]
    for cut_header in (b"\xfc\xff", b"\xfc\xff\xfc\xffOB", b"\xfc\xff\xfc\xffOB\x00"):
        (tmp_path / "cut.dcm").write_bytes(good.read_bytes() + cut_header)
        assert send(node.port, tmp_path / "cut.dcm") == [(0xC000, "truncated data set")], cut_header
    assert node.database()["instances"].count == 0


def test_non_ct_objects_are_refused_or_rejected_with_a_reason(node, tmp_path, require_tool):
    require_tool("storescu")
    mr = ct_slice(generate_uid(), generate_uid(), 0)
    mr.SOPClassUID = mr.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # MR Image Storage
    mr.Modality = "MR"
    mr_file = tmp_path / "mr.dcm"
    mr.save_as(mr_file)
    refused = storescu(node.port, [mr_file], "-R")
    assert refused.returncode != 0
    assert node.database()["instances"].count == 0

    sr = Dataset()
    sr.file_meta = FileMetaDataset()
    sr.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr.SOPClassUID = sr.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
    sr.SOPInstanceUID = sr.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    sr.StudyInstanceUID, sr.SeriesInstanceUID = generate_uid(), generate_uid()
    sr.Modality, sr.ValueType, sr.SeriesDescription = "SR", "CONTAINER", "a report"
    assert send(node.port, sr) == [(0x0000, "")]
    wait_for(lambda: index.series_ref(node.database(), sr.SeriesInstanceUID).state == SeriesState.REJECTED)
    reason = index.series_ref(node.database(), sr.SeriesInstanceUID).reason
    assert reason.startswith("modality: SR not in ['CT']")


def test_unwritable_store_answers_out_of_resources_and_node_recovers(node, tmp_path):
    ds = ct_slice(generate_uid(), generate_uid(), 0)
    blocker = node.store.root / ds.StudyInstanceUID
    blocker.write_text("a file where the study folder should be")  # mkdir fails, whoever runs the test
    status, comment = send(node.port, ds)[0]
    assert status == 0xA700 and comment.startswith("cannot store")
    assert node.database()["instances"].count == 0
    blocker.unlink()
    assert send(node.port, ds) == [(0x0000, "")]
    assert node.database()["instances"].count == 1


def test_node_keeps_serving_after_bad_input(node, tmp_path, require_tool, raw_sender):
    truncated = tmp_path / "truncated.dcm"
    good = write_ct_series(tmp_path / "series", 1)[0]
    truncated.write_bytes(good.read_bytes()[:-1000])  # inside the pixel data: always "truncated"
    assert send(node.port, truncated)[0][0] == 0xC000
    echo = subprocess.run([require_tool("echoscu"), "-aet", "STORESCU", "-aec", "SCPNODE", "127.0.0.1",
                           str(node.port)], capture_output=True, text=True, timeout=30)
    assert echo.returncode == 0, echo.stderr
    assert send(node.port, good) == [(0x0000, "")]


def test_failed_folder_fsync_is_a_failure_and_a_resend_stores_it(node, monkeypatch):
    ds = ct_slice(generate_uid(), generate_uid(), 0)

    def failing_fsync(folder):
        raise OSError(errno.EIO, "Input/output error")

    with monkeypatch.context() as patch:
        patch.setattr(store_module, "_fsync_folder", failing_fsync)
        status, comment = send(node.port, ds)[0]
    assert status == 0xA700 and comment.startswith("cannot store (Input/output error)")
    assert node.database()["instances"].count == 0  # not indexed: the resend is not taken for a duplicate
    assert send(node.port, ds) == [(0x0000, "")]
    assert node.database()["instances"].count == 1


def test_indexed_instance_whose_file_is_gone_is_stored_again(node):
    ds = ct_slice(generate_uid(), generate_uid(), 0)
    assert send(node.port, ds) == [(0x0000, "")]
    path = Path(index.find_instance(node.database(), ds.SOPInstanceUID)["path"])
    path.unlink()  # as a power loss between the index commit and the folder fsync could leave it
    assert send(node.port, ds) == [(0x0000, "")]
    assert path.is_file() and node.database()["instances"].count == 1


def test_a_deflate_bomb_is_refused_with_bounded_memory_and_the_node_keeps_serving(node, tmp_path, raw_sender):
    """1 GB of zeros deflates to about 1 MB; inflating it whole would take the node's memory."""
    import resource
    import zlib

    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = ct_slice(generate_uid(), generate_uid(), 0)
    plain = pydicom.filebase.DicomBytesIO()
    plain.is_little_endian, plain.is_implicit_VR = True, False
    pydicom.filewriter.write_dataset(plain, ds)
    header = plain.getvalue()
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = [deflater.compress(header)]
    # A private OB element of 1 GiB of zeros after the image (group 0x0009 sorts before pixel data,
    # but the order does not matter to the inflater, which is what is attacked).
    bomb_length = 2**30
    body.append(deflater.compress(b"\x09\x00\x10\x10OB\x00\x00" + bomb_length.to_bytes(4, "little")))
    zeros = bytes(2**23)
    for _ in range(bomb_length // len(zeros)):
        body.append(deflater.compress(zeros))
    body.append(deflater.flush())
    deflated = b"".join(body)
    assert len(deflated) < 2 * 2**20

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    meta_bytes = pydicom.filebase.DicomBytesIO()
    meta_bytes.is_little_endian, meta_bytes.is_implicit_VR = True, False
    pydicom.filewriter.write_file_meta_info(meta_bytes, meta)
    bomb = tmp_path / "bomb.dcm"
    bomb.write_bytes(b"\x00" * 128 + b"DICM" + meta_bytes.getvalue() + deflated)

    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(CT_IMAGE_STORAGE, DeflatedExplicitVRLittleEndian)
    ae.add_requested_context(CT_IMAGE_STORAGE, ExplicitVRLittleEndian)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assoc = ae.associate("127.0.0.1", node.port, ae_title="SCPNODE")
    try:
        status = assoc.send_c_store(bomb)
        assert (int(status.Status), str(status.ErrorComment)) == (
            0xA700, "deflated data set inflates beyond max_inflated_mb (512 MB)")
        assert int(assoc.send_c_store(ct_slice(generate_uid(), generate_uid(), 0)).Status) == 0x0000
    finally:
        assoc.release()
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(f"peak memory growth while refusing the bomb: {grown_mb:.0f} MB")
    assert grown_mb < 800, "the inflate is bounded by max_inflated_mb (512 MB), not by the bomb (1 GiB)"
    assert node.database()["instances"].count == 1
