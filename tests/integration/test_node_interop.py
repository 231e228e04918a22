"""Third-party objects of the kinds the node accepts (SEG, SR, CT; many transfer syntaxes) are stored as sent."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE

from scpnode.network.receiver import STORAGE_SOP_CLASSES, TRANSFER_SYNTAXES
from scpnode.node import Node
from tests.integration.node_helpers import dataset_bytes, node_settings

pytestmark = pytest.mark.integration


def test_third_party_seg_sr_and_ct_files_are_accepted_byte_identical(tmp_path, shared_data, raw_sender):
    files, unknown_syntax = {}, set()
    for path in sorted((shared_data / "interop").rglob("*.dcm")):
        meta = pydicom.filereader.read_file_meta_info(path)
        context = (str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
        if context[0] not in STORAGE_SOP_CLASSES:
            continue
        if context[1] in TRANSFER_SYNTAXES:
            files[path] = context
        else:
            unknown_syntax.add(context)
    assert len(files) == 23
    # Deflated Image Frame Compression (2024) is refused: no decoder in pydicom 3.0 yet
    assert {syntax for _, syntax in unknown_syntax} == {"1.2.840.10008.1.2.8.1"}
    ae = AE(ae_title="PYSCU")
    for context in sorted(set(files.values()) | unknown_syntax):
        ae.add_requested_context(*context)
    with Node(node_settings(tmp_path / "node")) as node:
        assoc = ae.associate("127.0.0.1", node.port, ae_title="SCPNODE")
        assert assoc.is_established
        refused = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.rejected_contexts}
        assert refused == unknown_syntax
        statuses = {path.relative_to(shared_data).as_posix(): int(assoc.send_c_store(path).Status)
                    for path in files}
        assoc.release()
        assert statuses == dict.fromkeys(statuses, 0x0000)
        stored = {Path(row["path"]) for row in node.database()["instances"].rows}
    sent_datasets = {dataset_bytes(path) for path in files}
    assert {dataset_bytes(path) for path in stored} <= sent_datasets
    assert len(stored) == len({pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in files})
