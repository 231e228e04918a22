"""One convention for time in the node database, and how people see it.

Every ``*_at`` column of every table holds **epoch seconds** (UTC, SQLite
REAL): the clocks of the node (quiet periods, retries, retention, session
lifetimes) compare and subtract them, and a number sorts and indexes the same
everywhere. People see ISO 8601 UTC (:func:`iso_utc`), in the web UI, on the
command line and in exports. Documents the node writes for people or other
programs (``measurements.json``, DICOM dates) keep their own formats.
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlite_utils


def iso_utc(epoch_seconds: float | None, timespec: str = "seconds") -> str:
    """``2026-12-07T03:52:29+00:00`` for an epoch time; an empty string for None."""
    if epoch_seconds is None:
        return ""
    return datetime.fromtimestamp(epoch_seconds, timezone.utc).isoformat(timespec=timespec)


def text_columns_to_epoch(db: sqlite_utils.Database, table: str, columns: dict[str, bool]) -> None:
    """Migration step: ISO 8601 text timestamps in ``columns`` (name -> NOT NULL) become epoch seconds.

    SQLite cannot change a column's declared type, and a column declared TEXT
    would store a number as text; so each column is replaced in place: a REAL
    column is added, filled from the text (``julianday`` reads ISO 8601 with
    any UTC offset), the text column dropped and the new one given its name.
    A text that is no time becomes NULL (0 where the column is NOT NULL).
    """
    for column, not_null in columns.items():
        new = f"{column}_epoch"
        epoch = f"round((julianday({column}) - 2440587.5) * 86400.0, 3)"  # to the millisecond stored
        db.execute(f"ALTER TABLE {table} ADD COLUMN {new} REAL" + (" NOT NULL DEFAULT 0" if not_null else ""))
        db.execute(f"UPDATE {table} SET {new} = " + (f"coalesce({epoch}, 0)" if not_null else epoch))
        db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        db.execute(f"ALTER TABLE {table} RENAME COLUMN {new} TO {column}")
