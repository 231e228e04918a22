"""The node scores incoming scans and returns the results to a real Orthanc PACS.

Orthanc holds three phantom studies (a chest CT, an abdominal CT with a Genant
grade 3 crush fracture at L1, and a neck CT that does not reach T11-L2) and
sends them to the node; the real abdominal CT in ../shared/data goes the same
way.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.phantom import abdominal_ct, chest_ct, generate_phantom, neck_ct, write_ct_series, write_phantom_study
from inference.phantom.dicom import PatientInfo, SeriesInfo, StudyInfo
from inference.volume import load_volume
from scpnode import worklist
from scpnode.pipeline.level_review import LevelAnswer, answer_level_review, reject_segmentation
from scpnode.schema import open_node_database
from scpnode.storage import index
from tests.e2e.conftest import PHANTOM_SHAPE, push_study, series_of_study

pytestmark = pytest.mark.e2e


def _write(spec, folder: Path):
    return write_phantom_study(generate_phantom(spec), folder)


def test_three_studies_from_orthanc(node_and_pacs, tmp_path):
    """A chest CT whose levels rest on the lowest rib alone, an abdominal CT whose crushed L1 the
    segmentation merges with T12 (the sacrum and the ribs then disagree), and a neck CT.

    Neither of the first two is sent before a person looks: the reviewer confirms the chest CT's
    labels (its results then reach Orthanc once) and rejects the abdominal CT's segmentation (it is
    not scored); the neck CT is out of scope.
    """
    studies = {
        "chest": _write(chest_ct(21, shape=PHANTOM_SHAPE), tmp_path / "chest"),
        "fracture": _write(abdominal_ct(22, shape=PHANTOM_SHAPE, vbmd_mg_cm3=95.0,
                                        fractures={"L1": (3, "crush")}), tmp_path / "fracture"),
        "neck": _write(neck_ct(23, shape=(160, 160, 80)), tmp_path / "neck"),
    }
    for study in studies.values():
        push_study(node_and_pacs.pacs, study.series.files, study.series.study.study_uid)

    jobs = node_and_pacs.wait_for_jobs(3)
    by_series = {job.series_uid: job for job in jobs}
    state = {name: by_series[s.series.series.series_uid] for name, s in studies.items()}
    assert state["chest"].state == "held", state["chest"].error
    assert "levels rest on the lowest rib pair only" in state["chest"].reason
    assert state["fracture"].state == "held", state["fracture"].error
    assert "anchors disagree" in state["fracture"].reason
    assert state["neck"].state == "out_of_scope"
    assert "not in view" in state["neck"].reason
    for job in jobs:
        assert set(job.stage_seconds) >= {"load", "segment", "coverage"}
    for name, study in studies.items():  # nothing sent before a person looked
        assert series_of_study(node_and_pacs.pacs, study.series.study.study_uid) == {
            "CT": len(study.series.files)}, name

    db = open_node_database(node_and_pacs.settings.node.database)
    neck_series = index.series_ref(db, studies["neck"].series.series.series_uid)
    assert neck_series.state == "out_of_scope" and "not in view" in neck_series.reason
    page = worklist.query_worklist(db, worklist.parse_query({}))
    rows = {row.study_uid: row for row in page.rows}
    assert set(rows) == {studies["chest"].series.study.study_uid, studies["fracture"].series.study.study_uid}
    assert all(row.flag_reasons == [worklist.FlagReason.LEVELS] for row in rows.values())

    answer_level_review(db, state["chest"].id, "rita", LevelAnswer())
    reject_segmentation(db, state["fracture"].id, "rita", "T12 and the crushed L1 are one segment")
    jobs = node_and_pacs.wait_for_jobs(3)
    by_series = {job.series_uid: job for job in jobs}
    assert by_series[studies["chest"].series.series.series_uid].state == "done"
    assert by_series[studies["fracture"].series.series.series_uid].state == "out_of_scope"
    node_and_pacs.wait_for_outbox_empty()
    chest_uid = studies["chest"].series.study.study_uid
    assert series_of_study(node_and_pacs.pacs, chest_uid) == {
        "CT": len(studies["chest"].series.files), "SEG": 1, "SR": 1, "OT": 1}
    fracture_uid = studies["fracture"].series.study.study_uid
    assert series_of_study(node_and_pacs.pacs, fracture_uid) == {"CT": len(studies["fracture"].series.files)}
    rows = {row.study_uid: row for row in worklist.query_worklist(db, worklist.parse_query({})).rows}
    assert rows[chest_uid].level_status is worklist.LevelStatus.CONFIRMED
    assert rows[fracture_uid].level_status is worklist.LevelStatus.NOT_SCORED and not rows[fracture_uid].flagged


def test_real_abdominal_ct_reports_t11_not_complete(node_and_pacs, tmp_path, shared_data):
    image = load_volume(shared_data / "real_ct" / "abdomen_3mm" / "ct.nii.gz")
    written = write_ct_series(image, tmp_path / "real", patient=PatientInfo(patient_id="REAL-ABD-3MM"),
                              study=StudyInfo(), series=SeriesInfo(description="Abdomen 3.0 real CT"), seed=3)
    push_study(node_and_pacs.pacs, written.files, written.study.study_uid)
    job, = node_and_pacs.wait_for_jobs(1, timeout=300)
    # The reference labels of this scan hold only T11's posterior elements and a
    # T12 body cut by the upper edge: the node must say so, not invent a T11.
    assert job.state == "out_of_scope", job.error
    assert "T11 not in view" in job.reason or "T11 incomplete" in job.reason
    segmentation = json.loads(Path(job.result_dir, "segmentation", "segmentation.json").read_text())
    assert not segmentation["levels"].get("T11", {}).get("complete", False)
    assert segmentation["levels"]["L1"]["complete"] and segmentation["levels"]["L2"]["complete"]
