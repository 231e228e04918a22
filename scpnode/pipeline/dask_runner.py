"""Runs queued jobs' compute on a Dask cluster and records the results in the node.

``[pipeline] executor = "dask"``: an APScheduler interval job (as with the
local :class:`scpnode.pipeline.runner.JobRunner`) claims queued jobs, hands
each to the cluster as one task (:func:`scpnode.pipeline.remote.run_remote_job`),
and records finished tasks with :func:`scpnode.pipeline.analysis.record_job`
in the node, one at a time: the node stays the only writer of its database,
store and outbox.

Every job completes exactly once or fails with a reason:

- each attempt of a job is one task with its own key
  (:func:`task_key`), so the scheduler never runs an attempt twice at once;
- a worker lost mid-job: the scheduler reruns the task on another worker
  (distributed's ``allowed-failures``); a task that keeps killing workers
  ends the job ``failed`` with ``KilledWorker``;
- the scheduler lost: distributed cancels the client's futures while it
  reconnects; the runner sees them cancelled, reconnects (a new client once
  the old one gives up) and submits those jobs again under the same keys;
- the node restarted: jobs it had out are still ``running`` and go back to
  the queue (:meth:`scpnode.pipeline.jobs.JobQueue.recover_interrupted`);
- a second result for a job that is no longer running that attempt is
  dropped by :func:`record_job` with a log line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError
from dataclasses import dataclass

from apscheduler.schedulers.background import BackgroundScheduler
from distributed import Client, Future

from scpnode.config import Settings
from scpnode.logs import log_event
from scpnode.pipeline.analysis import JobComputation, JobRequest, job_folder, record_job, sent_predecessor
from scpnode.pipeline.cluster import CONNECT_TIMEOUT_SECONDS, connect
from scpnode.pipeline.jobs import Job, JobQueue
from scpnode.pipeline.remote import RemoteResult, remote_job, run_remote_job

log = logging.getLogger(__name__)

RESULT_FETCH_SECONDS = 120.0


def task_key(job: Job) -> str:
    """The Dask key of one attempt of one revision of a job."""
    return f"scpnode-job-{job.id}-revision-{job.revision}-attempt-{job.attempts}"


@dataclass
class _JobOut:
    job: Job
    future: Future


class DaskJobRunner:
    """Dispatches queued jobs to a Dask cluster; same life cycle as :class:`scpnode.pipeline.runner.JobRunner`.

    Args:
        settings: the node settings (``[pipeline]`` names the cluster).
        queue: returns a :class:`JobQueue` on the calling thread's database connection.
        poll_seconds: how often the queue and the tasks out are looked at.
        connect_timeout: longest wait for the scheduler, on connecting and on each reconnection.
    """

    def __init__(self, settings: Settings, queue: Callable[[], JobQueue], *, poll_seconds: float = 1.0,
                 connect_timeout: float = CONNECT_TIMEOUT_SECONDS):
        self.settings = settings
        self.queue = queue
        self.poll_seconds = poll_seconds
        self.connect_timeout = connect_timeout
        pipeline = settings.pipeline
        self.resources = dict(pipeline.worker_resources) or ({"GPU": 1} if pipeline.device == "cuda" else {})
        self._client: Client | None = None
        self._scheduler_reachable = True
        self._out: dict[int, _JobOut] = {}
        self._lock = threading.RLock()
        self._scheduler = BackgroundScheduler(daemon=True)

    def start(self) -> None:
        """Requeue jobs a dead node left running, then start dispatching (connecting on the first poll)."""
        for job_id in self.queue().recover_interrupted():
            log_event(log, "job_requeued_after_restart", job=job_id)
        self._scheduler.add_job(self.dispatch, "interval", seconds=self.poll_seconds,
                                id="dispatch-jobs", max_instances=1, coalesce=True)
        self._scheduler.start()

    def stop(self, wait: bool = True) -> None:
        """Stop dispatching; with ``wait`` record the jobs out as they finish first.

        Jobs still out afterwards (no wait, or the scheduler went away) stay
        ``running`` and are requeued when the node starts again.
        """
        if self._scheduler.running:
            self._scheduler.pause()
            self._scheduler.shutdown(wait=True)
        with self._lock:
            client = self._client
            if wait and client is not None:
                while client.status == "running" and not all(out.future.done() for out in self._out.values()):
                    time.sleep(self.poll_seconds)
                self._collect(client, resubmit=False)
            if self._out:
                log_event(log, "jobs_left_running", logging.WARNING, jobs=len(self._out))
            self._out.clear()
            self._client = None
        if client is not None:
            client.close()

    def dispatch(self) -> None:
        """Record finished tasks, resubmit lost ones, and hand queued jobs to the cluster up to ``max_jobs_out``."""
        with self._lock:
            client = self._connected_client()
            if client is None:
                return
            self._collect(client)
            while len(self._out) < self.settings.pipeline.max_jobs_out:
                job = self.queue().claim_next()
                if job is None:
                    return
                log_event(log, "job_started", job=job.id, attempt=job.attempts, executor="dask")
                self._submit(client, job)

    def _connected_client(self) -> Client | None:
        """The client when it is connected; None while distributed reconnects or the scheduler is unreachable."""
        client = self._client
        if client is not None and client.status == "running":
            return client
        if client is not None and client.status in ("newly-created", "connecting"):
            return None
        if client is not None:  # closed: it gave up reconnecting
            client.close()
            self._client = None
        try:
            self._client = connect(self.settings.pipeline, timeout=self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            if self._scheduler_reachable:
                log_event(log, "dask_scheduler_unreachable", logging.WARNING,
                          address=self.settings.pipeline.scheduler_address, error=type(exc).__name__)
            self._scheduler_reachable = False
            return None
        self._scheduler_reachable = True
        log_event(log, "dask_scheduler_connected", address=self.settings.pipeline.scheduler_address,
                  jobs_out=len(self._out))
        return self._client

    def _submit(self, client: Client, job: Job) -> None:
        queue = self.queue()
        try:
            predecessor = sent_predecessor(queue.db, queue, job, job_folder(self.settings, job))
            payload = remote_job(self.settings, job, predecessor)
        except Exception as exc:  # noqa: BLE001 - a series that cannot be read fails its job, not the node
            self._out.pop(job.id, None)
            record_job(queue.db, self.settings, JobComputation.failure(JobRequest.of(job), "load", exc))
            return
        future = client.submit(run_remote_job, payload, key=task_key(job), pure=False,
                               resources=self.resources or None)
        self._out[job.id] = _JobOut(job, future)

    def _collect(self, client: Client, resubmit: bool = True) -> None:
        """Record every finished task; submit again the jobs whose tasks the scheduler's loss cancelled."""
        for job_id, out in list(self._out.items()):
            status = out.future.status
            if status == "cancelled":
                if resubmit:
                    log_event(log, "job_resubmitted", job=job_id, key=out.future.key)
                    self._submit(client, out.job)
                continue
            if status == "error":
                error = out.future.exception()
                computation, files = JobComputation.failure(JobRequest.of(out.job), "cluster", error), None
            elif status == "finished":
                try:
                    result: RemoteResult = out.future.result(timeout=RESULT_FETCH_SECONDS)
                except (OSError, TimeoutError, CancelledError):
                    continue  # the holder went away: the scheduler recomputes or cancels it; next poll
                computation, files = result.computation, result.files
            else:
                continue
            queue = self.queue()
            outcome = record_job(queue.db, self.settings, computation, files)
            log_event(log, "job_finished", job=job_id, state=outcome.state, executor="dask")
            out.future.release()
            del self._out[job_id]
