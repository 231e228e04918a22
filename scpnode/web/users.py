"""Users of the web UI: names, roles and password hashes in the node's database.

Passwords are hashed with scrypt (RFC 7914) from the standard library, with a
random 16-byte salt per user and the cost parameters stored next to the hash,
so they can be raised later without invalidating existing users. Roles:
``coordinator`` works the worklist; ``reviewer`` (a radiologist or a trained
technologist) also confirms or corrects vertebral levels the node was unsure
of, and sees those studies first; ``admin`` may do everything, sees node
status and retries failed jobs. Users are disabled, never deleted, so the audit log keeps
naming real accounts.

Web sessions are recorded here too, so that they can end: the browser's cookie
carries a random token, this table its SHA-256 (a copy of the database gives
no usable token) with the user and the session's worklist search term (a
patient ID, kept out of the cookie). Logging out ends that session; a new
password or disabling the user ends all of theirs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum

import sqlite_utils

from scpnode.db import migrate, transaction
from scpnode.timestamps import text_columns_to_epoch

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
"""scrypt cost: the interactive-login parameters recommended in RFC 7914 section 2 (about 16 MiB)."""
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024


class Role(StrEnum):
    COORDINATOR = "coordinator"
    REVIEWER = "reviewer"
    ADMIN = "admin"


class UserError(ValueError):
    """A user that cannot be added, found or changed; the message says why."""


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: Role
    disabled: bool
    created_at: float
    """Epoch seconds, as ``last_login_at`` (:mod:`scpnode.timestamps`)."""
    last_login_at: float | None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def reviews_levels(self) -> bool:
        """May confirm or correct vertebral levels."""
        return self.role in (Role.REVIEWER, Role.ADMIN)


MIGRATIONS = ["""
create table if not exists users (
    id integer primary key,
    username text not null unique collate nocase,
    password_hash text not null,
    role text not null check (role in ('coordinator', 'admin')),
    disabled integer not null default 0,
    created_at text not null,
    last_login_at text
);
""", lambda db: _allow_roles(db, ("coordinator", "reviewer", "admin")), """
create table web_sessions (
    token_sha256 text primary key,
    user_id integer not null references users(id),
    started_at real not null,
    search text not null default ''
);
create index web_sessions_user on web_sessions(user_id);
""", lambda db: text_columns_to_epoch(db, "users", {"created_at": True, "last_login_at": False})]
"""Schema steps of the ``users`` component (:func:`scpnode.db.migrate`); append, never edit."""


def _allow_roles(db: sqlite_utils.Database, roles: tuple[str, ...]) -> None:
    """Rebuild ``users`` with a role check that admits ``roles``: SQLite cannot alter a CHECK
    constraint in place (its documented "make other kinds of table schema changes" procedure)."""
    allowed = ", ".join(f"'{role}'" for role in roles)
    db.execute(f"""create table users_new (
        id integer primary key,
        username text not null unique collate nocase,
        password_hash text not null,
        role text not null check (role in ({allowed})),
        disabled integer not null default 0,
        created_at text not null,
        last_login_at text
    )""")
    db.execute("insert into users_new select id, username, password_hash, role, disabled, created_at, "
               "last_login_at from users")
    db.execute("drop table users")
    db.execute("alter table users_new rename to users")


def ensure_schema(db: sqlite_utils.Database) -> None:
    """Create or upgrade the users table (call once per process, before other calls)."""
    migrate(db, "users", MIGRATIONS)


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` with base64 salt and hash."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)])


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches a hash made by :func:`hash_password` (constant-time compare)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        return hmac.compare_digest(_scrypt(password, base64.b64decode(salt), int(n), int(r), int(p)), expected)
    except ValueError:
        return False


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
"""Checked against when the user does not exist, so a login takes as long either way."""


def _check_username(username: str) -> str:
    username = username.strip()
    if not (1 <= len(username) <= 64) or not username.isprintable() or any(c.isspace() for c in username):
        raise UserError("a username is 1-64 printable characters without spaces")
    return username


def check_password_rules(password: str) -> None:
    """Raise :class:`UserError` when a new password is too short or too long."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserError(f"a password has at most {MAX_PASSWORD_LENGTH} characters")


def add_user(db: sqlite_utils.Database, username: str, password: str, role: Role | str) -> User:
    """Create a user.

    Raises:
        UserError: bad username, role or password, or the name is taken.
    """
    username = _check_username(username)
    try:
        role = Role(role)
    except ValueError:
        raise UserError(f"role must be one of {', '.join(r.value for r in Role)}") from None
    check_password_rules(password)
    with transaction(db):
        if db.execute("select 1 from users where username = ?", [username]).fetchone():
            raise UserError(f"user {username!r} exists already")
        db.execute("insert into users (username, password_hash, role, created_at) values (?, ?, ?, ?)",
                   [username, hash_password(password), role.value, time.time()])
    return get_user(db, username)


def set_password(db: sqlite_utils.Database, username: str, password: str) -> None:
    """Replace a user's password and end every session the user has open."""
    check_password_rules(password)
    _update(db, username, "password_hash = ?", [hash_password(password)])
    end_all_sessions(db, get_user(db, username).id)


def set_disabled(db: sqlite_utils.Database, username: str, disabled: bool = True) -> None:
    """Disable (or enable again) a user; disabling ends the user's open sessions."""
    _update(db, username, "disabled = ?", [int(disabled)])
    if disabled:
        end_all_sessions(db, get_user(db, username).id)


def start_session(db: sqlite_utils.Database, user_id: int, lifetime_seconds: float,
                  now: float | None = None) -> str:
    """Record a new session of ``user_id`` and return its token (for the cookie only).

    Sessions older than ``lifetime_seconds`` are removed at the same time:
    their cookies have expired anyway.
    """
    now = time.time() if now is None else now
    token = secrets.token_urlsafe(32)
    with transaction(db):
        db.execute("delete from web_sessions where started_at < ?", [now - lifetime_seconds])
        db.execute("insert into web_sessions (token_sha256, user_id, started_at) values (?, ?, ?)",
                   [_token_hash(token), user_id, now])
    return token


def session_user(db: sqlite_utils.Database, token: str) -> User | None:
    """The enabled user of an open session, or None (ended, unknown, or the user disabled)."""
    row = db.execute("select user_id from web_sessions where token_sha256 = ?", [_token_hash(token)]).fetchone()
    user = get_user_by_id(db, row[0]) if row else None
    return user if user is not None and not user.disabled else None


def end_session(db: sqlite_utils.Database, token: str) -> None:
    with transaction(db):
        db.execute("delete from web_sessions where token_sha256 = ?", [_token_hash(token)])


def end_all_sessions(db: sqlite_utils.Database, user_id: int) -> int:
    """End every session of a user; returns how many were open."""
    with transaction(db):
        cursor = db.execute("delete from web_sessions where user_id = ?", [user_id])
    return cursor.rowcount


def session_search(db: sqlite_utils.Database, token: str) -> str:
    row = db.execute("select search from web_sessions where token_sha256 = ?", [_token_hash(token)]).fetchone()
    return row[0] if row else ""


def set_session_search(db: sqlite_utils.Database, token: str, term: str) -> None:
    with transaction(db):
        db.execute("update web_sessions set search = ? where token_sha256 = ?", [term, _token_hash(token)])


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _update(db: sqlite_utils.Database, username: str, assignment: str, params: list) -> None:
    with transaction(db):
        cursor = db.execute(f"update users set {assignment} where username = ?", [*params, username])
    if cursor.rowcount == 0:
        raise UserError(f"no user {username!r}")


def get_user(db: sqlite_utils.Database, username: str) -> User:
    """Raises :class:`UserError` when there is no such user."""
    row = db.execute("select id, username, role, disabled, created_at, last_login_at from users where username = ?",
                     [username]).fetchone()
    if row is None:
        raise UserError(f"no user {username!r}")
    return _user(row)


def get_user_by_id(db: sqlite_utils.Database, user_id: int) -> User | None:
    row = db.execute("select id, username, role, disabled, created_at, last_login_at from users where id = ?",
                     [user_id]).fetchone()
    return _user(row) if row else None


def list_users(db: sqlite_utils.Database) -> list[User]:
    rows = db.execute("select id, username, role, disabled, created_at, last_login_at from users "
                      "order by username").fetchall()
    return [_user(row) for row in rows]


def authenticate(db: sqlite_utils.Database, username: str, password: str) -> User | None:
    """The enabled user with this name and password, or None (same work done whether or not the name exists)."""
    row = db.execute("select id, password_hash, disabled from users where username = ?",
                     [username.strip()]).fetchone()
    if len(password) > MAX_PASSWORD_LENGTH:
        return None
    matches = verify_password(password, row[1] if row else _DUMMY_HASH)
    if row is None or not matches or row[2]:
        return None
    with transaction(db):
        db.execute("update users set last_login_at = ? where id = ?", [time.time(), row[0]])
    return get_user_by_id(db, row[0])


def _user(row: tuple) -> User:
    user_id, username, role, disabled, created_at, last_login_at = row
    return User(user_id, username, Role(role), bool(disabled), created_at, last_login_at)

