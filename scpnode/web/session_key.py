"""The key that signs the web UI's session cookies: one per installation, kept in the node database.

Generated once (384 random bits from :mod:`secrets`), so a restart or an
upgrade of the node keeps coordinators logged in; ``scpnode users
rotate-session-key`` replaces it, which ends every open session.

Why the database and not a 0600 file beside it: the database already holds
what the key protects (password hashes, the worklist with patient data) and
has the same owner and permissions, so whoever can read the key can read
everything a forged cookie would show. One place means one thing to protect,
and ``scpnode backup`` copies users and key together. A rotation is one
transaction, and :class:`RotatingSessionMiddleware` reads the key on every
request (a one-row primary-key read), so a rotation done by the command line
ends the sessions of a running node at once, without a restart or a file
watcher.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import sqlite_utils
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from scpnode.db import ThreadDatabases, transaction
from scpnode.web import security_audit

KEY_BYTES = 48
"""Random bytes in a key (384 bits; itsdangerous derives its HMAC key from it)."""


class SessionKeyMissing(RuntimeError):
    """The node database has no session key (the web UI was not set up with :func:`ensure_session_key`)."""


def ensure_session_key(db: sqlite_utils.Database) -> None:
    """Create the installation's key if there is none yet (safe when several processes start at once)."""
    with transaction(db):
        db.execute("insert or ignore into web_session_key (id, secret, created_at) values (1, ?, ?)",
                   [_new_secret(), time.time()])


def session_key(db: sqlite_utils.Database) -> str:
    """The current key.

    Raises:
        SessionKeyMissing: :func:`ensure_session_key` was never called on this database.
    """
    row = db.execute("select secret from web_session_key where id = 1").fetchone()
    if row is None:
        raise SessionKeyMissing("the node database has no web session key")
    return row[0]


def rotate_session_key(db: sqlite_utils.Database, *, by: str = "") -> None:
    """Replace the key: every session cookie signed so far stops working at its next request.

    The rotation is written to the security audit log; ``by`` says who asked.
    """
    with transaction(db):
        db.execute("insert into web_session_key (id, secret, created_at) values (1, ?, ?) "
                   "on conflict (id) do update set secret = excluded.secret, created_at = excluded.created_at",
                   [_new_secret(), time.time()])
        security_audit.record(db, security_audit.SESSION_KEY_ROTATED, username=by)


class RotatingSessionMiddleware:
    """Starlette's :class:`~starlette.middleware.sessions.SessionMiddleware`, signed with the database's key.

    The key is read on every request; when it changed, a new
    ``SessionMiddleware`` is built with it (its public constructor is the only
    way to give it a key), so cookies signed with the old key are treated as
    absent: the user is sent to the login page.

    Args:
        app: the wrapped application.
        databases: per-thread connections to the node database (this middleware
            reads on the event loop's thread; the read never waits for writers
            in WAL mode).
        session_options: keyword arguments of ``SessionMiddleware`` other than ``secret_key``.
    """

    def __init__(self, app: ASGIApp, databases: ThreadDatabases, **session_options: Any) -> None:
        self.app = app
        self.databases = databases
        self.session_options = session_options
        self._signed_with: tuple[str, SessionMiddleware] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        key = session_key(self.databases.get())
        if self._signed_with is None or self._signed_with[0] != key:
            self._signed_with = (key, SessionMiddleware(self.app, secret_key=key, **self.session_options))
        await self._signed_with[1](scope, receive, send)


def _new_secret() -> str:
    return secrets.token_urlsafe(KEY_BYTES)

