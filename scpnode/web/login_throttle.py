"""Login rate limiting: too many failed logins for a user name, or from a client address, lock it out.

A sliding window (OWASP Authentication Cheat Sheet, "Account lockout";
NIST SP 800-63B section 5.2.2, rate limiting): when ``max_failures`` failed
logins for one user name, or from one client address, fall within the last
``window_seconds``, further attempts are refused (HTTP 429) without checking
the password, until enough of those failures are older than the window. A
successful login clears that user name's failures. Refused attempts are not
counted, so a lockout lasts at most one window after the last failure that
was checked.

Unknown and known user names are counted the same, so the answers tell
nothing about which accounts exist. Failures are rows in the node database
(``login_failures``, :mod:`scpnode.web.tables`), so a restart does not reset
them. Each attempt is counted *before* its password is checked, in one write
transaction with the check, so concurrent guesses cannot slip past the limit
while scrypt runs; the row is removed again when the password was right.

The client address is the connection's peer; behind a reverse proxy on the
same machine uvicorn replaces it with the proxy's ``X-Forwarded-For``
(:mod:`scpnode.web.server`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlite_utils

from scpnode.db import transaction
from scpnode.logs import log_event
from scpnode.web import security_audit

log = logging.getLogger(__name__)

USERNAME_CHARS = 64
"""User names are stored and logged cut to this length (the longest a real one can be)."""


@dataclass(frozen=True)
class LoginAttempt:
    """One login attempt, as the throttle let it through or refused it."""

    username: str
    client: str
    failure_id: int | None
    """The failure row counted for this attempt (removed on success); None when refused."""
    retry_after_seconds: float = 0.0
    """When refused: how long until an attempt is allowed again."""
    locks_out_if_wrong: tuple[str, ...] = ()
    """What a wrong password now locks out: ``"user name"``, ``"client address"``, both or neither."""

    @property
    def refused(self) -> bool:
        return self.failure_id is None

    @property
    def retry_after_minutes(self) -> int:
        """Whole minutes to wait, rounded up (what the refusal page says)."""
        return max(1, math.ceil(self.retry_after_seconds / 60))


class LoginThrottle:
    """Counts failed logins per user name and per client address in a sliding window.

    Args:
        max_failures: failures in the window that lock a user name or client out.
        window_seconds: the window's length.
        clock: the current time in epoch seconds (injectable for tests).
    """

    def __init__(self, max_failures: int = 5, window_seconds: float = 15 * 60,
                 clock: Callable[[], float] = time.time) -> None:
        if max_failures < 1 or window_seconds <= 0:
            raise ValueError("max_failures must be at least 1 and window_seconds positive")
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self.clock = clock

    def begin(self, db: sqlite_utils.Database, username: str, client: str) -> LoginAttempt:
        """Refuse the attempt if the user name or client is locked out, else count it as a failure for now.

        The ``web`` tables must exist (:func:`scpnode.web.tables.ensure_schema`).
        """
        username = username.strip()[:USERNAME_CHARS]
        now = self.clock()
        cutoff = now - self.window_seconds
        with transaction(db):
            db.execute("delete from login_failures where at <= ?", [cutoff])
            unlocked_at = max(self._unlocked_at("username", username, cutoff, db),
                              self._unlocked_at("client", client, cutoff, db))
            if unlocked_at > now:
                attempt = LoginAttempt(username, client, None, retry_after_seconds=unlocked_at - now)
            else:
                cursor = db.execute("insert into login_failures (at, username, client) values (?, ?, ?)",
                                    [now, username, client])
                reached = [label for label, column, value in (("user name", "username", username),
                                                              ("client address", "client", client))
                           if self._failures(column, value, cutoff, db) >= self.max_failures]
                attempt = LoginAttempt(username, client, cursor.lastrowid, locks_out_if_wrong=tuple(reached))
        if attempt.refused:
            log_event(log, "web_login_refused", logging.WARNING, username=username, client=client,
                      retry_after_s=round(attempt.retry_after_seconds))
        return attempt

    def succeeded(self, db: sqlite_utils.Database, attempt: LoginAttempt) -> None:
        """The password was right: clear the user name's failures (this attempt's included)."""
        with transaction(db):
            db.execute("delete from login_failures where username = ?", [attempt.username])

    def failed(self, db: sqlite_utils.Database, attempt: LoginAttempt) -> None:
        """The password was wrong (the attempt stays counted); audit and log the lockout it started, if any."""
        if not attempt.locks_out_if_wrong:
            return
        locked = " and ".join(attempt.locks_out_if_wrong)
        minutes = self.window_seconds / 60
        with transaction(db):
            security_audit.record(db, security_audit.LOGIN_LOCKED_OUT, username=attempt.username,
                                  client=attempt.client, at=self.clock(),
                                  detail=f"{locked} locked: {self.max_failures} failed logins within {minutes:g} min")
        log_event(log, "web_login_locked_out", logging.WARNING, username=attempt.username, client=attempt.client,
                  locked=locked, failures=self.max_failures, window_min=minutes)

    def _unlocked_at(self, column: str, value: str, cutoff: float, db: sqlite_utils.Database) -> float:
        # Locked while max_failures or more are in the window: until the max-th newest one leaves it.
        row = db.execute(f"select at from login_failures where {column} = ? and at > ? "
                         "order by at desc limit 1 offset ?", [value, cutoff, self.max_failures - 1]).fetchone()
        return row[0] + self.window_seconds if row else 0.0

    def _failures(self, column: str, value: str, cutoff: float, db: sqlite_utils.Database) -> int:
        return db.execute(f"select count(*) from login_failures where {column} = ? and at > ?",
                          [value, cutoff]).fetchone()[0]


def unlock(db: sqlite_utils.Database, *, username: str = "", client: str = "", by: str) -> int:
    """Clear the counted failures of a user name and/or a client address; return how many were cleared.

    An administrator's answer to a lockout (a coordinator who mistyped five
    times), instead of waiting for the window to pass. Audited with ``by``.
    """
    username = username.strip()[:USERNAME_CHARS]
    client = client.strip()
    if not username and not client:
        raise ValueError("name a user name, a client address or both")
    with transaction(db):
        cleared = sum(db.execute(f"delete from login_failures where {column} = ?", [value]).rowcount
                      for column, value in (("username", username), ("client", client)) if value)
        security_audit.record(db, security_audit.LOGIN_UNLOCKED, username=username, client=client,
                              detail=f"{cleared} failed logins cleared by {by}")
    log_event(log, "web_login_unlocked", logging.WARNING, username=username, client=client, cleared=cleared, by=by)
    return cleared

