"""``GET /healthz``: the node's health for monitoring (load balancers, Nagios/Zabbix, systemd watchers).

No login and no patient data: job and outbox counts, series still arriving,
the age of the oldest pending outbox item and free disk space. The answer is
``200`` with ``"status": "ok"`` when nothing needs a person, else ``503`` with
``"status": "degraded"`` (or ``"error"`` when the database cannot be read) and
a ``problems`` list naming what is wrong:

- failed jobs (the same condition that makes ``scpnode status`` exit 1);
- failed outbox items (a destination refused results for good);
- results pending for longer than :data:`OUTBOX_STALE_SECONDS` (a destination
  unreachable for that long);
- less than :data:`MIN_FREE_FRACTION` free on the disk of the store or the database.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse

from scpnode.config import Settings
from scpnode.db import ThreadDatabases
from scpnode.delivery import outbox
from scpnode.logs import log_event
from scpnode.pipeline.jobs import FAILED
from scpnode.storage import index
from scpnode.web.node_status import DatabaseNodeStatus

log = logging.getLogger(__name__)

OUTBOX_STALE_SECONDS = 3600.0
"""Results waiting longer than this for a destination make the node degraded."""
MIN_FREE_FRACTION = 0.05
"""Free space below this fraction of a disk makes the node degraded."""


def health_report(settings: Settings, databases: ThreadDatabases, now: float | None = None) -> tuple[dict, bool]:
    """The health document and whether the node is healthy."""
    now = time.time() if now is None else now
    db = databases.get()
    snapshot = DatabaseNodeStatus(settings, db).snapshot()
    open_series = index.open_series_count(db)
    oldest = outbox.oldest_pending_since(db)
    oldest_pending = round(now - oldest, 1) if oldest is not None else None
    jobs, sent = snapshot.job_counts or {}, snapshot.outbox_counts or {}
    problems = []
    if jobs.get(FAILED):
        problems.append(f"{jobs[FAILED]} failed jobs")
    if sent.get(outbox.OutboxState.FAILED.value):
        problems.append(f"{sent[outbox.OutboxState.FAILED.value]} outbox items failed")
    if oldest_pending is not None and oldest_pending > OUTBOX_STALE_SECONDS:
        problems.append(f"results pending for {oldest_pending / 3600:.1f} h")
    problems += [f"{disk.label}: {disk.free_fraction:.1%} free" for disk in snapshot.disks
                 if disk.free_fraction < MIN_FREE_FRACTION]
    document = {
        "status": "degraded" if problems else "ok",
        "problems": problems,
        "jobs": jobs,
        "outbox": sent,
        "pending": {"series_receiving": open_series, "oldest_outbox_item_seconds": oldest_pending},
        "disks": {disk.label: {"free_bytes": disk.free_bytes, "free_fraction": round(disk.free_fraction, 4)}
                  for disk in snapshot.disks},
    }
    return document, not problems


def health_endpoint(settings: Settings, databases: ThreadDatabases) -> Callable[[Request], JSONResponse]:
    """The ``/healthz`` handler: 200 when healthy, 503 when degraded or the database fails."""

    def healthz(request: Request) -> JSONResponse:
        try:
            document, healthy = health_report(settings, databases)
        except Exception as exc:  # noqa: BLE001 - an unreadable database is exactly what this reports
            log_event(log, "health_check_failed", logging.ERROR, error_type=type(exc).__name__)
            return JSONResponse({"status": "error", "problems": [f"database: {type(exc).__name__}: {exc}"]},
                                status_code=503)
        return JSONResponse(document, status_code=200 if healthy else 503)

    return healthz
