"""Levels the node is unsure of, reviewed in headless Chromium: held, shown, corrected, audited.

A real pipeline run on a phantom made ambiguous on purpose (11 rib pairs, no
sacrum in view: counted from the lowest rib the node calls the 11th thoracic
vertebra T12) holds its results. The coordinator sees the study flagged
"levels need review" with its numbers greyed, and cannot relabel; the reviewer
sees it first, clicks the true T12 on the review picture, the next revision is
measured from the stored segmentation, and the results go to the outbox with
the corrected labels and an audit entry. Every control is reachable with the
keyboard. Screenshots go to ``output_dir``.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pydicom
import pytest

from dicom_sr import codes
from dicom_sr.readers import read_sr
from inference.phantom import generate_phantom, write_phantom_study
from inference.phantom.matrix import phantom_matrix
from scpnode import worklist
from scpnode.config import Settings
from scpnode.db import ThreadDatabases
from scpnode.delivery import outbox
from scpnode.delivery.orthanc import free_port
from scpnode.pipeline.analysis import process_job
from scpnode.pipeline.jobs import DONE, HELD, QUEUED, AnalysisTarget, JobQueue
from scpnode.schema import prepare
from scpnode.web import WebServer, create_app
from scpnode.web.users import Role, add_user
from tests.unit.worklist_samples import add_study
from tests.web_helpers import PASSWORD, log_in

pytestmark = pytest.mark.integration

AMBIGUOUS_CASE = "chest-C5-L2-11-rib-pairs-3mm-s13"


@pytest.fixture
def held_study(tmp_path: Path):
    """A node database with the ambiguous phantom's job held, two flagged sample studies and users."""
    settings = Settings.model_validate({
        "node": {"database": str(tmp_path / "node.db"), "storage_dir": str(tmp_path / "store"),
                 "results_dir": str(tmp_path / "results")},
        "destinations": [{"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": 11112}],
        "web": {"secure_cookies": False, "port": free_port()},
    })
    databases = ThreadDatabases(settings.node.database)
    db = databases.get()
    prepare(db)
    add_user(db, "carol", PASSWORD, Role.COORDINATOR)
    add_user(db, "rita", PASSWORD, Role.REVIEWER)
    for index in (600, 601):  # flagged, and newer than the phantom: first for a coordinator
        add_study(db, index, l1_hu=85, vbmd=60, study_date=date(2026, 11, 1))
    case = {c.name: c for c in phantom_matrix()}[AMBIGUOUS_CASE]
    phantom = generate_phantom(case.spec)
    written = write_phantom_study(phantom, tmp_path / "study")
    queue = JobQueue(db)
    job = queue.enqueue(AnalysisTarget(written.series.study.study_uid, written.series.series.series_uid,
                                       written.dicom_folder, 1))
    queue.claim_next()
    assert process_job(settings, job.id).state == HELD
    truth = json.loads((written.dicom_folder.parent / "truth.json").read_text())
    server = WebServer(create_app(settings, databases), settings.web.host, settings.web.port).start()
    try:
        yield server, settings, db, job.id, truth
    finally:
        server.stop()


def _row_of(db, study_uid: str) -> worklist.WorklistRow:
    page = worklist.query_worklist(db, worklist.parse_query({}))
    return next(row for row in page.rows if row.study_uid == study_uid)


def test_held_study_is_corrected_in_the_browser(held_study, browser, output_dir):
    server, settings, db, job_id, truth = held_study
    base = server.url
    queue = JobQueue(db)
    job = queue.get(job_id)
    assert outbox.items(db) == []  # held: nothing for the PACS
    row = _row_of(db, job.study_uid)
    assert row.level_status is worklist.LevelStatus.NEEDS_REVIEW
    assert row.flag_reasons == [worklist.FlagReason.LEVELS]  # the numbers raise no clinical flag

    # The coordinator sees the doubt and the greyed numbers, and cannot answer it.
    coordinator = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    log_in(coordinator, base, "carol")
    rows = coordinator.locator("table.worklist tbody tr")
    assert "PAT00600" in rows.nth(0).inner_text() or "PAT00601" in rows.nth(0).inner_text()
    held_row = coordinator.locator("table.worklist tbody tr", has_text="levels need review")
    assert held_row.count() == 1 and "unconfirmed" in held_row.get_attribute("class")
    held_row.locator("a").first.click()
    assert coordinator.locator("section.level-review .warn").inner_text().startswith("The node is not sure")
    assert coordinator.locator("section.level-review form").count() == 0
    assert coordinator.locator("section.level-review img").count() == 1
    assert coordinator.locator("table.levels.unconfirmed").count() == 1
    coordinator.screenshot(path=output_dir / "coordinator_sees_levels_need_review.png", full_page=True)

    # The reviewer gets it first, and clicks the true T12 (labelled L1 by the node).
    reviewer = browser.new_context(viewport={"width": 1500, "height": 1000}).new_page()
    log_in(reviewer, base, "rita")
    assert "levels need review" in reviewer.locator("table.worklist tbody tr").nth(0).inner_text()
    reviewer.locator("table.worklist tbody tr").nth(0).locator("a").first.click()
    assert reviewer.locator("script").count() == 0  # plain forms, no JavaScript
    picture = reviewer.locator("input[type=image][name=at]")
    assert picture.is_visible()
    reviewer.screenshot(path=output_dir / "review_page.png", full_page=True)
    mapping = json.loads((job.output_dir / "levels.json").read_text())
    truth_t12_z = truth["levels"]["T12"]["centre_lps"][2]
    assert abs(mapping["level_z_mm"]["L1"] - truth_t12_z) < 10.0  # the node's L1 is the true T12
    row_px = mapping["top_row"] + (mapping["z_top_mm"] - truth_t12_z) / mapping["mm_per_pixel"]
    reviewer.check("input[name=level][value=T12]")
    with reviewer.expect_navigation():
        picture.click(position={"x": 150, "y": row_px})
    assert "the vertebra labelled L1 is T12" in reviewer.locator(".flash").inner_text()
    reviewer.screenshot(path=output_dir / "review_answered.png", full_page=True)

    job = queue.get(job_id)
    assert (job.state, job.revision, job.level_shift, job.confirmed_by) == (QUEUED, 1, -1, "rita")
    audit = worklist.audit_log(db, row.id)
    assert [(a.user, a.action) for a in audit][-1] == ("rita", "levels_corrected")
    assert "the vertebra labelled L1 is T12" in audit[-1].note

    # The node measures the next revision from the stored segmentation and sends it.
    queue.claim_next()
    assert process_job(settings, job_id).state == DONE
    job = queue.get(job_id)
    levels = json.loads((job.output_dir / "segmentation" / "segmentation.json").read_text())["levels"]
    for name in ("T11", "T12", "L1", "L2"):
        assert abs(levels[name]["centroid_lps"][2] - truth["levels"][name]["centre_lps"][2]) < 10.0, name
    assert len(outbox.items(db)) == 3
    sr = read_sr(job.output_dir / "sr.dcm")
    assert sr.evaluation(codes.LEVEL_IDENTIFICATION.meaning).meaning == codes.LEVEL_IDENTIFICATION_VALUES["confirmed"].meaning
    assert "PredecessorDocumentsSequence" not in pydicom.dcmread(job.output_dir / "sr.dcm")  # none was sent
    row = _row_of(db, job.study_uid)
    assert row.level_status is worklist.LevelStatus.CONFIRMED and worklist.FlagReason.LEVELS not in row.flag_reasons

    reviewer.reload()
    assert "confirmed by a reviewer" in reviewer.locator("section.level-review h2").inner_text()
    assert reviewer.locator("table.levels.unconfirmed").count() == 0
    reviewer.screenshot(path=output_dir / "review_confirmed.png", full_page=True)


def test_every_review_control_is_reachable_with_the_keyboard(held_study, browser):
    server, settings, db, job_id, _ = held_study
    page = browser.new_context(viewport={"width": 1500, "height": 1000}).new_page()
    log_in(page, server.url, "rita")
    page.locator("table.worklist tbody tr").nth(0).locator("a").first.click()
    reached = set()
    for _ in range(60):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("(e => e.tagName === 'BUTTON' ? e.value : e.name || '')(document.activeElement)"))
    assert {"level", "at", "labelled", "shift", "confirm", "name", "note", "reject"} <= reached

    # A keyboard-only answer: choose "L1 is T12" in the lists and press Enter on the button.
    page.focus("select[name=labelled]")
    page.select_option("select[name=labelled]", "L1")
    page.select_option("form:has(select[name=labelled]) select[name=level]", "T12")
    page.focus("button[value=name]")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "the vertebra labelled L1 is T12" in page.locator(".flash").inner_text()
    job = JobQueue(db).get(job_id)
    assert (job.state, job.level_shift) == (QUEUED, -1)

    # A second answer while the first is being measured is refused, with the reason on the page.
    page.goto(page.url)
    assert page.locator("section.level-review form").count() == 0
    response = page.context.request.post(f"{server.url}/studies/{_row_of(db, job.study_uid).id}/levels",
                                         form={"action": "confirm"}, max_redirects=0)
    assert response.status in (400, 403)
