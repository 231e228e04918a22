import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from scpnode.pipeline.jobs import DONE, FAILED, OUT_OF_SCOPE, QUEUED, RUNNING, AnalysisTarget, JobQueue
from scpnode.schema import prepare


@pytest.fixture
def queue(tmp_path):
    conn = sqlite3.connect(tmp_path / "node.db", check_same_thread=False)
    db = sqlite_utils.Database(conn)
    prepare(db)
    return JobQueue(db)


def test_same_content_is_one_job_changed_content_is_another(queue):
    first = queue.enqueue(AnalysisTarget("1.2", "1.2.3", Path("/store/a"), 1))
    again = queue.enqueue(AnalysisTarget("1.2", "1.2.3", Path("/store/a"), 1))
    changed = queue.enqueue(AnalysisTarget("1.2", "1.2.3", Path("/store/a"), 2))
    assert again.id == first.id
    assert changed.id != first.id
    assert queue.counts()[QUEUED] == 2


def test_lifecycle_with_stage_durations(queue):
    job = queue.enqueue(AnalysisTarget("1.2", "1.2.3", Path("/store/a"), 1))
    claimed = queue.claim_next()
    assert claimed.id == job.id and claimed.state == RUNNING and claimed.attempts == 1
    assert queue.claim_next() is None
    queue.record_stage(job.id, "segment")
    queue.record_stage(job.id, "segment", 1.23456)
    queue.finish(job.id, DONE, result_dir="/results/1")
    done = queue.get(job.id)
    assert done.state == DONE
    assert done.stage_seconds == {"segment": 1.235}
    assert done.result_dir == "/results/1"
    assert done.finished_at >= done.started_at


def test_out_of_scope_keeps_reason(queue):
    job = queue.enqueue(AnalysisTarget("1.2", "1.2.3", Path("/store/a"), 1))
    queue.claim_next()
    queue.finish(job.id, OUT_OF_SCOPE, reason="T11, T12 not in view")
    assert queue.get(job.id).reason == "T11, T12 not in view"


def test_failed_job_can_be_retried_only_when_failed(queue):
    job = queue.enqueue(AnalysisTarget("1.2", "1.2.3", Path("/store/a"), 1))
    with pytest.raises(ValueError, match="only failed"):
        queue.retry(job.id)
    queue.claim_next()
    queue.finish(job.id, FAILED, error="segment: boom")
    assert queue.get(job.id).error == "segment: boom"
    assert queue.retry(job.id).state == QUEUED
    assert queue.claim_next().attempts == 2
    with pytest.raises(KeyError):
        queue.retry(999)


def test_interrupted_jobs_return_to_the_queue(queue):
    job = queue.enqueue(AnalysisTarget("1.2", "1.2.3", Path("/store/a"), 1))
    queue.claim_next()
    assert queue.recover_interrupted() == [job.id]
    assert queue.get(job.id).state == QUEUED


def test_final_state_is_required(queue):
    job = queue.enqueue(AnalysisTarget("1.2", "1.2.3", Path("/store/a"), 1))
    with pytest.raises(ValueError):
        queue.finish(job.id, RUNNING)
