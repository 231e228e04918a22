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
worklist and the index rows; the index marks the instances and the series
with ``purged_at`` (:func:`scpnode.storage.index.purge_received`) (on the series: the last purge; a series reopened by new
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

from scpnode.config import RetentionSettings
from scpnode.delivery import outbox
from scpnode.logs import log_event, uid_ref
from scpnode.pipeline.jobs import DONE, JobQueue
from scpnode.storage import index
from scpnode.storage.index import SeriesRef, SeriesState

log = logging.getLogger(__name__)

SECONDS_PER_DAY = 86400.0

DELIVERED = "delivered"
"""Rule name: results of the series were sent to every destination."""
UNPROCESSED = "unprocessed"
"""Rule name: the series was rejected or out of scope."""


@dataclass(frozen=True)
class PurgeCandidate:
    """A series whose received images a retention rule says may go."""

    series: SeriesRef
    rule: str
    """:data:`DELIVERED` or :data:`UNPROCESSED`."""
    since: float
    """When the rule's clock started (last delivery, or last instance received), epoch seconds."""

    @property
    def series_instance_uid(self) -> str:
        return self.series.series_instance_uid


@dataclass(frozen=True)
class PurgeOutcome:
    """What purging one series did."""

    candidate: PurgeCandidate
    files_removed: int
    bytes_freed: int
    complete: bool
    """False when a file was being replaced by a resend, or the series was reopened: it stays unmarked
    for the next run."""


def purge_candidates(db: sqlite_utils.Database, retention: RetentionSettings,
                     now: float | None = None) -> list[PurgeCandidate]:
    """The series whose images the retention rules allow to delete now, oldest first."""
    now = time.time() if now is None else now
    found: list[PurgeCandidate] = []
    if retention.purge_images_after_days is not None:
        cutoff = now - retention.purge_images_after_days * SECONDS_PER_DAY
        found += [c for c in _delivered_series(db) if c.since <= cutoff]
    if retention.purge_unprocessed_after_days is not None:
        cutoff = now - retention.purge_unprocessed_after_days * SECONDS_PER_DAY
        unprocessed = (SeriesState.REJECTED, SeriesState.OUT_OF_SCOPE, SeriesState.NOT_CHOSEN)
        found += [PurgeCandidate(series, UNPROCESSED, series.last_received_at)
                  for series in index.series_with_images(db, unprocessed, received_before=cutoff)]
    return sorted(found, key=lambda c: c.since)


def _delivered_series(db: sqlite_utils.Database) -> list[PurgeCandidate]:
    """Selected series whose latest job is done and whose every result item was sent."""
    queue = JobQueue(db)
    candidates = []
    for series in index.series_with_images(db, [SeriesState.SELECTED]):
        job = queue.latest_for_series(series.series_instance_uid)
        if job is None or job.state != DONE:
            continue
        results = outbox.job_items(db, job.id)
        if results and all(item.state == outbox.OutboxState.SENT for item in results):
            candidates.append(PurgeCandidate(series, DELIVERED, max(item.sent_at for item in results)))
    return candidates


def purge_series(db: sqlite_utils.Database, candidate: PurgeCandidate, now: float | None = None) -> PurgeOutcome:
    """Delete the received files of one candidate series; the index marks them purged.

    The index re-reads the series under the write lock: if it was reopened by
    new content since it was listed, nothing is deleted.
    """
    marks = index.purge_received(db, candidate.series, _remove_unless_newer, now)
    if marks is None:
        return PurgeOutcome(candidate, 0, 0, complete=False)
    if marks.complete:
        _remove_empty(candidate.series.folder)
        _remove_empty(candidate.series.folder.parent)
    log_event(log, "images_purged", series=uid_ref(candidate.series_instance_uid), rule=candidate.rule,
              files=marks.files_removed, bytes=marks.bytes_freed, complete=marks.complete)
    return PurgeOutcome(candidate, marks.files_removed, marks.bytes_freed, marks.complete)


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
