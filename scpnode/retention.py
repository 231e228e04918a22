"""Retention: delete received images that are no longer needed, keep everything derived from them.

Two rules, both off until ``[retention]`` sets them:

- ``purge_images_after_days``: a series whose latest job is ``done`` and whose
  results were *delivered* (every outbox item of the job's result files is
  ``sent``) loses its received images this many days after the last delivery.
  A node without ``[[destinations]]`` delivers nothing, so this rule never
  applies there.
- ``purge_unprocessed_after_days``: a series the selection rules rejected, or
  that the pipeline found out of scope, loses its images this many days after
  its last instance arrived.

What stays: the job's results folder (SEG, SR, report, measurements), the
worklist and the index rows; the instances and the series are marked with
``purged_at`` (on the series: the last purge; a series reopened by new
instances after a purge is purged again once its new results are delivered).
Series that are still open, queued, running, failed (a person may retry them)
or not yet delivered are never touched.

Purging is idempotent and safe to interrupt: files are deleted first, the rows
marked after, so a second run finishes what a crash left. A file modified
after its instance was indexed is a resend being received right now: it is
left alone and the series is not marked. Empty series and study folders are
removed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from scpnode import index, outbox
from scpnode.config import RetentionSettings
from scpnode.db import migrate, transaction
from scpnode.index import SeriesState
from scpnode.jobs import DONE, ensure_schema as ensure_jobs_schema
from scpnode.logs import log_event, uid_ref

log = logging.getLogger(__name__)

SECONDS_PER_DAY = 86400.0

DELIVERED = "delivered"
"""Rule name: results of the series were sent to every destination."""
UNPROCESSED = "unprocessed"
"""Rule name: the series was rejected or out of scope."""

MIGRATIONS = [
    """
    ALTER TABLE instances ADD COLUMN purged_at REAL;
    ALTER TABLE series ADD COLUMN purged_at REAL;
    """,
]


def create_tables(db: sqlite_utils.Database) -> None:
    """Create or migrate the tables retention reads (index, jobs, outbox) and its ``purged_at`` columns."""
    index.create_tables(db)
    outbox.create_tables(db)
    ensure_jobs_schema(db)
    migrate(db, "retention", MIGRATIONS)


@dataclass(frozen=True)
class PurgeCandidate:
    """A series whose received images a retention rule says may go."""

    study_instance_uid: str
    series_instance_uid: str
    folder: Path
    instance_count: int
    total_bytes: int
    rule: str
    """:data:`DELIVERED` or :data:`UNPROCESSED`."""
    since: float
    """When the rule's clock started (last delivery, or last instance received), epoch seconds."""
    revision: int
    """The series revision the rule was checked on (a reopened series is left alone)."""


@dataclass(frozen=True)
class PurgeOutcome:
    """What purging one series did."""

    candidate: PurgeCandidate
    files_removed: int
    bytes_freed: int
    complete: bool
    """False when a file was being replaced by a resend; the series stays unmarked for the next run."""


def purge_candidates(db: sqlite_utils.Database, retention: RetentionSettings,
                     now: float | None = None) -> list[PurgeCandidate]:
    """The series whose images the retention rules allow to delete now, oldest first."""
    now = time.time() if now is None else now
    create_tables(db)
    found: list[PurgeCandidate] = []
    if retention.purge_images_after_days is not None:
        cutoff = now - retention.purge_images_after_days * SECONDS_PER_DAY
        found += [c for c in _delivered_series(db) if c.since <= cutoff]
    if retention.purge_unprocessed_after_days is not None:
        cutoff = now - retention.purge_unprocessed_after_days * SECONDS_PER_DAY
        found += _unprocessed_series(db, cutoff)
    return sorted(found, key=lambda c: c.since)


_HAS_IMAGES = ("EXISTS (SELECT 1 FROM instances i WHERE i.series_instance_uid = s.series_instance_uid"
               " AND i.purged_at IS NULL)")
"""A series with received images not yet purged (a series reopened after a purge has some again)."""


def _delivered_series(db: sqlite_utils.Database) -> list[PurgeCandidate]:
    rows = db.query(
        "SELECT s.*, j.result_dir FROM series s JOIN jobs j ON j.id ="
        " (SELECT max(id) FROM jobs WHERE series_uid = s.series_instance_uid)"
        f" WHERE {_HAS_IMAGES} AND s.state = ? AND j.state = ?",
        [SeriesState.SELECTED.value, DONE])
    results_by_folder: dict[Path, list[outbox.OutboxItem]] = {}
    for item in outbox.items(db):
        results_by_folder.setdefault(item.path.resolve().parent, []).append(item)
    candidates = []
    for row in rows:
        results = results_by_folder.get(Path(row["result_dir"]).resolve()) if row["result_dir"] else None
        if not results or any(item.state != outbox.OutboxState.SENT for item in results):
            continue
        candidates.append(_candidate(row, DELIVERED, max(item.sent_at for item in results)))
    return candidates


def _unprocessed_series(db: sqlite_utils.Database, cutoff: float) -> list[PurgeCandidate]:
    rows = db.query(
        f"SELECT * FROM series s WHERE {_HAS_IMAGES} AND state IN (?, ?, ?) AND last_received_at <= ?",
        [SeriesState.REJECTED.value, SeriesState.OUT_OF_SCOPE.value, SeriesState.NOT_CHOSEN.value, cutoff])
    return [_candidate(row, UNPROCESSED, row["last_received_at"]) for row in rows]


def _candidate(row: dict, rule: str, since: float) -> PurgeCandidate:
    return PurgeCandidate(
        study_instance_uid=row["study_instance_uid"], series_instance_uid=row["series_instance_uid"],
        folder=Path(row["folder"]), instance_count=row["instance_count"], total_bytes=row["total_bytes"],
        rule=rule, since=since, revision=row["revision"])


def purge_series(db: sqlite_utils.Database, candidate: PurgeCandidate, now: float | None = None) -> PurgeOutcome:
    """Delete the received files of one candidate series and mark its rows purged.

    The series is re-read under the write lock: if it was reopened by new
    content since it was listed, nothing is deleted. The series' ``total_bytes``
    becomes 0 (it counts the received bytes on disk); each instance row keeps its size.
    """
    now = time.time() if now is None else now
    removed = freed = 0
    complete = True
    with transaction(db):
        unchanged = db.execute(
            "SELECT 1 FROM series WHERE series_instance_uid = ? AND revision = ? AND state NOT IN (?, ?)", [candidate.series_instance_uid, candidate.revision,
                                         SeriesState.RECEIVED.value, SeriesState.COMPLETE.value]).fetchone()
        if unchanged is None:
            return PurgeOutcome(candidate, 0, 0, complete=False)
        rows = db.execute("SELECT sop_instance_uid, path, received_at FROM instances"
                          " WHERE series_instance_uid = ? AND purged_at IS NULL",
                          [candidate.series_instance_uid]).fetchall()
        purged = []
        for sop_uid, path, received_at in rows:
            size = _remove_unless_newer(Path(path), received_at)
            if size is None:
                complete = False
                continue
            purged.append(sop_uid)
            removed += size > 0
            freed += size
        db.conn.executemany("UPDATE instances SET purged_at = ? WHERE sop_instance_uid = ?",
                            [(now, uid) for uid in purged])
        if complete:
            db.execute("UPDATE series SET purged_at = ?, total_bytes = 0 WHERE series_instance_uid = ?",
                       [now, candidate.series_instance_uid])
    if complete:
        _remove_empty(candidate.folder)
        _remove_empty(candidate.folder.parent)
    log_event(log, "images_purged", series=uid_ref(candidate.series_instance_uid), rule=candidate.rule,
              files=removed, bytes=freed, complete=complete)
    return PurgeOutcome(candidate, removed, freed, complete)


def _remove_unless_newer(path: Path, indexed_at: float) -> int | None:
    """Delete ``path``; return its size (0 when already gone), or None when it changed after indexing."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return 0
    if stat.st_mtime > indexed_at + 1.0:  # written after it was indexed: a resend in flight
        return None
    path.unlink(missing_ok=True)
    return stat.st_size


def _remove_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty (other series, a file arriving) or already gone
        pass


def purge(db: sqlite_utils.Database, retention: RetentionSettings, now: float | None = None) -> list[PurgeOutcome]:
    """Apply the retention rules: purge every candidate series (see :func:`purge_candidates`)."""
    return [purge_series(db, candidate, now) for candidate in purge_candidates(db, retention, now)]
