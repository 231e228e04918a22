"""What the admin's node-status page shows, behind a small provider interface.

The page reads one :class:`NodeStatus` snapshot and calls ``retry_job``; it
knows nothing of the tables behind them. :class:`DatabaseNodeStatus` is the
provider the node uses: jobs from :class:`scpnode.pipeline.jobs.JobQueue`, outbox
states, when each peer last sent an instance (series index), which series of
a study was analysed and why the others were not, and disk use of the store
and the database, each read through its owner's API. A provider that cannot
tell a part leaves it ``None`` and the page says so rather than showing an
empty table that looks healthy.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import sqlite_utils

from scpnode.config import Settings
from scpnode.delivery import outbox
from scpnode.logs import uid_ref
from scpnode.pipeline.jobs import FAILED, QUEUED, RUNNING, Job, JobQueue
from scpnode.storage import index
from scpnode.timestamps import iso_utc


@dataclass(frozen=True)
class JobView:
    """One inference job as the status page lists it."""

    id: int
    state: str
    study_ref: str
    """Short reference of the Study Instance UID (:func:`scpnode.logs.uid_ref`), not the UID."""
    attempts: int
    stage: str
    error: str
    created_at: str
    finished_at: str | None


@dataclass(frozen=True)
class DiskUse:
    """Free space on the file system holding ``path``, and what the node keeps there."""

    label: str
    path: str
    used_by_node_bytes: int | None
    """Bytes of the node's own files there (received images per the series index); None when unknown."""
    free_bytes: int
    total_bytes: int

    @property
    def free_fraction(self) -> float:
        return self.free_bytes / self.total_bytes if self.total_bytes else 0.0


@dataclass(frozen=True)
class PeerSeen:
    ae_title: str
    host: str
    last_seen: str


@dataclass(frozen=True)
class SeriesChoiceView:
    """One candidate series of a study where one series was analysed out of several."""

    study_ref: str
    series_ref: str
    description: str
    state: str
    reason: str


@dataclass
class NodeStatus:
    """A snapshot for the status page. ``None``: the node does not provide that part."""

    job_counts: dict[str, int] | None
    jobs: list[JobView] = field(default_factory=list)
    """Queued, running and failed jobs, newest first."""
    outbox_counts: dict[str, int] | None = None
    peers: list[PeerSeen] | None = None
    disks: list[DiskUse] = field(default_factory=list)
    choices: list[SeriesChoiceView] | None = None
    """Latest studies whose series were chosen from (:mod:`scpnode.pipeline.study_choice`), series by series."""


class NodeStatusProvider(Protocol):
    """What the web UI needs from the node to show its status and retry jobs."""

    def snapshot(self) -> NodeStatus:
        """The current figures."""

    def retry_job(self, job_id: int) -> None:
        """Put a failed job back in the queue.

        Raises:
            KeyError: no such job.
            ValueError: the job cannot be retried (it is not failed).
        """


class DatabaseNodeStatus:
    """Node status read from the node database (jobs, outbox, series index) and the disks.

    Args:
        settings: the node configuration (where the store and database are).
        db: a connection for the calling thread.
        job_limit: how many jobs of each listed state to show.
    """

    def __init__(self, settings: Settings, db: sqlite_utils.Database, job_limit: int = 50):
        self.settings = settings
        self.db = db
        self.queue = JobQueue(db)
        self.job_limit = job_limit

    def snapshot(self) -> NodeStatus:
        jobs = [job for state in (RUNNING, QUEUED, FAILED) for job in self.queue.recent(self.job_limit, state)]
        return NodeStatus(
            job_counts=self.queue.counts(),
            jobs=[_job_view(job) for job in sorted(jobs, key=lambda j: j.id, reverse=True)],
            outbox_counts=outbox.state_counts(self.db),
            peers=self._peers(),
            disks=self._disks(stored_bytes=index.stored_bytes(self.db)),
            choices=[SeriesChoiceView(uid_ref(s.study_instance_uid), uid_ref(s.series_instance_uid),
                                      s.series_description, s.state.value, s.reason or "analysed")
                     for study in index.recent_choices(self.db) for s in study],
        )

    def retry_job(self, job_id: int) -> None:
        self.queue.retry(job_id)

    def _peers(self) -> list[PeerSeen]:
        hosts = {peer.ae_title: peer.host for peer in self.settings.peers}
        seen = {ae: iso_utc(at) for ae, at in index.peers_last_seen(self.db).items()}
        names = sorted(set(hosts) | set(seen))
        return [PeerSeen(ae, hosts.get(ae, "(not configured)"), seen.get(ae, "never")) for ae in names]

    def _disks(self, stored_bytes: int | None) -> list[DiskUse]:
        node = self.settings.node
        return [_disk_use("image store", node.storage_dir, stored_bytes),
                _disk_use("database", node.database.parent, _database_size(node.database))]


def _job_view(job: Job) -> JobView:
    return JobView(id=job.id, state=job.state, study_ref=uid_ref(job.study_uid), attempts=job.attempts,
                   stage=job.stage, error=job.error, created_at=iso_utc(job.created_at),
                   finished_at=iso_utc(job.finished_at) or None)


def _disk_use(label: str, path: Path, used: int | None) -> DiskUse:
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    usage = shutil.disk_usage(existing)
    return DiskUse(label, str(path), used, usage.free, usage.total)


def _database_size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())

