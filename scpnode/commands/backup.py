"""``scpnode backup DEST``: a consistent copy of the node database while the node runs.

Uses SQLite's online backup API (``sqlite3.Connection.backup``,
https://www.sqlite.org/backup.html) rather than copying the file: a plain copy
of a WAL database taken while the node writes can miss the ``-wal`` file's
commits or catch a half-written page. The backup copies the database in steps,
letting the node's writers go on between them, and the result is one
self-contained file (no ``-wal``) that ``scpnode`` opens as is.

Back up the received images, ``[node] results_dir`` and the configuration
with the usual file tools; see README "Operations".
"""

from __future__ import annotations

import argparse
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from scpnode.errors import UsageError

PAGES_PER_STEP = 1024
"""Pages copied while holding the read lock; between steps the node's writers go on."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "backup", help="copy the node database consistently while the node runs (SQLite online backup)",
        description="Copy the node database to DEST with SQLite's online backup API; safe while the node runs.")
    parser.add_argument("dest", type=Path, metavar="DEST",
                        help="backup file to write, or an existing folder (then scpnode-<UTC time>.db inside it)")
    parser.add_argument("--force", action="store_true", help="replace DEST if it exists")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    source = args.settings.node.database
    if not source.exists():
        raise UsageError(f"no node database at {source} (has the node run with this configuration?)")
    dest = args.dest / _timestamped_name() if args.dest.is_dir() else args.dest
    if dest.exists() and not args.force:
        raise UsageError(f"{dest} exists (use --force to replace it)")
    if not dest.parent.is_dir():
        raise UsageError(f"folder {dest.parent} does not exist")
    pages = backup_database(source, dest)
    print(f"backed up {source} to {dest} ({pages} pages)")
    return 0


def backup_database(source: Path, dest: Path) -> int:
    """Copy ``source`` into ``dest`` with the online backup API; return the page count.

    The copy is written next to ``dest`` under a temporary name and renamed
    when complete, so ``dest`` is never a partial backup.
    """
    partial = dest.with_name(f".{dest.name}.partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        out = sqlite3.connect(partial)
        try:
            src.backup(out, pages=PAGES_PER_STEP)
            pages = out.execute("PRAGMA page_count").fetchone()[0]
            check = out.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            out.close()
    finally:
        src.close()
    if check != "ok":
        partial.unlink(missing_ok=True)
        raise UsageError(f"backup failed its integrity check: {check}")
    partial.replace(dest)
    return pages


def _timestamped_name() -> str:
    return f"scpnode-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}.db"
