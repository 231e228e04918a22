"""The node's SQLite database: opening it, transactions, and schema migrations.

Every table of the node (series index, outbox, jobs, worklist, users...) lives
in one SQLite file accessed through sqlite-utils. The file is opened in WAL
mode so that readers (the web UI, the scheduler) never block the receiver's
writers, with ``synchronous=NORMAL`` (in WAL mode a commit survives a process
crash, kill -9 included; only a power loss may drop the last commits, see
https://www.sqlite.org/wal.html) and a busy timeout so that concurrent writers
wait instead of failing.

Threads: a ``sqlite3`` connection belongs to the thread that opened it. Each
thread opens its own connection with :func:`open_database`, or asks a shared
:class:`ThreadDatabases` for "this thread's" connection (the receiver does, as
pynetdicom runs every association in its own thread).

Schema: each component declares an ordered list of migrations and calls
:func:`migrate` at start; the applied version is kept per component in the
``schema_versions`` table, so a component's tables can grow without touching
the others'.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

BUSY_TIMEOUT_SECONDS = 30.0
"""How long a writer waits for another writer's lock before giving up."""

Migration = str | Callable[[sqlite_utils.Database], None]
"""One schema step: an SQL script, or a function given the database."""


def open_database(path: str | Path) -> sqlite_utils.Database:
    """Open (creating if needed) the node database for use by the calling thread.

    The connection has WAL journaling, ``synchronous=NORMAL``, foreign keys on
    and a busy timeout of :data:`BUSY_TIMEOUT_SECONDS`. Use it only from the
    thread that opened it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_SECONDS)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
    return sqlite_utils.Database(conn)


def database_path(db: sqlite_utils.Database) -> Path:
    """The file a database connection was opened on."""
    for _, name, filename in db.execute("PRAGMA database_list").fetchall():
        if name == "main":
            return Path(filename)
    raise ValueError("database has no main file")


class ThreadDatabases:
    """One connection per thread to the same database file, opened on first use."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()

    def get(self) -> sqlite_utils.Database:
        """This thread's connection."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = open_database(self.path)
        return db


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """A write transaction taken at once (``BEGIN IMMEDIATE``), committed on exit.

    Taking the write lock at the start makes read-then-write sequences (look up
    an instance, then insert or update it) atomic against other writers. Use
    ``db.execute`` inside it: sqlite-utils' table methods (``insert``,
    ``upsert``...) commit on their own.
    """
    conn = db.conn
    if conn.in_transaction:
        conn.commit()
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def migrate(db: sqlite_utils.Database, component: str, migrations: Sequence[Migration]) -> int:
    """Bring ``component``'s tables to the latest version; return that version.

    ``migrations[i]`` takes the schema from version ``i`` to ``i + 1``. Steps
    already applied (as recorded in ``schema_versions``) are skipped; each new
    step runs in its own transaction with its version bump, so a crash leaves
    the schema at a known version. Never edit a released step: append one.
    """
    current = _schema_version(db, component)
    if current > len(migrations):
        raise RuntimeError(
            f"database schema of {component} is version {current}, newer than this software ({len(migrations)})"
        )
    if current == len(migrations):
        return current  # the usual case: one read, no write lock (every JobQueue() checks)
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
    )
    db.conn.commit()
    for version in range(current, len(migrations)):
        step = migrations[version]
        with transaction(db):
            if _schema_version(db, component) > version:
                continue  # another process applied this step while we waited for the write lock
            if isinstance(step, str):
                for statement in _statements(step):
                    db.execute(statement)
            else:
                step(db)
            db.execute(
                "INSERT INTO schema_versions (component, version) VALUES (?, ?) "
                "ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                [component, version + 1],
            )
    return len(migrations)


def _schema_version(db: sqlite_utils.Database, component: str) -> int:
    try:
        row = db.execute("SELECT version FROM schema_versions WHERE component = ?", [component]).fetchone()
    except sqlite3.OperationalError:  # no schema_versions table yet: nothing migrated
        return 0
    return row[0] if row else 0


def _statements(script: str) -> Iterator[str]:
    # executescript() would commit the surrounding transaction; split instead
    # (sqlite3.complete_statement knows where a statement ends).
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer.strip()
            buffer = ""
    if buffer.strip():
        yield buffer.strip()
