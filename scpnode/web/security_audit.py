"""The security audit log: login lockouts and unlocks, session-key rotations, with time, user name and client.

Review actions on studies have their own audit trail (``worklist_audit``, one
per worklist entry); these events concern the UI as a whole, so they live in
the ``security_audit`` table of :mod:`scpnode.web.tables`. No patient data
is ever written here.
"""

from __future__ import annotations

from dataclasses import dataclass
import time

import sqlite_utils

LOGIN_LOCKED_OUT = "login_locked_out"
LOGIN_UNLOCKED = "login_unlocked"
SESSION_KEY_ROTATED = "session_key_rotated"


@dataclass(frozen=True)
class SecurityEvent:
    at: float
    """Epoch seconds (:mod:`scpnode.timestamps`)."""
    event: str
    username: str
    client: str
    detail: str


def record(db: sqlite_utils.Database, event: str, *, username: str = "", client: str = "", detail: str = "",
           at: float | None = None) -> None:
    """Append one event (inside the caller's transaction, if there is one)."""
    db.execute("insert into security_audit (at, event, username, client, detail) values (?, ?, ?, ?, ?)",
               [time.time() if at is None else at, event, username, client, detail])


def recent(db: sqlite_utils.Database, limit: int = 50) -> list[SecurityEvent]:
    """The latest events, newest first."""
    rows = db.execute("select at, event, username, client, detail from security_audit order by id desc limit ?",
                      [limit]).fetchall()
    return [SecurityEvent(*row) for row in rows]
