"""Levels that need a person: job revisions, the answer's arithmetic, the worklist's flags, the CLI."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import sqlite_utils

from inference.levels import verse_id
from inference.results import LevelIdentification, SegmentationResult
from inference.segment.level_view import LevelView
from inference.segment.levels import describe_levels
from inference.segment.relabel import confirm_levels, describe_shift
from scpnode import worklist
from scpnode.cli import main
from scpnode.config import WorklistSettings
from scpnode.db import open_database
from scpnode.pipeline.analysis import coverable_by_relabelling
from scpnode.pipeline.jobs import DONE, HELD, OUT_OF_SCOPE, QUEUED, RUNNING, AnalysisTarget, JobQueue
from scpnode.pipeline.level_review import LevelAnswer, LevelReviewError, answer_level_review, reject_segmentation
from scpnode.schema import open_node_database
from scpnode.storage import index
from scpnode.web.users import Role, add_user, get_user
from scpnode.web.users import ensure_schema as ensure_users
from tests.unit.worklist_samples import add_study, measurements

NAMES = ["T10", "T11", "T12", "L1", "L2"]
Z_MM = {"T10": 80.0, "T11": 50.0, "T12": 20.0, "L1": -12.0, "L2": -45.0}


def _labels() -> sitk.Image:
    """Five stacked boxes labelled T10..L2 from the top down (LPS: higher z is superior)."""
    array = np.zeros((50, 20, 20), dtype=np.uint8)
    for position, name in enumerate(NAMES):
        top = 49 - 10 * position
        array[top - 7:top - 1, 6:14, 6:14] = verse_id(name)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.0, 3.0))
    return image


def _segmentation(needs_review: bool = True) -> SegmentationResult:
    labels = _labels()
    description = describe_levels(labels, labels)
    return SegmentationResult(vertebrae=labels, bodies=labels, compartments=sitk.Cast(labels > 0, sitk.sitkUInt8),
                              levels=description.levels, backend="test", needs_review=needs_review,
                              warnings=["anchors disagree: test"])


def test_confirmed_labels_rest_on_the_person_and_need_no_review() -> None:
    before = _segmentation()
    assert before.level_identification is LevelIdentification.NEEDS_REVIEW
    after = confirm_levels(before, sitk.Cast(before.vertebrae, sitk.sitkFloat32) * 0 + 200, -1, "rita")
    assert sorted(after.levels) == sorted(["T9", "T10", "T11", "T12", "L1"])
    assert after.levels["T12"].centroid_lps == before.levels["L1"].centroid_lps
    assert after.level_identification is LevelIdentification.CONFIRMED and not after.needs_review
    assert all(level.anchors == ("person",) for level in after.levels.values())
    assert after.anchors[0].kind == "person" and "rita renamed every vertebra 1 level cranially" in after.warnings[0]
    assert after.to_json()["confirmed_by"] == "rita"
    with pytest.raises(ValueError, match="name of the person"):
        confirm_levels(before, before.vertebrae, 0, " ")
    assert describe_shift(1) == "1 level caudally (T12 becomes L1)"
    assert describe_shift(-2) == "2 levels cranially (T12 becomes T10)"


def test_a_study_is_held_rather_than_out_of_scope_when_a_shift_would_bring_t11_l2_into_view() -> None:
    segmentation = _segmentation()
    assert coverable_by_relabelling(segmentation)  # all four complete already
    cut = replace(segmentation, levels={**segmentation.levels,
                                        "L2": replace(segmentation.levels["L2"], complete=False)})
    assert coverable_by_relabelling(cut)  # T10..L1 would be T11..L2 one level lower
    only_two = {name: cut.levels[name] for name in ("L1", "L2")}
    assert not coverable_by_relabelling(replace(cut, levels=only_two))


def test_answers_are_counted_from_the_labels_shown() -> None:
    assert LevelAnswer().steps(Z_MM) == (0, "confirmed the labels as shown")
    assert LevelAnswer(shift=2).steps(Z_MM)[0] == 2
    steps, said = LevelAnswer(vertebra_at_mm=-5.0, vertebra_is="T12").steps(Z_MM)  # nearest: L1
    assert steps == -1 and said.startswith("the vertebra labelled L1 is T12")
    assert LevelAnswer(vertebra_at_mm=21.0, vertebra_is="L1").steps(Z_MM)[0] == 1
    with pytest.raises(LevelReviewError, match="T12 or L1"):
        LevelAnswer(vertebra_at_mm=0.0, vertebra_is="S").steps(Z_MM)
    with pytest.raises(LevelReviewError, match="no labelled vertebra"):
        LevelAnswer(vertebra_at_mm=0.0).steps({})


@pytest.fixture
def db(tmp_path: Path) -> sqlite_utils.Database:
    return open_node_database(tmp_path / "node.db")


def _held_job(db: sqlite_utils.Database, tmp_path: Path, study_uid: str = "1.2.826.0.1.3680043.10.100700"):
    """A job finished as held, with the segmentation.json its review reads."""
    queue = JobQueue(db)
    job = queue.enqueue(AnalysisTarget(study_uid, study_uid + ".1", Path("/store/x"), 1))
    queue.claim_next()
    job_dir = tmp_path / f"job-{job.id}"
    (job_dir / "segmentation").mkdir(parents=True)
    (job_dir / "segmentation" / "segmentation.json").write_text(json.dumps(
        {"levels": {name: {"centroid_lps": [0.0, 0.0, z]} for name, z in Z_MM.items()}}))
    queue.finish(job.id, HELD, reason="level labels need review: test", result_dir=str(job_dir))
    return queue.get(job.id)


def test_confirming_queues_the_next_revision_once(db, tmp_path) -> None:
    job = _held_job(db, tmp_path)
    queue = JobQueue(db)
    queued = queue.confirm_levels(job.id, -1, "rita")
    assert (queued.state, queued.revision, queued.level_shift, queued.confirmed_by) == (QUEUED, 1, -1, "rita")
    assert queued.output_dir == Path(job.result_dir) / "revision-1"
    with pytest.raises(ValueError, match="queued"):
        queue.confirm_levels(job.id, 0, "rita")  # a second answer while the first is pending
    queue.claim_next()
    with pytest.raises(ValueError, match="running"):
        queue.confirm_levels(job.id, 0, "rita")
    queue.finish(job.id, DONE)
    assert queue.confirm_levels(job.id, 0, "rob").revision == 2  # a done job may be corrected later
    with pytest.raises(ValueError, match="name of the person"):
        queue.confirm_levels(job.id, 0, "")
    assert queue.get(job.id).state == QUEUED and RUNNING != QUEUED


def test_an_answer_is_audited_and_too_large_a_move_refused(db, tmp_path) -> None:
    job = _held_job(db, tmp_path)
    row_id = add_study(db, 700)  # the same study uid as the job
    with pytest.raises(LevelReviewError, match="at most 3"):
        answer_level_review(db, job.id, "rita", LevelAnswer(shift=4))
    outcome = answer_level_review(db, job.id, "rita", LevelAnswer(vertebra_at_mm=-10.0, vertebra_is="T12"))
    assert outcome.job.level_shift == -1
    entry = worklist.audit_log(db, row_id)[-1]
    assert (entry.user, entry.action) == ("rita", "levels_corrected") and "labelled L1 is T12" in entry.note
    assert worklist.get_row(db, row_id).level_status is worklist.LevelStatus.RELABELLING
    with pytest.raises(LevelReviewError, match="only a held or done"):
        answer_level_review(db, job.id, "rita", LevelAnswer())
    with pytest.raises(LevelReviewError, match="no job 999"):
        answer_level_review(db, 999, "rita", LevelAnswer())


def test_unconfirmed_numbers_neither_raise_nor_clear_clinical_flags(db) -> None:
    worklist.ensure_schema(db)
    settings = WorklistSettings()
    info = worklist.StudyInfo(study_uid="1.2.3", series_uid="1.2.3.4", patient_id="P1")
    low = measurements(85.0, 60.0)
    unsure = replace(low, level_identification=LevelIdentification.NEEDS_REVIEW)
    row_id = worklist.add_scored_study(db, info, unsure, settings)
    row = worklist.get_row(db, row_id)
    assert row.flag_reasons == [worklist.FlagReason.LEVELS] and row.flagged  # not low vBMD / L1
    assert row.level_status is worklist.LevelStatus.NEEDS_REVIEW and not row.level_status.trusted
    assert row.l1_hu == 85.0  # kept, for a person to see greyed

    worklist.add_scored_study(db, info, low, settings)  # trusted numbers flag as usual
    assert worklist.get_row(db, row_id).flag_reasons == [worklist.FlagReason.VBMD, worklist.FlagReason.L1_HU]
    worklist.add_scored_study(db, info, replace(measurements(200.0, 160.0),
                                                level_identification=LevelIdentification.NEEDS_REVIEW), settings)
    assert worklist.get_row(db, row_id).flag_reasons == [  # doubtful normal numbers clear nothing
        worklist.FlagReason.VBMD, worklist.FlagReason.L1_HU, worklist.FlagReason.LEVELS]

    worklist.withdraw_scores(db, "1.2.3", "L2 incomplete (cut by the field of view)", "rita")
    row = worklist.get_row(db, row_id)
    assert row.level_status is worklist.LevelStatus.NOT_SCORED and not row.flagged and row.l1_hu is None
    assert worklist.audit_log(db, row_id)[-1].note == "L2 incomplete (cut by the field of view)"


def test_reviewers_see_levels_that_need_review_first(db) -> None:
    worklist.ensure_schema(db)
    add_study(db, 1, l1_hu=85, vbmd=60)  # flagged
    info = worklist.StudyInfo(study_uid="9.9", series_uid="9.9.1", patient_id="HELD")
    worklist.add_scored_study(db, info, replace(measurements(150.0, 130.0),
                                                level_identification=LevelIdentification.NEEDS_REVIEW),
                              WorklistSettings())
    add_study(db, 2, l1_hu=80, vbmd=55, study_date=None)
    coordinator = worklist.query_worklist(db, worklist.parse_query({}))
    reviewer = worklist.query_worklist(db, replace(worklist.parse_query({}), levels_first=True))
    assert reviewer.rows[0].patient_id == "HELD"
    assert [r.patient_id for r in coordinator.rows] != [r.patient_id for r in reviewer.rows]


def test_level_view_rows_map_to_the_patient() -> None:
    view = LevelView(pixels=np.zeros((300, 200, 3), dtype=np.uint8), z_top_mm=100.0, mm_per_pixel=0.5,
                     top_row=20, level_z_mm={"T12": 40.0, "L1": 10.0})
    assert view.z_at_row(20) == 100.0 and view.z_at_row(140) == 40.0
    assert view.level_at_row(150) == "T12" and view.level_at_row(205) == "L1"


def test_users_of_an_older_database_gain_the_reviewer_role(tmp_path) -> None:
    db = open_database(tmp_path / "old.db")
    db.execute("create table schema_versions (component text primary key, version integer not null)")
    db.execute("""create table users (id integer primary key, username text not null unique collate nocase,
        password_hash text not null, role text not null check (role in ('coordinator', 'admin')),
        disabled integer not null default 0, created_at text not null, last_login_at text)""")
    db.execute("insert into users (username, password_hash, role, created_at) values ('carol', 'x', 'coordinator', 't')")
    db.execute("insert into schema_versions values ('users', 1)")
    db.conn.commit()
    ensure_users(db)
    assert get_user(db, "carol").role is Role.COORDINATOR
    assert add_user(db, "rita", "correct horse battery", Role.REVIEWER).reviews_levels


def test_jobs_relabel_on_the_command_line(tmp_path, capsys, monkeypatch) -> None:
    config = tmp_path / "node.toml"
    config.write_text('[node]\ndatabase = "var/node.db"\nstorage_dir = "var/store"\n')
    db = open_node_database(tmp_path / "var" / "node.db")
    job = _held_job(db, tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["--config", str(config), "jobs", "relabel", str(job.id), "--t12-at", "-12", "--user", "rob"]) == 0
    assert "the vertebra labelled L1 is T12" in capsys.readouterr().out
    assert JobQueue(db).get(job.id).level_shift == -1
    assert main(["--config", str(config), "jobs", "relabel", str(job.id), "--shift", "1"]) == 2
    assert "only a held or done" in capsys.readouterr().err
    assert main(["--config", str(config), "jobs", "list"]) == 0
    assert "revision 1, levels by rob" in capsys.readouterr().out


def test_a_held_study_whose_segmentation_is_wrong_is_not_scored(db, tmp_path) -> None:
    index.create_tables(db)
    job = _held_job(db, tmp_path)
    row_id = add_study(db, 700)
    with pytest.raises(LevelReviewError, match="say what is wrong"):
        reject_segmentation(db, job.id, "rita", "  ")
    rejected = reject_segmentation(db, job.id, "rita", "T12 and L1 merged")
    assert rejected.state == OUT_OF_SCOPE and rejected.reason == "segmentation rejected by rita: T12 and L1 merged"
    row = worklist.get_row(db, row_id)
    assert row.level_status is worklist.LevelStatus.NOT_SCORED and not row.flagged
    assert worklist.audit_log(db, row_id)[-1].user == "rita"
    with pytest.raises(LevelReviewError, match="only a held job"):
        reject_segmentation(db, job.id, "rita", "again")
