"""Uncertain vertebral levels against a real Orthanc: held, corrected in Chromium, sent once.

Orthanc sends the node three studies: a phantom made ambiguous on purpose (11
rib pairs and no sacrum in view, so counting from the lowest rib names the
11th thoracic vertebra T12), the real TCIA chest/upper-abdomen series from
../shared/data (levels resting on the lowest rib pair alone, L2 cut by the
lower edge), and a phantom whose anchors agree. The confident study's results
go back at once; the other two are held, listed as "levels need review" and
nothing of theirs reaches Orthanc. A reviewer corrects the phantom in the
browser (clicks the true T12) and confirms the TCIA labels as shown: the
phantom's results arrive in Orthanc once, with the corrected labels; the TCIA
study, its L2 incomplete under the confirmed labels, is not scored. With
``uncertain_levels = "send"`` the unconfirmed results go at once, marked so,
and a correction's SR names the SR it replaces.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicom_sr import codes
from dicom_sr.readers import read_sr
from inference.phantom import generate_phantom, write_phantom_study
from inference.phantom.matrix import phantom_matrix
from scpnode import worklist
from scpnode.assembly import assemble_node
from scpnode.delivery.orthanc import LocalOrthanc, free_port
from scpnode.pipeline.jobs import HELD, JobQueue
from scpnode.pipeline.level_review import LevelAnswer, answer_level_review
from scpnode.schema import open_node_database
from scpnode.web.users import Role, add_user
from scpnode.web.users import ensure_schema as ensure_users
from tests.e2e.conftest import NODE_AET, e2e_settings, push_study, series_of_study, wait_until
from tests.web_helpers import PASSWORD, log_in

pytestmark = pytest.mark.e2e

CASES = {case.name: case for case in phantom_matrix()}
AMBIGUOUS = "chest-C5-L2-11-rib-pairs-3mm-s13"
CONFIDENT = "chest-C5-L3-kyphosis-3mm-s5"


def _node(tmp_path: Path, orthanc: LocalOrthanc, *, web: bool, **pipeline):
    port = free_port()
    orthanc.add_modality("scpnode", NODE_AET, "127.0.0.1", port)
    # The matrix phantoms have 2 mm pixels; clinical defaults stop at 1.5 mm.
    settings = e2e_settings(tmp_path / "node", orthanc, port, pipeline={"concurrency": 2, **pipeline},
                            selection={"max_pixel_spacing_mm": 3.5},
                            web={"enabled": web, "host": "127.0.0.1", "port": free_port(), "secure_cookies": False})
    db = open_node_database(settings.node.database)
    ensure_users(db)
    add_user(db, "rita", PASSWORD, Role.REVIEWER)
    node = assemble_node(settings, web=web, poll_seconds=0.3, sender_options={"poll_seconds": 0.3})
    return node, settings


def _phantom(name: str, folder: Path):
    written = write_phantom_study(generate_phantom(CASES[name].spec), folder)
    truth = json.loads((written.dicom_folder.parent / "truth.json").read_text())
    return written, truth


def _final_jobs(settings, count: int, timeout: float = 300.0) -> dict[str, object]:
    """Series UID -> job, once ``count`` jobs exist and none is queued or running."""
    queue = JobQueue(open_node_database(settings.node.database))

    def settled():
        jobs = queue.recent(50)
        done = len(jobs) >= count and all(job.state not in ("queued", "running") for job in jobs)
        return {job.series_uid: job for job in jobs} if done else None

    return wait_until(settled, timeout, f"{count} jobs to finish")


def _outbox_delivered(settings) -> None:
    from scpnode.delivery import outbox
    db = open_node_database(settings.node.database)
    wait_until(lambda: all(item.state == outbox.OutboxState.SENT for item in outbox.items(db)), 120, "outbox")


def _segment_z_mm(seg: pydicom.Dataset, label: str) -> float:
    """Mean superior coordinate of the frames of the SEG segment called ``label``."""
    number = next(int(s.SegmentNumber) for s in seg.SegmentSequence if s.SegmentLabel == label)
    zs = [float(frame.PlanePositionSequence[0].ImagePositionPatient[2])
          for frame in seg.PerFrameFunctionalGroupsSequence
          if int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber) == number]
    return float(np.mean(zs))


def _study_files(pacs: LocalOrthanc, study_uid: str, modality: str) -> list[pydicom.Dataset]:
    found = []
    for series in pacs.get(f"/studies/{pacs.find_study(study_uid)}/series?expand"):
        if series["MainDicomTags"].get("Modality") == modality:
            for instance in series["Instances"]:
                data = pacs.get(f"/instances/{instance}/file")
                found.append(pydicom.dcmread(pydicom.filebase.DicomBytesIO(data)))
    return found


def test_uncertain_levels_are_held_until_a_reviewer_corrects_them(orthanc, tmp_path, shared_data, browser,
                                                                    output_dir):
    node, settings = _node(tmp_path, orthanc, web=True)
    ambiguous, truth = _phantom(AMBIGUOUS, tmp_path / "ambiguous")
    confident, _ = _phantom(CONFIDENT, tmp_path / "confident")
    tcia_files = sorted((shared_data / "real_ct" / "tcia_chest_abdomen_dicom").glob("*.dcm"))
    tcia = pydicom.dcmread(tcia_files[0], stop_before_pixels=True)
    node.start()
    try:
        push_study(orthanc, ambiguous.series.files, ambiguous.series.study.study_uid)
        push_study(orthanc, confident.series.files, confident.series.study.study_uid)
        push_study(orthanc, tcia_files, tcia.StudyInstanceUID)
        jobs = _final_jobs(settings, 3)
        assert jobs[confident.series.series.series_uid].state == "done"
        assert jobs[ambiguous.series.series.series_uid].state == HELD
        assert jobs[tcia.SeriesInstanceUID].state == HELD
        assert "levels rest on the lowest rib pair only" in jobs[tcia.SeriesInstanceUID].reason
        _outbox_delivered(settings)
        assert series_of_study(orthanc, confident.series.study.study_uid) == {
            "CT": len(confident.series.files), "SEG": 1, "SR": 1, "OT": 1}  # a confident study: at once
        assert series_of_study(orthanc, ambiguous.series.study.study_uid) == {"CT": len(ambiguous.series.files)}
        assert series_of_study(orthanc, tcia.StudyInstanceUID) == {"CT": len(tcia_files)}

        base = f"http://{settings.web.host}:{settings.web.port}"
        page = browser.new_context(viewport={"width": 1500, "height": 1000}).new_page()
        log_in(page, base, "rita")
        rows = page.locator("table.worklist tbody tr")
        assert rows.count() == 3
        assert all("levels need review" in rows.nth(i).inner_text() for i in (0, 1))  # first for a reviewer
        assert "levels need review" not in rows.nth(2).inner_text()
        page.screenshot(path=output_dir / "reviewer_worklist.png", full_page=True)

        # The phantom: click the true T12 (the node's L1).
        page.locator("table.worklist tbody tr", has_text=ambiguous.series.patient.patient_id).locator("a").click()
        job = jobs[ambiguous.series.series.series_uid]
        mapping = json.loads((job.output_dir / "levels.json").read_text())
        t12_z = truth["levels"]["T12"]["centre_lps"][2]
        page.check("input[name=level][value=T12]")
        page.screenshot(path=output_dir / "review_ambiguous_phantom.png", full_page=True)
        with page.expect_navigation():
            page.locator("input[name=at]").click(position={
                "x": 150, "y": mapping["top_row"] + (mapping["z_top_mm"] - t12_z) / mapping["mm_per_pixel"]})
        assert "the vertebra labelled L1 is T12" in page.locator(".flash").inner_text()

        # The TCIA series: the labels are right as shown (the lowest ribs on T12, README of the data).
        page.goto(f"{base}/worklist")
        page.locator("table.worklist tbody tr", has_text=str(tcia.PatientID)).locator("a").click()
        page.screenshot(path=output_dir / "review_tcia.png", full_page=True)
        with page.expect_navigation():
            page.click("button[value=confirm]")

        jobs = _final_jobs(settings, 3)
        corrected = jobs[ambiguous.series.series.series_uid]
        assert (corrected.state, corrected.revision, corrected.level_shift) == ("done", 1, -1), corrected.error
        assert jobs[tcia.SeriesInstanceUID].state == "out_of_scope"
        assert "L2 incomplete" in jobs[tcia.SeriesInstanceUID].reason
        _outbox_delivered(settings)
        assert series_of_study(orthanc, ambiguous.series.study.study_uid) == {
            "CT": len(ambiguous.series.files), "SEG": 1, "SR": 1, "OT": 1}
        assert series_of_study(orthanc, tcia.StudyInstanceUID) == {"CT": len(tcia_files)}

        seg, = _study_files(orthanc, ambiguous.series.study.study_uid, "SEG")
        assert "levels confirmed" in seg.SeriesDescription
        for name in ("T11", "T12", "L1", "L2"):
            assert abs(_segment_z_mm(seg, f"{name} cancellous") - truth["levels"][name]["centre_lps"][2]) < 12.0
        sr_dataset, = _study_files(orthanc, ambiguous.series.study.study_uid, "SR")
        sr = read_sr(sr_dataset)
        assert sr.evaluation(codes.LEVEL_IDENTIFICATION.meaning).meaning == codes.LEVEL_IDENTIFICATION_VALUES["confirmed"].meaning
        assert [item.PersonName.family_name for item in sr_dataset.ContentSequence if "PersonName" in item] == ["rita"]

        db = open_node_database(settings.node.database)
        rows = {row.study_uid: row for row in worklist.query_worklist(db, worklist.parse_query({})).rows}
        phantom_row = rows[ambiguous.series.study.study_uid]
        assert phantom_row.level_status is worklist.LevelStatus.CONFIRMED
        assert [(a.user, a.action) for a in worklist.audit_log(db, phantom_row.id)][0] == ("rita", "levels_corrected")
        tcia_row = rows[tcia.StudyInstanceUID]
        assert tcia_row.level_status is worklist.LevelStatus.NOT_SCORED and tcia_row.l1_hu is None
        assert rows[confident.series.study.study_uid].level_status is worklist.LevelStatus.AUTOMATIC
        page.goto(f"{base}/studies/{phantom_row.id}")
        page.screenshot(path=output_dir / "review_phantom_confirmed.png", full_page=True)
    finally:
        node.stop()


def test_sent_unconfirmed_then_corrected_names_its_predecessor(orthanc, tmp_path):
    node, settings = _node(tmp_path, orthanc, web=False, uncertain_levels="send")
    ambiguous, truth = _phantom(AMBIGUOUS, tmp_path / "ambiguous")
    study_uid = ambiguous.series.study.study_uid
    node.start()
    try:
        push_study(orthanc, ambiguous.series.files, study_uid)
        job = _final_jobs(settings, 1)[ambiguous.series.series.series_uid]
        assert job.state == "done"
        _outbox_delivered(settings)
        first_sr, = _study_files(orthanc, study_uid, "SR")
        assert all("LEVELS UNCONFIRMED" in ds.SeriesDescription
                   for modality in ("SEG", "SR", "OT") for ds in _study_files(orthanc, study_uid, modality))

        db = open_node_database(settings.node.database)
        answer_level_review(db, job.id, "rita", LevelAnswer(vertebra_at_mm=truth["levels"]["T12"]["centre_lps"][2]))
        assert _final_jobs(settings, 1)[ambiguous.series.series.series_uid].state == "done"
        _outbox_delivered(settings)
        assert series_of_study(orthanc, study_uid) == {"CT": len(ambiguous.series.files), "SEG": 2, "SR": 2, "OT": 2}
        second_sr = next(ds for ds in _study_files(orthanc, study_uid, "SR")
                         if ds.SOPInstanceUID != first_sr.SOPInstanceUID)
        predecessor = second_sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
        assert predecessor.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == first_sr.SOPInstanceUID
        assert "levels confirmed" in second_sr.SeriesDescription
    finally:
        node.stop()
