"""The outbox: DICOM objects waiting to be sent to a destination, in SQLite.

An item is one file and one ``[[destinations]]`` name. Its state is
``pending`` (to be sent at ``next_try_at``), ``sent``, or ``failed`` (the
destination refused it for good; ``last_error`` says why, and :func:`retry`
puts it back). Nothing leaves the table, so failures stay visible and a
restart resumes exactly where the node stopped. The sender
(:mod:`scpnode.delivery.sender`) does the sending.

Objects given as data sets are written first to ``<database folder>/outbox/``
(write-then-rename, like received instances), so an item always points at a
durable file.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import pydicom
import sqlite_utils
from pydicom.dataset import Dataset

from scpnode.db import database_path, migrate, transaction
from scpnode.storage.store import InstanceStore, is_valid_uid


class OutboxState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True)
class OutboxItem:
    """One object for one destination, and how sending it went so far."""

    id: int
    path: Path
    destination: str
    sop_instance_uid: str
    sop_class_uid: str
    state: OutboxState
    attempts: int
    """Sending attempts made (every failure counts)."""
    refusals: int
    """Attempts the destination answered with a failure status (vs. not reachable)."""
    next_try_at: float
    last_error: str | None
    created_at: float
    sent_at: float | None
    job_id: int | None = None
    """The inference job whose result this is (None: queued by hand, or before jobs were recorded)."""


MIGRATIONS = [
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        path TEXT NOT NULL,
        destination TEXT NOT NULL,
        sop_instance_uid TEXT NOT NULL,
        sop_class_uid TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        refusals INTEGER NOT NULL DEFAULT 0,
        next_try_at REAL NOT NULL,
        last_error TEXT,
        created_at REAL NOT NULL,
        sent_at REAL
    );
    CREATE INDEX outbox_due ON outbox(state, next_try_at);
    CREATE UNIQUE INDEX outbox_one_pending ON outbox(sop_instance_uid, destination) WHERE state = 'pending';
    """,
    lambda db: _add_job_ids(db),
]
"""Schema steps of the ``outbox`` component (:func:`scpnode.db.migrate`); append, never edit."""


def _add_job_ids(db: sqlite_utils.Database) -> None:
    """Each item names the job whose result it is. Items queued before this step get theirs from the
    job whose results folder (or one of its ``revision-N`` folders) holds the file."""
    db.execute("ALTER TABLE outbox ADD COLUMN job_id INTEGER")
    db.execute("CREATE INDEX outbox_job ON outbox(job_id)")
    if "jobs" not in db.table_names():
        return
    folders = {}
    for job_id, result_dir in db.execute("SELECT id, result_dir FROM jobs WHERE result_dir != ''"):
        folders[Path(result_dir).resolve()] = job_id
    for item_id, path in db.execute("SELECT id, path FROM outbox").fetchall():
        parent = Path(path).resolve().parent
        job_id = folders.get(parent) or (folders.get(parent.parent) if parent.name.startswith("revision-") else None)
        if job_id is not None:
            db.execute("UPDATE outbox SET job_id = ? WHERE id = ?", [job_id, item_id])


def create_tables(db: sqlite_utils.Database) -> None:
    """Create or migrate the outbox table."""
    migrate(db, "outbox", MIGRATIONS)


def spool_folder(db: sqlite_utils.Database) -> Path:
    """Where data sets handed to :func:`enqueue` are written."""
    return database_path(db).parent / "outbox"


def enqueue(db: sqlite_utils.Database, path_or_dataset: str | Path | Dataset, destination_name: str,
            now: float | None = None, *, written: Dataset | None = None, job_id: int | None = None) -> int:
    """Queue a DICOM file (or data set) for ``destination_name``; return the item id.

    A data set is first written durably to :func:`spool_folder`. When the same
    SOP instance is already pending for that destination, the pending item is
    pointed at the new file instead of adding a second one. ``written``: the
    data set the caller has just written to the file, so that it is not read
    back for its UIDs. ``job_id``: the inference job whose result it is.

    Raises:
        ValueError: the object has no usable SOP Class/Instance UID, or the file is not DICOM.
    """
    if isinstance(path_or_dataset, Dataset):
        path = _spool(db, path_or_dataset)
        dataset = path_or_dataset
    else:
        path = Path(path_or_dataset).resolve()
        try:
            dataset = written if written is not None else pydicom.dcmread(path, stop_before_pixels=True)
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            raise ValueError(f"cannot queue {path}: {exc}") from None
    sop_instance_uid = str(dataset.get("SOPInstanceUID", "") or "")
    sop_class_uid = str(dataset.get("SOPClassUID", "") or "")
    if not is_valid_uid(sop_instance_uid) or not is_valid_uid(sop_class_uid):
        raise ValueError(f"cannot queue {path}: SOP Class/Instance UID missing or invalid")
    now = time.time() if now is None else now
    with transaction(db):
        existing = db.execute(
            "SELECT id FROM outbox WHERE sop_instance_uid = ? AND destination = ? AND state = ?",
            [sop_instance_uid, destination_name, OutboxState.PENDING.value]).fetchone()
        if existing:
            db.execute("UPDATE outbox SET path = ?, job_id = ? WHERE id = ?", [str(path), job_id, existing[0]])
            return existing[0]
        # a plain statement: sqlite-utils' insert() commits on its own, in the middle of this transaction
        cursor = db.execute(
            "INSERT INTO outbox (path, destination, sop_instance_uid, sop_class_uid, state, next_try_at, created_at,"
            " job_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [str(path), destination_name, sop_instance_uid, sop_class_uid, OutboxState.PENDING.value, now, now,
             job_id])
        return cursor.lastrowid


def _spool(db: sqlite_utils.Database, dataset: Dataset) -> Path:
    uid = str(dataset.get("SOPInstanceUID", "") or "")
    if not is_valid_uid(uid):
        raise ValueError("cannot queue a data set without a valid SOP Instance UID")
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    path = spool_folder(db) / f"{uid}.dcm"
    InstanceStore(spool_folder(db)).write(path, buffer.getvalue())
    return path.resolve()


def due_items(db: sqlite_utils.Database, now: float | None = None, limit: int = 100) -> list[OutboxItem]:
    """Pending items whose next try is due, oldest first."""
    now = time.time() if now is None else now
    rows = db.query("SELECT * FROM outbox WHERE state = ? AND next_try_at <= ? ORDER BY next_try_at, id LIMIT ?",
                    [OutboxState.PENDING.value, now, limit])
    return [_item(row) for row in rows]


def items(db: sqlite_utils.Database, state: OutboxState | None = None) -> list[OutboxItem]:
    """All items (or those in one state), oldest first."""
    if state is None:
        rows = db.query("SELECT * FROM outbox ORDER BY id")
    else:
        rows = db.query("SELECT * FROM outbox WHERE state = ? ORDER BY id", [state.value])
    return [_item(row) for row in rows]


def instance_items(db: sqlite_utils.Database, sop_instance_uid: str) -> list[OutboxItem]:
    """The items of one SOP instance (one per destination it was queued for), oldest first."""
    rows = db.query("SELECT * FROM outbox WHERE sop_instance_uid = ? ORDER BY id", [sop_instance_uid])
    return [_item(row) for row in rows]


def job_items(db: sqlite_utils.Database, job_id: int) -> list[OutboxItem]:
    """The items holding one job's results (every revision, every destination), oldest first."""
    return [_item(row) for row in db.query("SELECT * FROM outbox WHERE job_id = ? ORDER BY id", [job_id])]


def state_counts(db: sqlite_utils.Database) -> dict[str, int]:
    """Number of items per state (every state present, zero when none)."""
    found = dict(db.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())
    return {state.value: found.get(state.value, 0) for state in OutboxState}


def oldest_pending_since(db: sqlite_utils.Database) -> float | None:
    """When the oldest item still pending was queued (epoch seconds), or None."""
    return db.execute("SELECT min(created_at) FROM outbox WHERE state = ?",
                      [OutboxState.PENDING.value]).fetchone()[0]


def mark_sent(db: sqlite_utils.Database, item_id: int, now: float | None = None) -> None:
    with transaction(db):
        db.execute("UPDATE outbox SET state = ?, sent_at = ?, attempts = attempts + 1, last_error = NULL"
                   " WHERE id = ?", [OutboxState.SENT.value, time.time() if now is None else now, item_id])


def mark_attempt_failed(db: sqlite_utils.Database, item_id: int, error: str, next_try_at: float,
                        refused: bool, give_up: bool) -> None:
    """Record a failed attempt: retry at ``next_try_at``, or ``failed`` when ``give_up``."""
    state = OutboxState.FAILED if give_up else OutboxState.PENDING
    with transaction(db):
        db.execute("UPDATE outbox SET state = ?, attempts = attempts + 1, refusals = refusals + ?,"
                   " last_error = ?, next_try_at = ? WHERE id = ?",
                   [state.value, int(refused), error, next_try_at, item_id])


def retry(db: sqlite_utils.Database, item_id: int, now: float | None = None) -> bool:
    """Put a failed item back in the queue (for a person, e.g. from the web UI)."""
    with transaction(db):
        cursor = db.execute(
            "UPDATE outbox SET state = ?, refusals = 0, next_try_at = ? WHERE id = ? AND state = ?"
            " AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.state = ? AND o.sop_instance_uid = outbox.sop_instance_uid"
            " AND o.destination = outbox.destination)",
            [OutboxState.PENDING.value, time.time() if now is None else now, item_id, OutboxState.FAILED.value,
             OutboxState.PENDING.value])
    return cursor.rowcount == 1


def _item(row: dict[str, Any]) -> OutboxItem:
    return OutboxItem(
        id=row["id"], path=Path(row["path"]), destination=row["destination"],
        sop_instance_uid=row["sop_instance_uid"], sop_class_uid=row["sop_class_uid"],
        state=OutboxState(row["state"]), attempts=row["attempts"], refusals=row["refusals"],
        next_try_at=row["next_try_at"], last_error=row["last_error"], created_at=row["created_at"],
        sent_at=row["sent_at"], job_id=row["job_id"],
    )
