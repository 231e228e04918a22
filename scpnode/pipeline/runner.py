"""Runs queued inference jobs, a bounded number at a time.

An APScheduler interval job polls the ``jobs`` table and hands queued jobs to a
pool of worker *processes* (``[pipeline] concurrency``, default 1). Processes,
not threads: inference holds the GIL in places, uses GBs of memory that must be
returned after each study, and a crash in a native library must cost one job,
not the node. A worker that dies takes its job to ``failed`` with the reason;
the pool is rebuilt for the next job.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from apscheduler.schedulers.background import BackgroundScheduler

from scpnode.logs import log_event
from scpnode.pipeline.jobs import FAILED, JobQueue

log = logging.getLogger(__name__)

JobFunction = Callable[[int], None]
"""Runs one job by id in a worker process; must be a picklable module-level function."""


class JobRunner:
    """Dispatches queued jobs to worker processes.

    Args:
        queue: returns a :class:`JobQueue` on the calling thread's database
            connection (the runner uses it from several threads).
        run_job: function executed in the worker process with the job id; it
            records stages and the final state itself.
        concurrency: jobs running at the same time.
        poll_seconds: how often the queue is looked at.
        initializer: called once in each worker process (e.g. to load settings).
    """

    def __init__(self, queue: Callable[[], JobQueue], run_job: JobFunction, *, concurrency: int = 1,
                 poll_seconds: float = 1.0, initializer: Callable[..., None] | None = None,
                 initargs: tuple = ()):
        self.queue = queue
        self.run_job = run_job
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self._initializer = initializer
        self._initargs = initargs
        self._pool: ProcessPoolExecutor | None = None
        self._running: dict[int, Future] = {}
        # Re-entrant: a future that is already done runs its callback inside dispatch().
        self._lock = threading.RLock()
        self._scheduler = BackgroundScheduler(daemon=True)

    def start(self) -> None:
        """Requeue jobs a dead node left running, then start dispatching."""
        for job_id in self.queue().recover_interrupted():
            log_event(log, "job_requeued_after_restart", job=job_id)
        self._pool = self._new_pool()
        self._scheduler.add_job(self.dispatch, "interval", seconds=self.poll_seconds,
                                id="dispatch-jobs", max_instances=1, coalesce=True)
        self._scheduler.start()

    def stop(self, wait: bool = True) -> None:
        """Stop dispatching; with ``wait`` let running jobs finish first (queued ones stay queued)."""
        if self._scheduler.running:
            self._scheduler.pause()
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=True)
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)

    @property
    def busy(self) -> int:
        with self._lock:
            return sum(1 for f in self._running.values() if not f.done())

    def dispatch(self) -> None:
        """Start queued jobs while fewer than ``concurrency`` are running."""
        with self._lock:
            self._running = {job_id: f for job_id, f in self._running.items() if not f.done()}
            while len(self._running) < self.concurrency and self._pool is not None:
                job = self.queue().claim_next()
                if job is None:
                    return
                log_event(log, "job_started", job=job.id, attempt=job.attempts)
                try:
                    future = self._pool.submit(self.run_job, job.id)
                except BrokenProcessPool:
                    self._pool = self._new_pool()
                    future = self._pool.submit(self.run_job, job.id)
                future.add_done_callback(lambda f, job_id=job.id: self._finished(job_id, f))
                self._running[job.id] = future

    def _finished(self, job_id: int, future: Future) -> None:
        error = future.exception()
        if error is None:
            log_event(log, "job_finished", job=job_id, state=self.queue().get(job_id).state)
            return
        # The worker could not record the outcome itself (it died or raised
        # outside the pipeline's own error handling).
        reason = "worker process died" if isinstance(error, BrokenProcessPool) else f"{type(error).__name__}: {error}"
        self.queue().finish(job_id, FAILED, error=reason)
        log_event(log, "job_failed", logging.ERROR, job=job_id, error=reason)
        if isinstance(error, BrokenProcessPool):
            with self._lock:
                self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.concurrency, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=self._initializer, initargs=self._initargs)
