"""PACS-side routing: Orthanc with deploy/orthanc's Lua script forwards a CT to the node by itself.

A phantom CT is sent to Orthanc over DICOM (storescu, as a modality would);
nobody sends anything to the node by hand. The routing script forwards the
stable CT series, the node processes it, and the SEG, SR and visual report
appear in the same study in Orthanc, without being routed back to the node.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from inference.phantom import SeriesInfo, abdominal_ct, generate_phantom, write_phantom_study
from scpnode.assembly import assemble_node
from scpnode.delivery.orthanc import LocalOrthanc, free_port
from scpnode.schema import open_node_database
from scpnode.storage.index import SeriesState
from tests.e2e.conftest import PHANTOM_SHAPE, e2e_settings, series_of_study

pytestmark = pytest.mark.e2e

ORTHANC_DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "orthanc"


def routing_orthanc(workdir: Path, node_port: int) -> LocalOrthanc:
    """Orthanc configured from deploy/orthanc/orthanc-scpnode.json, the node's address made local."""
    deployed = json.loads((ORTHANC_DEPLOY / "orthanc-scpnode.json").read_text())
    modality = deployed["DicomModalities"]["scpnode"] | {"Host": "127.0.0.1", "Port": node_port, "UseDicomTls": False}
    return LocalOrthanc(workdir, extra_config=deployed | {
        "LuaScripts": [str(ORTHANC_DEPLOY / "route-to-scpnode.lua")],
        "DicomModalities": {"scpnode": modality},
        "StableAge": 2,  # the deployed 60 s, shortened for the test
    })


def send_as_modality(storescu: str, pacs: LocalOrthanc, folder: Path, timeout: float) -> None:
    """Send a series folder to Orthanc with DCMTK storescu, as the CT scanner would."""
    sent = subprocess.run([storescu, "-aet", "CTSCANNER", "-aec", pacs.aet, "+sd", "127.0.0.1",
                           str(pacs.dicom_port), str(folder)], capture_output=True, text=True, timeout=timeout)
    assert sent.returncode == 0, sent.stderr


def test_ct_sent_to_orthanc_comes_back_with_seg_sr_and_report(tmp_path, require_tool):
    require_tool("Orthanc")
    storescu = require_tool("storescu")
    study = write_phantom_study(generate_phantom(abdominal_ct(41, shape=PHANTOM_SHAPE)), tmp_path / "study")
    study_uid = study.series.study.study_uid
    node_port = free_port()
    with routing_orthanc(tmp_path / "orthanc", node_port) as pacs:
        settings = e2e_settings(tmp_path / "node", pacs, node_port)
        node = assemble_node(settings, web=False, poll_seconds=0.3, sender_options={"poll_seconds": 0.3})
        node.start()
        try:
            send_as_modality(storescu, pacs, study.series.files[0].parent, timeout=120)

            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and not {"SEG", "SR", "OT"} <= set(series_of_study(pacs, study_uid)):
                time.sleep(1.0)
            time.sleep(3)  # a result routed back to the node would arrive now
            counts = series_of_study(pacs, study_uid)
            db = open_node_database(settings.node.database)
            received = list(db.query("SELECT modality, state, instance_count FROM series"))
        finally:
            node.stop()
        log = (pacs.workdir / "orthanc.log").read_text(errors="replace")

    assert counts == {"CT": len(study.series.files), "SEG": 1, "SR": 1, "OT": 1}, log[-2000:]
    assert received == [{"modality": "CT", "state": SeriesState.SELECTED.value,
                         "instance_count": len(study.series.files)}]
    assert "scpnode routing: series" in log and "sent to scpnode" in log
    assert "not sent (modality SEG)" in log  # results are not routed back


def test_routing_criteria_keep_a_derived_series_off_the_node(tmp_path, require_tool):
    require_tool("Orthanc")
    storescu = require_tool("storescu")
    study = write_phantom_study(generate_phantom(abdominal_ct(42, shape=(64, 64, 64))), tmp_path / "study",
                                series=SeriesInfo(image_type=("DERIVED", "SECONDARY", "AXIAL")))
    node_port = free_port()
    with routing_orthanc(tmp_path / "orthanc", node_port) as pacs:
        settings = e2e_settings(tmp_path / "node", pacs, node_port)
        node = assemble_node(settings, web=False)
        node.start()
        try:
            send_as_modality(storescu, pacs, study.series.files[0].parent, timeout=60)
            log = pacs.workdir / "orthanc.log"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and "not sent" not in log.read_text(errors="replace"):
                time.sleep(0.5)
            db = open_node_database(settings.node.database)
            assert db.execute("SELECT count(*) FROM series").fetchone()[0] == 0
        finally:
            node.stop()
    assert "not sent (image type without ORIGINAL)" in log.read_text(errors="replace")
