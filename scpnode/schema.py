"""Every table of the node database, created or upgraded in one place when a process starts.

Each table has one owning module, which declares its schema steps
(:func:`scpnode.db.migrate`) and is the only one that writes it:

=========================================  ===============================================
tables                                     owner
=========================================  ===============================================
``studies``, ``series``, ``instances``     :mod:`scpnode.storage.index` (retention marks too)
``outbox``                                 :mod:`scpnode.delivery.outbox`
``jobs``                                   :mod:`scpnode.pipeline.jobs`
``worklist``, ``worklist_audit``           :mod:`scpnode.worklist.table`
``users``, ``web_sessions``                :mod:`scpnode.web.users`
``web_session_key``, ``login_failures``,   :mod:`scpnode.web.tables` (written by
``security_audit``                         ``session_key``, ``login_throttle``, ``security_audit``)
=========================================  ===============================================

:func:`prepare` runs at the start of the node, of the web UI and of every
command that opens the database; the APIs themselves never migrate, so a
worker polling the job queue does not take the write lock to check a schema.
"""

from __future__ import annotations

from pathlib import Path

import sqlite_utils

from scpnode import worklist
from scpnode.db import open_database
from scpnode.delivery import outbox
from scpnode.pipeline import jobs
from scpnode.storage import index
from scpnode.web import tables as web_tables
from scpnode.web import users


def prepare(db: sqlite_utils.Database) -> None:
    """Create or upgrade every table (in dependency order: the outbox migration reads ``jobs``)."""
    index.create_tables(db)
    jobs.ensure_schema(db)
    outbox.create_tables(db)
    worklist.ensure_schema(db)
    users.ensure_schema(db)
    web_tables.ensure_schema(db)


def open_node_database(path: str | Path) -> sqlite_utils.Database:
    """Open the node database and bring its tables to this software's version."""
    db = open_database(path)
    prepare(db)
    return db
