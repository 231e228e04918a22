"""One analysis per study: ranking a study's series, choosing once, superseding, falling back."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from scpnode.config import CompletionSettings, SelectionSettings, StudyChoiceSettings
from scpnode.db import ThreadDatabases
from scpnode.pipeline.completion import CompletionScheduler
from scpnode.pipeline.study_choice import choose, contrast_phase
from scpnode.schema import prepare
from scpnode.storage import index
from scpnode.storage.index import InstanceMeta, PatientStudy, SeriesState

STUDY = "1.2.826.0.1.3680043.8.498.1"
CT_IMAGE = ("ORIGINAL", "PRIMARY", "AXIAL")


def _series(db, series_uid: str, *, thickness: float, count: int, kernel: str = "B30f", description: str = "",
            image_type: tuple[str, ...] = CT_IMAGE, extent_mm: float = 300.0, now: float = 100.0,
            agent: str = "", offset_mm: float = 0.0) -> None:
    step = extent_mm / max(count - 1, 1)
    for z in range(count):
        item = InstanceMeta(
            sop_instance_uid=generate_uid(), sop_class_uid="1.2.840.10008.5.1.4.1.1.2", study_instance_uid=STUDY,
            series_instance_uid=series_uid, modality="CT", image_type=image_type, slice_thickness=thickness,
            pixel_spacing=(0.7, 0.7), orientation=(1, 0, 0, 0, 1, 0), positions=((0.0, 0.0, -offset_mm - step * z),),
            rows=512, columns=512, convolution_kernel=kernel, series_description=description, contrast_agent=agent)
        index.record_instance(db, item, PatientStudy(STUDY), path=Path("/x") / item.sop_instance_uid,
                              folder=Path("/x") / series_uid, size=10, sha256=item.sop_instance_uid,
                              transfer_syntax_uid="1.2.840.10008.1.2.1", now=now)


def _scheduler(tmp_path, choice: StudyChoiceSettings) -> tuple:
    """(database, scheduler, series offered) with the default rules; the hook acknowledges as the pipeline does."""
    databases = ThreadDatabases(tmp_path / "node.db")
    db = databases.get()
    prepare(db)
    offered: list = []

    def take(series) -> None:
        offered.append(series)
        index.acknowledge_selected(db, series)

    scheduler = CompletionScheduler(databases, CompletionSettings(quiet_seconds=30), SelectionSettings(), take, choice)
    return db, scheduler, offered


@pytest.fixture
def node(tmp_path):
    return _scheduler(tmp_path, StudyChoiceSettings())


def _state(db, series_uid: str) -> tuple[SeriesState, str | None]:
    ref = index.series_ref(db, series_uid)
    return ref.state, ref.reason


def test_a_routine_study_gives_one_analysis_of_the_thin_soft_tissue_series(node) -> None:
    db, scheduler, offered = node
    _series(db, "1.1", thickness=1.0, count=301, description="ABD 1.0 B30f")
    _series(db, "1.2", thickness=3.0, count=101, description="ABD 3.0 B30f")
    _series(db, "1.3", thickness=1.0, count=301, kernel="B70f", description="ABD 1.0 BONE")
    _series(db, "1.4", thickness=1.0, count=1, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
            description="Topogram")
    _series(db, "1.5", thickness=1.0, count=1, image_type=("DERIVED", "SECONDARY", "OTHER"),
            description="Dose Report")
    scheduler.run_once(now=200.0)
    assert [s.series_instance_uid for s in offered] == ["1.1"]
    assert _state(db, "1.1") == (SeriesState.SELECTED, None)
    state, reason = _state(db, "1.2")
    assert state is SeriesState.NOT_CHOSEN
    assert reason == ("ranked 2 of 3: series 'ABD 1.0 B30f' analysed instead "
                      "(thickness: 1 mm slices preferred to 3 mm slices)")
    state, reason = _state(db, "1.3")
    assert state is SeriesState.NOT_CHOSEN and "kernel: soft-tissue kernel preferred to sharp kernel (B70f)" in reason
    assert _state(db, "1.4")[0] is SeriesState.REJECTED and _state(db, "1.5")[0] is SeriesState.REJECTED
    scheduler.run_once(now=300.0)  # nothing new: nothing offered again
    assert len(offered) == 1


def test_the_choice_waits_until_no_series_of_the_study_is_still_arriving(node) -> None:
    db, scheduler, offered = node
    _series(db, "1.2", thickness=3.0, count=101, now=100.0)
    _series(db, "1.1", thickness=1.0, count=301, now=190.0)  # the thin series is still arriving
    scheduler.run_once(now=200.0)
    assert offered == [] and _state(db, "1.2") == (SeriesState.SELECTED, None)
    scheduler.run_once(now=230.0)
    assert [s.series_instance_uid for s in offered] == ["1.1"]
    assert _state(db, "1.2")[0] is SeriesState.NOT_CHOSEN


def test_a_better_series_arriving_later_supersedes_and_a_worse_one_does_not(node) -> None:
    db, scheduler, offered = node
    _series(db, "1.2", thickness=3.0, count=101, description="3 mm")
    scheduler.run_once(now=200.0)
    assert [s.series_instance_uid for s in offered] == ["1.2"]

    _series(db, "1.1", thickness=1.0, count=301, description="1 mm", now=3700.0)  # an hour later
    scheduler.run_once(now=3800.0)
    assert [s.series_instance_uid for s in offered] == ["1.2", "1.1"]
    state, reason = _state(db, "1.2")
    assert state is SeriesState.NOT_CHOSEN and "series '1 mm' analysed instead" in reason

    _series(db, "1.3", thickness=5.0, count=61, description="5 mm", now=7300.0)
    scheduler.run_once(now=7400.0)
    assert len(offered) == 2, "a worse series later is recorded, not analysed"
    assert _state(db, "1.3")[0] is SeriesState.NOT_CHOSEN


def test_keep_first_records_a_later_better_series_as_not_chosen(tmp_path) -> None:
    db, scheduler, offered = _scheduler(tmp_path, StudyChoiceSettings(later_series="keep_first"))
    _series(db, "1.2", thickness=3.0, count=101)
    scheduler.run_once(now=200.0)
    _series(db, "1.1", thickness=1.0, count=301, now=3700.0)
    scheduler.run_once(now=3800.0)
    assert [s.series_instance_uid for s in offered] == ["1.2"]
    assert _state(db, "1.1")[0] is SeriesState.NOT_CHOSEN


def test_the_next_best_series_is_analysed_when_the_chosen_one_is_out_of_scope(node) -> None:
    db, scheduler, offered = node
    _series(db, "1.1", thickness=1.0, count=301, extent_mm=300.0, description="thin")
    _series(db, "1.2", thickness=3.0, count=101, extent_mm=300.0, description="thick")
    scheduler.run_once(now=200.0)
    chosen = offered[-1]
    assert index.mark_out_of_scope(db, index.series_ref(db, chosen.series_instance_uid), "L2 not in view")
    scheduler.run_once(now=260.0)
    assert [s.series_instance_uid for s in offered] == ["1.1", "1.2"]
    assert _state(db, "1.2") == (SeriesState.SELECTED, None)
    scheduler.run_once(now=320.0)
    assert len(offered) == 2


def test_a_reopened_series_is_not_chosen_from_until_decided_again(node) -> None:
    """The revision guard: a series reopened by new content while the study is chosen from waits."""
    db, scheduler, offered = node
    _series(db, "1.1", thickness=1.0, count=301)
    _series(db, "1.2", thickness=3.0, count=101)
    index.complete_quiet_series(db, 30, 600, now=200.0)
    complete = index.series_ref(db, "1.1")
    _series(db, "1.1", thickness=1.0, count=1, now=205.0, offset_mm=301.0)  # one more: revision 2, receiving
    assert not index.record_decision(db, complete, True, None), "the stale revision is not decided"
    scheduler.run_once(now=210.0)
    assert offered == [], "the study still has a series arriving"
    scheduler.run_once(now=260.0)
    assert [(s.series_instance_uid, s.revision) for s in offered] == [("1.1", 2)]


def test_every_mode_analyses_each_selected_series(tmp_path) -> None:
    db, scheduler, offered = _scheduler(tmp_path, StudyChoiceSettings(mode="every"))
    _series(db, "1.1", thickness=1.0, count=301)
    _series(db, "1.2", thickness=3.0, count=101)
    for now in (200.0, 210.0, 220.0):
        scheduler.run_once(now=now)
    assert sorted(s.series_instance_uid for s in offered) == ["1.1", "1.2"]


@pytest.mark.parametrize(("description", "agent", "phase"), [
    ("ABD NATIVE 1.0", "", "non-contrast"),
    ("CHEST W/O CONTRAST", "", "non-contrast"),
    ("Non-contrast 3mm", "", "non-contrast"),
    ("ABD ARTERIAL 1.0", "Iomeprol", "arterial"),
    ("PORTAL VENOUS 3mm", "Iomeprol", "venous"),
    ("ABD PV 3.0", "OMNIPAQUE", "venous"),
    ("DELAYED 5 min", "Iomeprol", "delayed"),
    ("ABD 3.0", "Iomeprol", "unknown"),
    ("ABD 3.0", "", "non-contrast"),
])
def test_contrast_phase_is_read_from_description_and_agent(description, agent, phase) -> None:
    assert contrast_phase(description, agent) == phase


def test_preferences_are_declared_in_order(node) -> None:
    db, _, _ = node
    _series(db, "1.1", thickness=1.0, count=301, description="ARTERIAL 1mm", agent="Iomeprol")
    _series(db, "1.2", thickness=3.0, count=101, description="PORTAL VENOUS 3mm", agent="Iomeprol")
    for ref in index.complete_quiet_series(db, 30, 600, now=200.0):
        index.record_decision(db, ref, True, None)
    default = choose(db, STUDY, StudyChoiceSettings())
    assert default.analyse.series_instance_uid == "1.2", "venous before arterial, before thickness"
    thickness_first = StudyChoiceSettings(order=["thickness", "phase", "kernel", "coverage", "images"])
    assert choose(db, STUDY, thickness_first).analyse.series_instance_uid == "1.1"
    with pytest.raises(ValueError, match="names a criterion twice"):
        StudyChoiceSettings(order=["thickness", "thickness"])
    with pytest.raises(ValueError, match="not a regular expression"):
        StudyChoiceSettings(sharp_kernel_patterns=["B[7"])


def test_the_status_page_lists_what_was_chosen_and_why(node, tmp_path) -> None:
    from scpnode.config import Settings
    from scpnode.logs import uid_ref
    from scpnode.web.node_status import DatabaseNodeStatus

    db, scheduler, _ = node
    _series(db, "1.1", thickness=1.0, count=301, description="thin")
    _series(db, "1.2", thickness=3.0, count=101, description="thick")
    scheduler.run_once(now=200.0)
    settings = Settings.model_validate({"node": {"storage_dir": str(tmp_path), "database": str(tmp_path / "node.db")}})
    choices = DatabaseNodeStatus(settings, db).snapshot().choices
    assert [(c.description, c.state, c.reason.split(" (")[0]) for c in choices] == [
        ("thin", "selected", "analysed"),
        ("thick", "not_chosen", "ranked 2 of 2: series 'thin' analysed instead"),
    ]
    assert all(c.study_ref == uid_ref(STUDY) for c in choices)


def test_a_job_of_an_old_revision_does_not_mark_the_reopened_series_out_of_scope(node) -> None:
    """The revision race: a series reopened and selected again while its first job ran."""
    db, scheduler, offered = node
    _series(db, "1.1", thickness=1.0, count=301)
    scheduler.run_once(now=200.0)
    first = offered[-1]
    _series(db, "1.1", thickness=1.0, count=1, now=205.0, offset_mm=301.0)  # more content: revision 2
    scheduler.run_once(now=260.0)
    assert [(s.series_instance_uid, s.revision) for s in offered] == [("1.1", 1), ("1.1", 2)]
    # The job of revision 1 ends out of scope: revision 2 stays selected for its own job.
    assert not index.mark_revision_out_of_scope(db, "1.1", first.revision, "L2 not in view")
    assert _state(db, "1.1") == (SeriesState.SELECTED, None)
    assert index.mark_revision_out_of_scope(db, "1.1", 2, "L2 not in view")
    assert _state(db, "1.1") == (SeriesState.OUT_OF_SCOPE, "L2 not in view")


def test_a_series_receiving_when_the_node_stopped_gets_its_quiet_period_again(node) -> None:
    """A transfer cut by a crash is not judged complete from its last instance's time."""
    db, scheduler, offered = node
    _series(db, "1.1", thickness=1.0, count=150, now=100.0)  # the node dies mid-transfer at t=100
    assert index.restart_receiving_clocks(db, now=1000.0) == 1  # it starts again at t=1000
    scheduler.run_once(now=1010.0)
    assert offered == [] and _state(db, "1.1")[0] is SeriesState.RECEIVED
    _series(db, "1.1", thickness=1.0, count=151, now=1015.0, offset_mm=302.0)  # the sender resumes
    scheduler.run_once(now=1050.0)
    assert [(s.series_instance_uid, s.revision) for s in offered] == [("1.1", 1)], "one complete series, once"
