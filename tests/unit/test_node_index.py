"""The node database, store and series index: WAL, migrations, atomic files, states and revisions."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from scpnode.config import CompletionSettings, SelectionSettings
from scpnode.db import ThreadDatabases, migrate, open_database
from scpnode.pipeline.completion import CompletionScheduler
from scpnode.schema import open_node_database
from scpnode.storage import index
from scpnode.storage.index import InstanceMeta, PatientStudy, RecordOutcome, SeriesState
from scpnode.storage.store import InstanceStore, StoreError, is_valid_uid


def test_database_is_wal_with_foreign_keys_and_busy_timeout(tmp_path):
    db = open_database(tmp_path / "sub" / "node.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 30000


def test_migrations_apply_once_in_order_and_refuse_a_newer_schema(tmp_path):
    db = open_database(tmp_path / "node.db")
    calls = []
    steps = ["CREATE TABLE a (x INTEGER);", lambda d: calls.append("step 2")]
    assert migrate(db, "thing", steps) == 2
    assert migrate(db, "thing", steps) == 2
    assert calls == ["step 2"]
    assert migrate(db, "thing", [*steps, "ALTER TABLE a ADD COLUMN y TEXT;"]) == 3
    assert "y" in db["a"].columns_dict
    with pytest.raises(RuntimeError, match="newer than this software"):
        migrate(db, "thing", steps)


def test_failed_migration_step_leaves_the_previous_version(tmp_path):
    db = open_database(tmp_path / "node.db")
    with pytest.raises(Exception):
        migrate(db, "thing", ["CREATE TABLE a (x INTEGER);", "CREATE TABLE b (x INTEGER); NOT SQL;"])
    assert db.execute("SELECT version FROM schema_versions WHERE component = 'thing'").fetchone()[0] == 1
    assert not db["b"].exists()


def test_thread_databases_give_each_thread_its_own_connection(tmp_path):
    databases = ThreadDatabases(tmp_path / "node.db")
    seen = []
    thread = threading.Thread(target=lambda: seen.append(databases.get()))
    thread.start()
    thread.join()
    assert databases.get() is databases.get()
    assert seen[0] is not databases.get()


def test_store_writes_atomically_and_reports_failures(tmp_path):
    store = InstanceStore(tmp_path / "store")
    path = store.instance_path("1.2.3", "1.2.3.4", "1.2.3.4.5")
    assert path == tmp_path / "store" / "1.2.3" / "1.2.3.4" / "1.2.3.4.5.dcm"
    store.write(path, b"abc")
    store.write(path, b"abcd")
    assert path.read_bytes() == b"abcd"
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    (tmp_path / "store" / "9.9").write_text("not a folder")
    with pytest.raises(StoreError, match="cannot store"):
        store.write(store.instance_path("9.9", "1", "2"), b"x")
    (path.parent / ".x.dcm.0000.part").write_bytes(b"half")
    assert store.remove_partial_files() == 1


@pytest.mark.parametrize("uid, valid", [("1.2.840.10008", True), ("", False), ("../etc", False),
                                        ("1.2.", False), ("1." + "2" * 70, False), ("1.02.3", True)])
def test_only_digit_and_dot_uids_become_paths(uid, valid):
    assert is_valid_uid(uid) is valid
    if not valid:
        with pytest.raises(ValueError):
            InstanceStore("/tmp/x").instance_path("1.2", "1.3", uid or "..")


def meta(series_uid: str, study_uid: str = "1.2.3", sop: str | None = None, z: float = 0.0) -> InstanceMeta:
    return InstanceMeta(sop_instance_uid=sop or generate_uid(), sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                        study_instance_uid=study_uid, series_instance_uid=series_uid, modality="CT",
                        image_type=("ORIGINAL", "PRIMARY", "AXIAL"), slice_thickness=1.0,
                        pixel_spacing=(0.7, 0.7), orientation=(1, 0, 0, 0, 1, 0), positions=((0.0, 0.0, z),),
                        rows=512, columns=512)


def record(db, item: InstanceMeta, sha: str = "a", now: float = 100.0) -> RecordOutcome:
    return index.record_instance(db, item, PatientStudy(item.study_instance_uid), path=Path("/x") / item.sop_instance_uid,
                                 folder=Path("/x"), size=10, sha256=sha, transfer_syntax_uid="1.2.840.10008.1.2.1",
                                 now=now)


@pytest.fixture
def db(tmp_path):
    database = open_node_database(tmp_path / "node.db")
    index.create_tables(database)
    return database


def test_duplicates_are_recorded_once_and_changed_content_reopens(db):
    first = meta("1.2.3.4", sop="1.2.3.4.1")
    assert record(db, first) is RecordOutcome.NEW
    assert record(db, first) is RecordOutcome.DUPLICATE
    assert index.find_instance(db, "1.2.3.4.1")["sha256"] == "a"
    assert index.series_ref(db, "1.2.3.4").instance_count == 1

    [series] = index.complete_quiet_series(db, quiet_seconds=30, force_seconds=600, now=200.0)
    assert index.record_decision(db, series, True, None)
    assert record(db, first) is RecordOutcome.DUPLICATE
    assert index.series_ref(db, "1.2.3.4").state == SeriesState.SELECTED
    assert record(db, first, sha="b", now=300.0) is RecordOutcome.CHANGED
    reopened = index.series_ref(db, "1.2.3.4")
    assert (reopened.state, reopened.revision, reopened.instance_count) == (SeriesState.RECEIVED, 2, 1)


def test_completion_by_quiet_period_and_by_force_timeout(db):
    record(db, meta("1.1", sop="1.1.1"), now=100.0)
    for t in range(0, 700, 20):  # a series that never goes quiet
        record(db, meta("2.2", sop=f"2.2.{t}"), now=100.0 + t)
    assert index.complete_quiet_series(db, quiet_seconds=30, force_seconds=600, now=120.0) == []
    done = index.complete_quiet_series(db, quiet_seconds=30, force_seconds=600, now=131.0)
    assert [s.series_instance_uid for s in done] == ["1.1"]
    done = index.complete_quiet_series(db, quiet_seconds=30, force_seconds=600, now=701.0)
    assert [s.series_instance_uid for s in done] == ["2.2"]


def test_a_decision_on_an_older_revision_is_ignored(db):
    record(db, meta("1.1", sop="1.1.1"), now=100.0)
    [series] = index.complete_quiet_series(db, 30, 600, now=200.0)
    record(db, meta("1.1", sop="1.1.2"), now=201.0)  # reopened before the decision is written
    assert not index.record_decision(db, series, False, "slices: 1 slices < 20")
    assert index.series_ref(db, "1.1").state == SeriesState.RECEIVED


def test_out_of_scope_and_hand_off_acknowledgement(db):
    record(db, meta("1.1", sop="1.1.1"), now=100.0)
    [series] = index.complete_quiet_series(db, 30, 600, now=200.0)
    index.record_decision(db, series, True, None)
    selected = index.series_ref(db, "1.1")
    assert [s.series_instance_uid for s in index.selected_not_handed_off(db)] == ["1.1"]
    assert index.acknowledge_selected(db, selected)
    assert index.selected_not_handed_off(db) == []
    with pytest.raises(ValueError):
        index.mark_out_of_scope(db, selected, "")
    assert index.mark_out_of_scope(db, selected, "T11-L2 not in view (L3-L5 only)")
    ref = index.series_ref(db, "1.1")
    assert (ref.state, ref.reason) == (SeriesState.OUT_OF_SCOPE, "T11-L2 not in view (L3-L5 only)")


def test_scheduler_decides_with_reasons_and_re_offers_unacknowledged_series_at_start(tmp_path):
    databases = ThreadDatabases(tmp_path / "node.db")
    db = databases.get()
    index.create_tables(db)
    for z in range(30):
        record(db, meta("1.1", sop=f"1.1.{z}", z=-3.0 * z), now=100.0)
    record(db, meta("2.2", sop="2.2.1"), now=100.0)
    offered = []
    scheduler = CompletionScheduler(databases, CompletionSettings(quiet_seconds=30),
                                    SelectionSettings(min_coverage_mm=50), offered.append)
    decided = scheduler.run_once(now=200.0)
    assert {s.series_instance_uid for s in decided} == {"1.1", "2.2"}
    assert [s.series_instance_uid for s in offered] == ["1.1"]
    rejected = index.series_ref(db, "2.2")
    assert rejected.state == SeriesState.REJECTED and rejected.reason.startswith("slices: 1 slices < 20")

    restarted = []  # a new scheduler (node restart): the unacknowledged selection is offered again
    again = CompletionScheduler(databases, CompletionSettings(check_interval_seconds=60), SelectionSettings(),
                                restarted.append)
    again.start()
    again.stop()
    assert [s.series_instance_uid for s in restarted] == ["1.1"]


def test_series_counts_follow_new_changed_and_moved_instances(db):
    def counts(series_uid: str) -> tuple[int, int]:
        row = db.execute("SELECT instance_count, total_bytes FROM series WHERE series_instance_uid = ?",
                         [series_uid]).fetchone()
        return tuple(row)

    for i in range(3):
        record(db, meta("1.1", sop=f"1.1.{i}"))
    assert counts("1.1") == (3, 30)
    record(db, meta("1.1", sop="1.1.0"), sha="b")  # changed content: replaced, not added
    assert counts("1.1") == (3, 30)
    record(db, meta("2.2", sop="1.1.1"), sha="c")  # the same SOP Instance UID now in another series
    assert counts("1.1") == (2, 20) and counts("2.2") == (1, 10)
