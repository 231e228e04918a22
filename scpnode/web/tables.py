"""The web UI's own tables in the node database (component ``web`` of :func:`scpnode.db.migrate`).

- ``web_session_key``: the one key that signs session cookies
  (:mod:`scpnode.web.session_key`).
- ``login_failures``: recent failed logins, counted per user name and per
  client address (:mod:`scpnode.web.login_throttle`).
- ``security_audit``: lockouts and session-key rotations
  (:mod:`scpnode.web.security_audit`).
"""

from __future__ import annotations

import sqlite_utils

from scpnode.db import migrate
from scpnode.timestamps import text_columns_to_epoch

MIGRATIONS = ["""
create table web_session_key (
    id integer primary key check (id = 1),
    secret text not null,
    created_at text not null
);
create table login_failures (
    id integer primary key,
    at real not null,
    username text not null collate nocase,
    client text not null
);
create index login_failures_username on login_failures (username, at);
create index login_failures_client on login_failures (client, at);
create table security_audit (
    id integer primary key,
    at text not null,
    event text not null,
    username text not null default '',
    client text not null default '',
    detail text not null default ''
);
""", lambda db: text_columns_to_epoch(db, "web_session_key", {"created_at": True}),
    lambda db: text_columns_to_epoch(db, "security_audit", {"at": True})]
"""Schema steps of the ``web`` component; append, never edit."""


def ensure_schema(db: sqlite_utils.Database) -> None:
    """Create or upgrade the web UI's tables."""
    migrate(db, "web", MIGRATIONS)
