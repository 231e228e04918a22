"""A site's multi-class research model at the node (a fracture-type model exported by ``cohort export``).

The node scores an incoming CT with it and sends the class probabilities to the PACS in the SR, coded
"research use only"; the coordinator's worklist shows them as research output and flags nothing on them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest

from dicom_sr import codes
from dicom_sr.readers import read_sr
from inference.models import RadscoreModel
from inference.phantom import abdominal_ct, generate_phantom, write_phantom_study
from scpnode.assembly import assemble_node
from scpnode.delivery.orthanc import LocalOrthanc, free_port
from scpnode.schema import open_node_database
from scpnode.worklist import parse_query, query_worklist
from scpnode.worklist.rows import RESEARCH_CLASSES
from tests.e2e.conftest import NODE_AET, NodeAndPacs, e2e_settings, push_study, series_of_study

pytestmark = pytest.mark.e2e

CLASSES = ("biconcave", "crush", "wedge")


def _research_model(folder: Path) -> Path:
    """Three classes on two first-order features the node measures on every vertebral body."""
    folder.mkdir()
    model = RadscoreModel.from_dict({
        "format_version": 2, "id": "fracture-type-site", "version": "1.0.0", "profile": "che2025",
        "classifier": {
            "classes": list(CLASSES),
            "intercepts": {"biconcave": 0.2, "crush": -0.4, "wedge": 0.1},
            "terms": [
                {"voi": "cancellous", "feature": "original_firstorder_Mean",
                 "normalisation": {"method": "z-score", "center": 150.0, "scale": 40.0},
                 "coefficients": {"biconcave": 0.3, "crush": -0.8, "wedge": 0.5}},
                {"voi": "body", "feature": "original_firstorder_Median",
                 "normalisation": {"method": "z-score", "center": 200.0, "scale": 60.0},
                 "coefficients": {"biconcave": -0.2, "crush": 0.4, "wedge": 0.1}}]},
    })
    return model.save(folder / f"{model.id}.json")


def test_class_probabilities_reach_the_sr_and_the_worklist_as_research_output(orthanc: LocalOrthanc,
                                                                               tmp_path: Path) -> None:
    model_file = _research_model(tmp_path / "models")
    port = free_port()
    orthanc.add_modality("scpnode", NODE_AET, "127.0.0.1", port)
    settings = e2e_settings(tmp_path / "node", orthanc, port, selection={"max_pixel_spacing_mm": 3.5},
                            pipeline={"model_dir": str(model_file.parent), "model_id": "fracture-type-site"})
    node = assemble_node(settings, web=False, poll_seconds=0.3, sender_options={"poll_seconds": 0.3})
    study = write_phantom_study(generate_phantom(abdominal_ct(43, shape=(192, 192, 140))), tmp_path / "study")
    uid = study.series.study.study_uid
    node.start()
    try:
        run = NodeAndPacs(node, settings, orthanc)
        push_study(orthanc, study.series.files, uid)
        (job,) = run.wait_for_jobs(1, timeout=300)
        assert job.state == "done", job.error or job.reason
        run.wait_for_outbox_empty()
    finally:
        node.stop()

    assert series_of_study(orthanc, uid) == {"CT": len(study.series.files), "SEG": 1, "SR": 1, "OT": 1}
    sr_series = [s for s in orthanc.get(f"/studies/{orthanc.find_study(uid)}/series?expand")
                 if s["MainDicomTags"]["Modality"] == "SR"]
    sr = read_sr(pydicom.dcmread(pydicom.filebase.DicomBytesIO(
        orthanc.get(f"/instances/{sr_series[0]['Instances'][0]}/file"))))
    sent = {m.name.meaning: m.value for m in sr.derived if m.name.value.startswith("C-")}
    assert set(sent) == {f"Class probability, {c} (research use)" for c in CLASSES}
    assert sum(sent.values()) == pytest.approx(1.0, abs=1e-6)
    evaluations = {name.meaning: value.meaning for name, value in sr.evaluations}
    assert evaluations[codes.INTENDED_USE.meaning] == codes.RESEARCH_USE_ONLY.meaning
    assert evaluations[codes.PREDICTED_CLASS.meaning] in CLASSES
    assert evaluations[codes.FRACTURE_RISK_CATEGORY.meaning] == codes.RISK_NOT_COMPUTED.meaning

    (row,) = query_worklist(open_node_database(settings.node.database), parse_query({})).rows
    assert row.model_id == "fracture-type-site" and row.risk_probability is None
    assert row.risk_display.startswith(RESEARCH_CLASSES) and set(row.class_probabilities) == set(CLASSES)
    measurements = json.loads(Path(row.measurements_path).read_text())
    assert measurements["score"]["class_probabilities"] == pytest.approx(row.class_probabilities)
