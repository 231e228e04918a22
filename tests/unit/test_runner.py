"""JobRunner with real worker processes and a real SQLite job table."""

import os
import time
from pathlib import Path

import pytest

from scpnode.pipeline.jobs import DONE, FAILED, AnalysisTarget, JobQueue
from scpnode.pipeline.runner import JobRunner
from scpnode.schema import open_node_database

DB_ENV = "SCPNODE_TEST_RUNNER_DB"


def _queue(path) -> JobQueue:
    return JobQueue(open_node_database(path))


def finish_in_worker(job_id: int) -> None:
    """A job function: records a stage and finishes, from the worker process."""
    queue = _queue(os.environ[DB_ENV])
    queue.record_stage(job_id, "work", 0.01)
    queue.finish(job_id, DONE, result_dir=f"pid-{os.getpid()}")


def die_in_worker(job_id: int) -> None:
    os._exit(1)


def _wait(queue, job_ids, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(queue.get(j).state in (DONE, FAILED) for j in job_ids):
            return
        time.sleep(0.1)
    raise AssertionError("jobs did not finish")


@pytest.fixture
def db_path(tmp_path, monkeypatch):
    path = str(tmp_path / "node.db")
    monkeypatch.setenv(DB_ENV, path)
    return path


def test_jobs_run_in_worker_processes(db_path):
    queue = _queue(db_path)
    ids = [queue.enqueue(AnalysisTarget("1", f"1.{i}", Path("/x"), 1)).id for i in range(3)]
    runner = JobRunner(lambda: _queue(db_path), finish_in_worker, concurrency=1, poll_seconds=0.1)
    runner.start()
    try:
        _wait(queue, ids)
    finally:
        runner.stop()
    jobs = [queue.get(i) for i in ids]
    assert all(j.state == DONE and j.stage_seconds == {"work": 0.01} for j in jobs)
    assert all(j.result_dir != f"pid-{os.getpid()}" for j in jobs)


def test_a_dying_worker_fails_its_job_and_the_next_one_still_runs(db_path):
    queue = _queue(db_path)
    doomed = queue.enqueue(AnalysisTarget("1", "1.1", Path("/x"), 1)).id
    runner = JobRunner(lambda: _queue(db_path), die_in_worker, concurrency=1, poll_seconds=0.1)
    runner.start()
    try:
        _wait(queue, [doomed])
        assert queue.get(doomed).state == FAILED
        assert "worker process died" in queue.get(doomed).error
        runner.run_job = finish_in_worker
        survivor = queue.enqueue(AnalysisTarget("1", "1.2", Path("/x"), 1)).id
        _wait(queue, [survivor])
        assert queue.get(survivor).state == DONE
    finally:
        runner.stop()
