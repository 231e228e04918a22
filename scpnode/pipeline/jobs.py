"""Inference jobs: one per selected, complete series, with states that survive a restart.

States (mercure-style, explicit and persistent)::

    queued -> running -> done
                      -> held           (level labels need a person; nothing was sent)
                      -> out_of_scope   (T11-L2 not completely in view, with the reason)
                      -> failed         (stage and error recorded; retry puts it back to queued)
    held | done -> queued               (a person confirmed or corrected the level labels)
    held -> out_of_scope                (a person found the segmentation wrong: not scored)

A person's confirmation (:meth:`JobQueue.confirm_levels`) records who it was and
by how many levels every label moves from the backend's labels, and raises the
job's ``revision``: revision 0 is the automatic result, each confirmation
makes the next revision from the stored segmentation.

A job row records when each state was entered and how long each pipeline
stage took (``stage_seconds``, JSON). A job that was ``running`` when the node
died (kill -9 included) is put back to ``queued`` on start by
:meth:`JobQueue.recover_interrupted`; the pipeline is written so that running a
job again does not send its results twice (see :mod:`scpnode.pipeline.analysis`).

A job analyses one :class:`AnalysisTarget`: a revision of a series of a
study, recorded at enqueue and carried to the result (the worker marks that
revision out of scope, not whatever the series is now). Enqueueing the same
target again returns the existing job, so a resend of identical instances
does not process the series twice; changed content is a new series revision
and makes a new job.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from scpnode.db import migrate
from scpnode.timestamps import text_columns_to_epoch

QUEUED, RUNNING, DONE, HELD, OUT_OF_SCOPE, FAILED = "queued", "running", "done", "held", "out_of_scope", "failed"
STATES = (QUEUED, RUNNING, DONE, HELD, OUT_OF_SCOPE, FAILED)
FINAL_STATES = (DONE, HELD, OUT_OF_SCOPE, FAILED)
CONFIRMABLE_STATES = (HELD, DONE)
"""States in which a person may confirm or correct a job's level labels."""


def revision_dir(job_dir: Path, revision: int) -> Path:
    """Where one revision of a job writes its results: the job folder, then ``revision-<n>`` in it."""
    return job_dir if revision == 0 else job_dir / f"revision-{revision}"


@dataclass(frozen=True)
class AnalysisTarget:
    """What a job analyses: one revision of one series of a study."""

    study_uid: str
    series_uid: str
    series_dir: Path
    """The folder holding the series' received files."""
    series_revision: int | None
    """The revision of the series (:attr:`scpnode.storage.index.SeriesRef.revision`); None only for
    jobs queued before it was recorded."""

    @property
    def content_signature(self) -> str:
        """What makes two enqueued targets the same job."""
        return f"revision-{self.series_revision}"


@dataclass
class Job:
    """One row of the ``jobs`` table."""

    id: int
    study_uid: str
    series_uid: str
    series_dir: str
    content_signature: str
    state: str
    attempts: int = 0
    stage: str = ""
    error: str = ""
    reason: str = ""
    result_dir: str = ""
    created_at: float = 0.0
    """Epoch seconds, like every time of the job (:mod:`scpnode.timestamps`)."""
    started_at: float | None = None
    finished_at: float | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    revision: int = 0
    """0: the backend's labels; n > 0: the n-th confirmation by a person."""
    level_shift: int = 0
    """Levels every label moves caudally from the backend's labels (negative: cranially)."""
    confirmed_by: str = ""
    """Who confirmed the labels of the current revision (empty for revision 0)."""
    series_revision: int | None = None
    """The revision of the series (:attr:`scpnode.storage.index.SeriesRef.revision`) this job analyses; None for
    jobs queued before it was recorded."""

    @property
    def target(self) -> AnalysisTarget:
        """What this job analyses."""
        return AnalysisTarget(self.study_uid, self.series_uid, Path(self.series_dir), self.series_revision)

    @property
    def output_dir(self) -> Path:
        """Where the current revision's results are (valid once the job has run)."""
        return revision_dir(Path(self.result_dir), self.revision)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Job":
        values = dict(row)
        values["stage_seconds"] = json.loads(values.get("stage_seconds") or "{}")
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


class JobQueue:
    """The ``jobs`` table and its state transitions.

    Every transition is one SQL statement guarded by the expected current
    state, so two dispatchers (or a dispatcher and the web UI's retry) can
    never both move the same job.
    """

    def __init__(self, db: sqlite_utils.Database):
        self.db = db
        self._lock = threading.Lock()

    def enqueue(self, target: AnalysisTarget) -> Job:
        """Queue a job for a series revision, or return the existing one for the same target."""
        with self._lock:
            existing = self._query(
                "select * from jobs where series_uid = ? and content_signature = ? order by id desc limit 1",
                [target.series_uid, target.content_signature],
            )
            if existing:
                return existing[0]
            table = self.db["jobs"].insert({
                "study_uid": target.study_uid, "series_uid": target.series_uid, "series_dir": str(target.series_dir),
                "content_signature": target.content_signature, "state": QUEUED, "attempts": 0,
                "stage": "", "error": "", "reason": "", "result_dir": "",
                "created_at": time.time(), "stage_seconds": "{}", "series_revision": target.series_revision,
            })
            return self.get(table.last_pk)

    def get(self, job_id: int) -> Job:
        rows = self._query("select * from jobs where id = ?", [job_id])
        if not rows:
            raise KeyError(f"no job with id {job_id}")
        return rows[0]

    def claim_next(self) -> Job | None:
        """Move the oldest queued job to running and return it (None when none is queued)."""
        with self._lock, self.db.conn:
            row = self.db.execute("select id from jobs where state = ? order by id limit 1", [QUEUED]).fetchone()
            if row is None:
                return None
            self.db.execute(
                "update jobs set state = ?, attempts = attempts + 1, started_at = ?, finished_at = null, "
                "error = '', reason = '', stage = '' where id = ? and state = ?",
                [RUNNING, time.time(), row[0], QUEUED],
            )
        return self.get(row[0])

    def record_stage(self, job_id: int, stage: str, seconds: float | None = None) -> None:
        """Note that ``stage`` started (seconds None) or took ``seconds``."""
        with self._lock, self.db.conn:
            if seconds is None:
                self.db.execute("update jobs set stage = ? where id = ?", [stage, job_id])
                return
            current = self.db.execute("select stage_seconds from jobs where id = ?", [job_id]).fetchone()
            durations = json.loads(current[0] or "{}") if current else {}
            durations[stage] = round(seconds, 3)
            self.db.execute("update jobs set stage_seconds = ? where id = ?", [json.dumps(durations), job_id])

    def finish(self, job_id: int, state: str, *, reason: str = "", error: str = "", result_dir: str = "") -> None:
        """Move a running job to a final state."""
        if state not in FINAL_STATES:
            raise ValueError(f"{state!r} is not a final job state")
        with self._lock, self.db.conn:
            self.db.execute(
                "update jobs set state = ?, reason = ?, error = ?, result_dir = coalesce(nullif(?, ''), result_dir), "
                "finished_at = ? where id = ? and state = ?",
                [state, reason, error, result_dir, time.time(), job_id, RUNNING],
            )

    def retry(self, job_id: int) -> Job:
        """Put a failed job back in the queue (CLI ``scpnode jobs retry``, web UI).

        Raises:
            KeyError: no such job.
            ValueError: the job is not failed.
        """
        job = self.get(job_id)
        if job.state != FAILED:
            raise ValueError(f"job {job_id} is {job.state}; only failed jobs can be retried")
        with self._lock, self.db.conn:
            self.db.execute("update jobs set state = ?, error = '' where id = ? and state = ?",
                            [QUEUED, job_id, FAILED])
        return self.get(job_id)

    def confirm_levels(self, job_id: int, level_shift: int, user: str) -> Job:
        """Queue the next revision of a held or done job, with labels confirmed by ``user``.

        ``level_shift`` counts from the backend's labels, not from the current revision.

        Raises:
            KeyError: no such job.
            ValueError: the job is not held or done (it may be running now), or no user is named.
        """
        if not user.strip():
            raise ValueError("a confirmation needs the name of the person who gave it")
        self.get(job_id)  # KeyError for an unknown job
        with self._lock, self.db.conn:
            cursor = self.db.execute(
                "update jobs set state = ?, revision = revision + 1, level_shift = ?, confirmed_by = ?, "
                f"error = '', reason = '' where id = ? and state in ({', '.join('?' * len(CONFIRMABLE_STATES))})",
                [QUEUED, level_shift, user.strip(), job_id, *CONFIRMABLE_STATES],
            )
        if cursor.rowcount == 0:
            raise ValueError(f"job {job_id} is {self.get(job_id).state}; only a held or done job's levels "
                             "can be confirmed")
        return self.get(job_id)

    def reject(self, job_id: int, reason: str) -> Job:
        """A held job whose segmentation a person found wrong ends out of scope with ``reason``.

        Raises:
            KeyError: no such job.
            ValueError: the job is not held (results already sent cannot be taken back here).
        """
        self.get(job_id)
        with self._lock, self.db.conn:
            cursor = self.db.execute("update jobs set state = ?, reason = ?, finished_at = ? where id = ? and state = ?",
                                     [OUT_OF_SCOPE, reason, time.time(), job_id, HELD])
        if cursor.rowcount == 0:
            raise ValueError(f"job {job_id} is {self.get(job_id).state}; only a held job can be rejected")
        return self.get(job_id)

    def earlier_in_study(self, study_uid: str, before_id: int) -> list[Job]:
        """Jobs of the same study queued before job ``before_id``, newest first (other series of the study)."""
        return self._query("select * from jobs where study_uid = ? and id < ? order by id desc", [study_uid, before_id])

    def latest_for_series(self, series_uid: str) -> Job | None:
        """The newest job of a series, or None."""
        found = self._query("select * from jobs where series_uid = ? order by id desc limit 1", [series_uid])
        return found[0] if found else None

    def recover_interrupted(self) -> list[int]:
        """On start: jobs left running by a dead node go back to the queue."""
        with self._lock, self.db.conn:
            ids = [r[0] for r in self.db.execute("select id from jobs where state = ?", [RUNNING]).fetchall()]
            self.db.execute("update jobs set state = ? where state = ?", [QUEUED, RUNNING])
        return ids

    def counts(self) -> dict[str, int]:
        """Number of jobs per state (every state present, zero when none)."""
        found = dict(self.db.execute("select state, count(*) from jobs group by state").fetchall())
        return {state: found.get(state, 0) for state in STATES}

    def recent(self, limit: int = 20, state: str | None = None) -> list[Job]:
        if state is None:
            return self._query("select * from jobs order by id desc limit ?", [limit])
        return self._query("select * from jobs where state = ? order by id desc limit ?", [state, limit])

    def _query(self, sql: str, params: list[Any]) -> list[Job]:
        return [Job.from_row(row) for row in self.db.query(sql, params)]


MIGRATIONS = ["""
    CREATE TABLE IF NOT EXISTS jobs (
        id INTEGER PRIMARY KEY,
        study_uid TEXT NOT NULL,
        series_uid TEXT NOT NULL,
        series_dir TEXT,
        content_signature TEXT,
        state TEXT NOT NULL,
        attempts INTEGER,
        stage TEXT,
        error TEXT,
        reason TEXT,
        result_dir TEXT,
        created_at TEXT,
        started_at TEXT,
        finished_at TEXT,
        stage_seconds TEXT
    );
    CREATE INDEX IF NOT EXISTS idx_jobs_state ON jobs (state);
    CREATE INDEX IF NOT EXISTS idx_jobs_series_content ON jobs (series_uid, content_signature);
""", """
    ALTER TABLE jobs ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN level_shift INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN confirmed_by TEXT NOT NULL DEFAULT '';
""", """
    ALTER TABLE jobs ADD COLUMN series_revision INTEGER;
""", lambda db: text_columns_to_epoch(db, "jobs", {"created_at": False, "started_at": False, "finished_at": False})]
"""Schema steps of the ``jobs`` table (:func:`scpnode.db.migrate`); append, never edit."""


def ensure_schema(db: sqlite_utils.Database) -> None:
    """Create or upgrade the ``jobs`` table."""
    migrate(db, "jobs", MIGRATIONS)
