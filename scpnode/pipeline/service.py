"""The pipeline as a node service: a job per selected series, run in worker processes.

:class:`InferencePipeline` takes selected series from the node's hook
(:class:`scpnode.node.Node`), queues one job per series revision
(:class:`scpnode.pipeline.jobs.AnalysisTarget`) and acknowledges the series to
the index; its :class:`scpnode.pipeline.runner.JobRunner` runs queued jobs in
worker processes, each through :func:`scpnode.pipeline.analysis.run_job`, or with
``[pipeline] executor = "dask"`` its :class:`scpnode.pipeline.dask_runner.DaskJobRunner`
computes them on a Dask cluster and records them here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from scpnode.config import Settings
from scpnode.db import ThreadDatabases
from scpnode.logs import log_event, uid_ref
from scpnode.pipeline.analysis import init_worker, run_job
from scpnode.pipeline.jobs import AnalysisTarget, JobQueue
from scpnode.pipeline.runner import JobRunner
from scpnode.storage import index
from scpnode.storage.index import SeriesRef

if TYPE_CHECKING:
    from scpnode.pipeline.dask_runner import DaskJobRunner

log = logging.getLogger(__name__)


class InferencePipeline:
    """Node service: queue a job per selected series and run queued jobs.

    Pass :meth:`on_series_selected` as the node's hook and the pipeline itself
    as one of its services.
    """

    def __init__(self, settings: Settings, poll_seconds: float = 1.0):
        self.settings = settings
        self.databases = ThreadDatabases(settings.node.database)
        self.runner: JobRunner | DaskJobRunner
        if settings.pipeline.executor == "dask":
            # imported here: a node with the local executor never loads distributed (nor its logging setup)
            from scpnode.pipeline.dask_runner import DaskJobRunner
            self.runner = DaskJobRunner(settings, self._queue, poll_seconds=poll_seconds)
        else:
            self.runner = JobRunner(self._queue, run_job, concurrency=settings.pipeline.concurrency,
                                    poll_seconds=poll_seconds, initializer=init_worker,
                                    initargs=(settings.model_dump_json(),))

    def _queue(self) -> JobQueue:
        return JobQueue(self.databases.get())

    def on_series_selected(self, series: SeriesRef) -> None:
        """Queue a job for a selected series (same content: the existing job) and acknowledge it."""
        job = self._queue().enqueue(AnalysisTarget(series.study_instance_uid, series.series_instance_uid,
                                                   series.folder, series.revision))
        index.acknowledge_selected(self.databases.get(), series)
        log_event(log, "job_queued", job=job.id, series=uid_ref(series.series_instance_uid))

    def start(self) -> None:
        self.runner.start()

    def stop(self) -> None:
        self.runner.stop(wait=True)
