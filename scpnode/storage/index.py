"""The series index: studies, series and instances in SQLite, and the series states.

A series moves through explicit states that survive a restart (mercure's
model)::

    received --(quiet period or force timeout)--> complete --(selection rules)--> selected | rejected
        ^                                                                             |
        +---------------- a new or changed instance reopens the series --------------+
    selected --(pipeline: T11-L2 not in view, ...)--> out_of_scope

Every ``rejected`` and ``out_of_scope`` series carries a reason. Each reopening
bumps the series ``revision``, so that a decision taken on an older content
never overwrites the state of a newer one. A selected series is handed to the
job pipeline through the ``Node``'s ``on_series_selected`` hook; the pipeline
confirms with :func:`acknowledge_selected`, and :func:`selected_not_handed_off`
lists what a crash left unconfirmed.

Duplicates: an instance is identified by its SOP Instance UID and the SHA-256
of its encoded data set; the same UID with the same content changes nothing,
with different content it replaces the file and reopens the series.

Retention marks: when :mod:`scpnode.storage.retention` deletes received files,
:func:`purge_received` marks the instances (and, once all are gone, the series)
with ``purged_at``; the rows themselves stay.

Every read and write of these tables is a function of this module.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlite_utils

from scpnode.db import migrate, transaction
from scpnode.storage.instance_meta import InstanceMeta, PatientStudy


class SeriesState(StrEnum):
    """Where a series stands (stored as text in ``series.state``)."""

    RECEIVED = "received"
    """Instances are arriving; not yet complete."""
    COMPLETE = "complete"
    """Quiet period or force timeout passed; selection not yet decided."""
    SELECTED = "selected"
    """Passed the selection rules; goes to the job pipeline."""
    REJECTED = "rejected"
    """Failed a selection rule (``reason`` says which)."""
    OUT_OF_SCOPE = "out_of_scope"
    """Selected, but the pipeline found it cannot be analysed (e.g. T11-L2 not in view)."""
    NOT_CHOSEN = "not_chosen"
    """Selected, but another series of its study was analysed instead (``reason`` says why);
    taken up again if the chosen one turns out out of scope (:mod:`scpnode.pipeline.study_choice`)."""


class RecordOutcome(StrEnum):
    """What recording an instance did."""

    NEW = "new"
    DUPLICATE = "duplicate"
    """Same SOP Instance UID and same content as already stored: nothing changed."""
    CHANGED = "changed"
    """Same SOP Instance UID, different content: replaced, series reopened."""


@dataclass(frozen=True)
class SeriesRef:
    """A series as the rest of the node sees it (the value handed to the job pipeline)."""

    study_instance_uid: str
    series_instance_uid: str
    folder: Path
    """Folder holding the series' files (``<sop uid>.dcm``)."""
    instance_count: int
    modality: str
    series_description: str
    state: SeriesState
    revision: int
    """Bumped whenever new or changed content reopens the series."""
    reason: str | None = None
    """Why the series was rejected or is out of scope."""
    body_part_examined: str = ""
    first_received_at: float = 0.0
    last_received_at: float = 0.0
    handed_off_at: float | None = None
    """When the job pipeline took this revision over (None: not yet)."""
    total_bytes: int = 0
    """Bytes of the series' received files still on disk (0 once retention purged them)."""


MIGRATIONS = [
    """
    CREATE TABLE studies (
        study_instance_uid TEXT PRIMARY KEY,
        patient_id TEXT, patient_name TEXT, patient_birth_date TEXT, patient_sex TEXT,
        accession_number TEXT, study_date TEXT, study_description TEXT,
        first_received_at REAL NOT NULL, last_received_at REAL NOT NULL
    );
    CREATE TABLE series (
        series_instance_uid TEXT PRIMARY KEY,
        study_instance_uid TEXT NOT NULL REFERENCES studies(study_instance_uid),
        folder TEXT NOT NULL,
        modality TEXT, series_description TEXT, body_part_examined TEXT,
        state TEXT NOT NULL, reason TEXT,
        revision INTEGER NOT NULL DEFAULT 1,
        instance_count INTEGER NOT NULL DEFAULT 0,
        total_bytes INTEGER NOT NULL DEFAULT 0,
        first_received_at REAL NOT NULL,
        opened_at REAL NOT NULL,
        last_received_at REAL NOT NULL,
        completed_at REAL, decided_at REAL, handed_off_at REAL,
        selection_json TEXT
    );
    CREATE INDEX series_state ON series(state);
    CREATE INDEX series_study ON series(study_instance_uid);
    CREATE TABLE instances (
        sop_instance_uid TEXT PRIMARY KEY,
        series_instance_uid TEXT NOT NULL REFERENCES series(series_instance_uid),
        study_instance_uid TEXT NOT NULL,
        sop_class_uid TEXT NOT NULL,
        transfer_syntax_uid TEXT NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        received_at REAL NOT NULL,
        calling_ae_title TEXT,
        modality TEXT, image_type TEXT, instance_number INTEGER,
        series_description TEXT, study_description TEXT, protocol_name TEXT, body_part_examined TEXT,
        slice_thickness REAL, pixel_spacing TEXT, orientation TEXT, positions TEXT,
        gantry_tilt REAL, contrast_agent TEXT, rows INTEGER, columns INTEGER
    );
    CREATE INDEX instances_series ON instances(series_instance_uid);
    """,
    # When each peer last sent an instance (node status page): one index seek per peer.
    "CREATE INDEX instances_peer_received ON instances(calling_ae_title, received_at);",
    # The reconstruction kernel ranks the series of a study (scpnode.pipeline.study_choice).
    "ALTER TABLE instances ADD COLUMN convolution_kernel TEXT;",
    lambda db: _add_purge_marks(db),
]
"""Schema steps of the ``index`` component (:func:`scpnode.db.migrate`); append, never edit."""


def _add_purge_marks(db: sqlite_utils.Database) -> None:
    """Retention marks on instances and series. Databases of earlier versions got these columns
    from a ``retention`` component of their own, so a column already there is kept."""
    for table in ("instances", "series"):
        if "purged_at" not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
            db.execute(f"ALTER TABLE {table} ADD COLUMN purged_at REAL")


def create_tables(db: sqlite_utils.Database) -> None:
    """Create or migrate the index tables."""
    migrate(db, "index", MIGRATIONS)


def find_instance(db: sqlite_utils.Database, sop_instance_uid: str) -> dict[str, Any] | None:
    """The ``instances`` row of a SOP Instance UID, or None."""
    # a plain cursor: sqlite-utils' query() costs ~40 us more, on every received instance
    cursor = db.execute("SELECT * FROM instances WHERE sop_instance_uid = ?", [sop_instance_uid])
    row = cursor.fetchone()
    return dict(zip((column[0] for column in cursor.description), row)) if row else None


def record_instance(
    db: sqlite_utils.Database,
    meta: InstanceMeta,
    study: PatientStudy,
    *,
    path: Path,
    folder: Path,
    size: int,
    sha256: str,
    transfer_syntax_uid: str,
    calling_ae_title: str = "",
    now: float | None = None,
) -> RecordOutcome:
    """Index an instance whose file is already durable at ``path``.

    A new instance, or a known one with different content, (re)opens its
    series: state ``received``, revision bumped if it had been decided.
    """
    now = time.time() if now is None else now
    with transaction(db):
        existing = find_instance(db, meta.sop_instance_uid)
        if existing is not None and existing["sha256"] == sha256:
            return RecordOutcome.DUPLICATE
        _upsert_study(db, study, now)
        # a new instance is counted incrementally (a recount per instance grows with the series)
        _open_series(db, meta, folder, now, new_instance_bytes=size if existing is None else None)
        row = meta.to_row() | {
            "transfer_syntax_uid": transfer_syntax_uid, "path": str(path), "size": size,
            "sha256": sha256, "received_at": now, "calling_ae_title": calling_ae_title,
        }
        # a plain statement: sqlite-utils' insert() introspects the table on every call (~0.5 ms)
        db.execute(f"INSERT OR REPLACE INTO instances ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                   list(row.values()))
        if existing is not None:  # replaced, possibly moved from another series: recount both
            for series_uid in {meta.series_instance_uid, existing["series_instance_uid"]}:
                _recount(db, series_uid)
    return RecordOutcome.NEW if existing is None else RecordOutcome.CHANGED


def is_stored_duplicate(existing: dict[str, Any], sha256: str) -> bool:
    """Whether an instance with content hash ``sha256`` is already stored as the index row ``existing`` says.

    Same content whose file is gone (deleted by hand, lost with a disk) is not a
    duplicate, unless the retention purge removed it: a resend of a purged
    instance is not stored again.
    """
    if existing["sha256"] != sha256:
        return False
    return existing.get("purged_at") is not None or Path(existing["path"]).exists()


def _recount(db: sqlite_utils.Database, series_instance_uid: str) -> None:
    db.execute(
        "UPDATE series SET instance_count = (SELECT COUNT(*) FROM instances WHERE series_instance_uid = ?1),"
        " total_bytes = (SELECT COALESCE(SUM(size), 0) FROM instances WHERE series_instance_uid = ?1)"
        " WHERE series_instance_uid = ?1", [series_instance_uid])


def _upsert_study(db: sqlite_utils.Database, study: PatientStudy, now: float) -> None:
    db.execute(
        "INSERT INTO studies (study_instance_uid, patient_id, patient_name, patient_birth_date, patient_sex,"
        " accession_number, study_date, study_description, first_received_at, last_received_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT(study_instance_uid) DO UPDATE SET last_received_at = excluded.last_received_at",
        [study.study_instance_uid, study.patient_id, study.patient_name, study.patient_birth_date,
         study.patient_sex, study.accession_number, study.study_date, study.study_description, now, now])


def _open_series(db: sqlite_utils.Database, meta: InstanceMeta, folder: Path, now: float,
                 new_instance_bytes: int | None) -> None:
    """Create or reopen the instance's series; count a new instance (its size in ``new_instance_bytes``) in."""
    received = SeriesState.RECEIVED.value
    added, added_bytes = (0, 0) if new_instance_bytes is None else (1, new_instance_bytes)
    db.execute(
        "INSERT INTO series (series_instance_uid, study_instance_uid, folder, modality, series_description,"
        " body_part_examined, state, first_received_at, opened_at, last_received_at, instance_count, total_bytes)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT(series_instance_uid) DO UPDATE SET"
        "  last_received_at = excluded.last_received_at,"
        "  revision = revision + (state != ?),"
        "  opened_at = CASE WHEN state = ? THEN opened_at ELSE excluded.opened_at END,"
        "  state = ?, reason = NULL, completed_at = NULL, decided_at = NULL, handed_off_at = NULL,"
        "  instance_count = instance_count + excluded.instance_count, total_bytes = total_bytes + excluded.total_bytes",
        [meta.series_instance_uid, meta.study_instance_uid, str(folder), meta.modality, meta.series_description,
         meta.body_part_examined, received, now, now, now, added, added_bytes, received, received, received])


def series_ref(db: sqlite_utils.Database, series_instance_uid: str) -> SeriesRef | None:
    """The series with this UID, or None."""
    rows = list(db.query("SELECT * FROM series WHERE series_instance_uid = ?", [series_instance_uid]))
    return _ref(rows[0]) if rows else None


def series_in_state(db: sqlite_utils.Database, state: SeriesState) -> list[SeriesRef]:
    """All series in one state, oldest first."""
    rows = db.query("SELECT * FROM series WHERE state = ? ORDER BY first_received_at", [state.value])
    return [_ref(row) for row in rows]


def series_instances(db: sqlite_utils.Database, series_instance_uid: str) -> list[InstanceMeta]:
    """The indexed attributes of every instance of a series."""
    rows = db.query("SELECT * FROM instances WHERE series_instance_uid = ?", [series_instance_uid])
    return [InstanceMeta.from_row(row) for row in rows]


def complete_quiet_series(db: sqlite_utils.Database, quiet_seconds: float, force_seconds: float,
                          now: float | None = None) -> list[SeriesRef]:
    """Mark ``complete`` every received series quiet for ``quiet_seconds`` or open for ``force_seconds``."""
    now = time.time() if now is None else now
    with transaction(db):
        rows = list(db.query(
            "UPDATE series SET state = ?, completed_at = ? WHERE state = ?"
            " AND (last_received_at <= ? OR opened_at <= ?) RETURNING *",
            [SeriesState.COMPLETE.value, now, SeriesState.RECEIVED.value, now - quiet_seconds, now - force_seconds]))
    return [_ref(row) for row in rows]


def restart_receiving_clocks(db: sqlite_utils.Database, now: float | None = None) -> int:
    """At node start: series still receiving count as having received their last instance now.

    The node may have stopped (or crashed) in the middle of a transfer. Judged by
    the time of its last instance, such a series would be declared complete at
    once, before the sender has resumed, and analysed incomplete. Restarting
    its quiet (and force) clock gives the sender the quiet period to go on.
    Returns how many series it applied to.
    """
    now = time.time() if now is None else now
    with transaction(db):
        cursor = db.execute("UPDATE series SET last_received_at = ?, opened_at = ? WHERE state = ?",
                            [now, now, SeriesState.RECEIVED.value])
    return cursor.rowcount


def record_decision(db: sqlite_utils.Database, series: SeriesRef, selected: bool, reason: str | None,
                    details: dict[str, Any] | None = None, now: float | None = None) -> bool:
    """Record the selection decision taken on ``series`` (its revision); False if it was reopened since."""
    state = SeriesState.SELECTED if selected else SeriesState.REJECTED
    return _transition(db, series, SeriesState.COMPLETE, state, reason,
                       {"decided_at": time.time() if now is None else now,
                        "selection_json": json.dumps(details) if details is not None else None})


def mark_out_of_scope(db: sqlite_utils.Database, series: SeriesRef, reason: str) -> bool:
    """Called by the job pipeline when a selected series cannot be analysed (e.g. T11-L2 not in view).

    Returns False (and changes nothing) when the series has been reopened by
    new content since ``series`` was handed over.
    """
    if not reason:
        raise ValueError("an out-of-scope series needs a reason")
    return _transition(db, series, SeriesState.SELECTED, SeriesState.OUT_OF_SCOPE, reason, {})


def mark_revision_out_of_scope(db: sqlite_utils.Database, series_instance_uid: str, revision: int | None,
                               reason: str) -> bool:
    """:func:`mark_out_of_scope` for the revision a job analysed (None: whatever revision is current).

    Returns False when the series has been reopened since that revision: the
    new content is decided, and analysed, on its own.
    """
    series = series_ref(db, series_instance_uid)
    if series is None:
        return False
    if revision is not None:
        series = replace(series, revision=revision)
    return mark_out_of_scope(db, series, reason)


def is_current_revision(db: sqlite_utils.Database, series_instance_uid: str, revision: int | None) -> bool:
    """False when the series has been reopened since ``revision`` (None, or a series not indexed: True)."""
    if revision is None:
        return True
    row = db.execute("SELECT revision FROM series WHERE series_instance_uid = ?", [series_instance_uid]).fetchone()
    return row is None or row[0] == revision


def acknowledge_selected(db: sqlite_utils.Database, series: SeriesRef, now: float | None = None) -> bool:
    """The job pipeline confirms it took over a selected series (this revision)."""
    with transaction(db):
        cursor = db.execute(
            "UPDATE series SET handed_off_at = ? WHERE series_instance_uid = ? AND revision = ? AND state = ?",
            [time.time() if now is None else now, series.series_instance_uid, series.revision,
             SeriesState.SELECTED.value])
    return cursor.rowcount == 1


def study_series(db: sqlite_utils.Database, study_instance_uid: str) -> list[SeriesRef]:
    """Every series of a study, oldest first."""
    rows = db.query("SELECT * FROM series WHERE study_instance_uid = ? ORDER BY first_received_at",
                    [study_instance_uid])
    return [_ref(row) for row in rows]


def studies_awaiting_choice(db: sqlite_utils.Database) -> list[str]:
    """Studies with a selected series not yet handed off, or whose chosen series turned out out of scope.

    The second kind has series left ``not_chosen`` and none ``selected``: the
    next-best of them is to be analysed (:mod:`scpnode.pipeline.study_choice`).
    """
    rows = db.execute(
        "SELECT DISTINCT study_instance_uid FROM series s WHERE (state = ? AND handed_off_at IS NULL)"
        " OR (state = ? AND NOT EXISTS (SELECT 1 FROM series o WHERE o.study_instance_uid = s.study_instance_uid"
        "  AND o.state = ?)) ORDER BY study_instance_uid",
        [SeriesState.SELECTED.value, SeriesState.NOT_CHOSEN.value, SeriesState.SELECTED.value]).fetchall()
    return [row[0] for row in rows]


def recent_choices(db: sqlite_utils.Database, limit: int = 20) -> list[list[SeriesRef]]:
    """The selected and not-chosen series of the latest studies where one series was chosen from several."""
    studies = [row[0] for row in db.execute(
        "SELECT study_instance_uid FROM series WHERE state = ? GROUP BY study_instance_uid"
        " ORDER BY max(decided_at) DESC LIMIT ?", [SeriesState.NOT_CHOSEN.value, limit]).fetchall()]
    return [[s for s in study_series(db, uid) if s.state in (SeriesState.SELECTED, SeriesState.NOT_CHOSEN)]
            for uid in studies]


def mark_not_chosen(db: sqlite_utils.Database, series: SeriesRef, reason: str) -> bool:
    """Another series of the study is analysed instead of ``series`` (this revision); False if it changed since."""
    if not reason:
        raise ValueError("a series not chosen needs a reason")
    with transaction(db):
        cursor = db.execute(
            "UPDATE series SET state = ?, reason = ? WHERE series_instance_uid = ? AND revision = ? AND state IN (?, ?)",
            [SeriesState.NOT_CHOSEN.value, reason, series.series_instance_uid, series.revision,
             SeriesState.SELECTED.value, SeriesState.NOT_CHOSEN.value])
    return cursor.rowcount == 1


def choose_again(db: sqlite_utils.Database, series: SeriesRef) -> bool:
    """A series left ``not_chosen`` is now the one to analyse: ``selected``, to be handed off."""
    with transaction(db):
        cursor = db.execute(
            "UPDATE series SET state = ?, reason = NULL, handed_off_at = NULL"
            " WHERE series_instance_uid = ? AND revision = ? AND state = ?",
            [SeriesState.SELECTED.value, series.series_instance_uid, series.revision, SeriesState.NOT_CHOSEN.value])
    return cursor.rowcount == 1


def selected_not_handed_off(db: sqlite_utils.Database) -> list[SeriesRef]:
    """Selected series the pipeline has not acknowledged (e.g. the node stopped in between)."""
    rows = db.query("SELECT * FROM series WHERE state = ? AND handed_off_at IS NULL ORDER BY decided_at",
                    [SeriesState.SELECTED.value])
    return [_ref(row) for row in rows]


def open_series_count(db: sqlite_utils.Database) -> int:
    """Series still receiving or complete and waiting for their selection."""
    return db.execute("SELECT count(*) FROM series WHERE state IN (?, ?)",
                      [SeriesState.RECEIVED.value, SeriesState.COMPLETE.value]).fetchone()[0]


def stored_bytes(db: sqlite_utils.Database) -> int:
    """Bytes of received files on disk, over every series."""
    return int(db.execute("SELECT coalesce(sum(total_bytes), 0) FROM series").fetchone()[0])


PEERS_LAST_SEEN = """
WITH RECURSIVE peers(ae_title) AS (
    SELECT min(calling_ae_title) FROM instances
    UNION ALL
    SELECT (SELECT min(calling_ae_title) FROM instances WHERE calling_ae_title > ae_title)
    FROM peers WHERE ae_title IS NOT NULL
)
SELECT ae_title, (SELECT max(received_at) FROM instances WHERE calling_ae_title = ae_title)
FROM peers WHERE ae_title IS NOT NULL
"""


def peers_last_seen(db: sqlite_utils.Database) -> dict[str, float]:
    """Each calling AE title that sent an instance, with when it sent its latest one (epoch seconds).

    ``GROUP BY calling_ae_title`` would read every entry of the index
    ``instances_peer_received`` (90 ms for a million instances, 420 ms without
    the index). This loose index scan, written as a recursive common table
    expression (https://www.sqlite.org/lang_with.html), seeks from one AE title
    to the next and reads one index entry per peer (0.3 ms), so the admin page
    stays fast as the store grows. (SQLite's own skip-scan would need
    ``ANALYZE`` statistics.)
    """
    return dict(db.execute(PEERS_LAST_SEEN).fetchall())


_HAS_IMAGES = ("EXISTS (SELECT 1 FROM instances i WHERE i.series_instance_uid = s.series_instance_uid"
               " AND i.purged_at IS NULL)")
"""A series with received images not yet purged (a series reopened after a purge has some again)."""


def series_with_images(db: sqlite_utils.Database, states: Iterable[SeriesState],
                       received_before: float | None = None) -> list[SeriesRef]:
    """Series in one of ``states`` that still have received images on disk, optionally only those whose
    last instance arrived before ``received_before`` (epoch seconds)."""
    states = [state.value for state in states]
    sql = f"SELECT * FROM series s WHERE {_HAS_IMAGES} AND state IN ({', '.join('?' for _ in states)})"
    params: list[Any] = list(states)
    if received_before is not None:
        sql += " AND last_received_at <= ?"
        params.append(received_before)
    return [_ref(row) for row in db.query(sql + " ORDER BY last_received_at", params)]


@dataclass(frozen=True)
class PurgeMarks:
    """What :func:`purge_received` removed and marked."""

    files_removed: int
    bytes_freed: int
    complete: bool
    """Every received file of the series is gone and the series is marked purged."""


def purge_received(db: sqlite_utils.Database, series: SeriesRef, remove_file: Callable[[Path, float], int | None],
                   now: float | None = None) -> PurgeMarks | None:
    """Remove a series' received files with ``remove_file`` and mark what went, in one write transaction.

    ``remove_file(path, received_at)`` deletes one file and returns its size
    (0 when already gone), or None when it must stay (a resend is replacing
    it); such an instance stays unmarked and so does the series. Nothing is
    removed (and None returned) when the series has been reopened since
    ``series`` was read, or is receiving again. A fully purged series counts 0
    ``total_bytes``; each instance row keeps its size.
    """
    now = time.time() if now is None else now
    with transaction(db):
        unchanged = db.execute(
            "SELECT 1 FROM series WHERE series_instance_uid = ? AND revision = ? AND state NOT IN (?, ?)",
            [series.series_instance_uid, series.revision, SeriesState.RECEIVED.value,
             SeriesState.COMPLETE.value]).fetchone()
        if unchanged is None:
            return None
        rows = db.execute("SELECT sop_instance_uid, path, received_at FROM instances"
                          " WHERE series_instance_uid = ? AND purged_at IS NULL",
                          [series.series_instance_uid]).fetchall()
        purged, removed, freed = [], 0, 0
        for sop_uid, path, received_at in rows:
            size = remove_file(Path(path), received_at)
            if size is None:
                continue
            purged.append(sop_uid)
            removed += size > 0
            freed += size
        db.conn.executemany("UPDATE instances SET purged_at = ? WHERE sop_instance_uid = ?",
                            [(now, uid) for uid in purged])
        complete = len(purged) == len(rows)
        if complete:
            db.execute("UPDATE series SET purged_at = ?, total_bytes = 0 WHERE series_instance_uid = ?",
                       [now, series.series_instance_uid])
    return PurgeMarks(removed, freed, complete)


def _transition(db: sqlite_utils.Database, series: SeriesRef, expected: SeriesState, new: SeriesState,
                reason: str | None, extra: dict[str, Any]) -> bool:
    assignments = "".join(f", {name} = ?" for name in extra)
    with transaction(db):
        cursor = db.execute(
            f"UPDATE series SET state = ?, reason = ?{assignments}"
            " WHERE series_instance_uid = ? AND revision = ? AND state = ?",
            [new.value, reason, *extra.values(), series.series_instance_uid, series.revision, expected.value])
    return cursor.rowcount == 1


def _ref(row: dict[str, Any]) -> SeriesRef:
    return SeriesRef(
        study_instance_uid=row["study_instance_uid"], series_instance_uid=row["series_instance_uid"],
        folder=Path(row["folder"]), instance_count=row["instance_count"], modality=row["modality"] or "",
        series_description=row["series_description"] or "", state=SeriesState(row["state"]),
        revision=row["revision"], reason=row["reason"], body_part_examined=row["body_part_examined"] or "",
        first_received_at=row["first_received_at"], last_received_at=row["last_received_at"],
        handed_off_at=row["handed_off_at"], total_bytes=row["total_bytes"],
    )
