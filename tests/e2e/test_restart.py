"""kill -9 of the whole node during a job: after a restart the job completes once, no duplicates in the PACS."""

from __future__ import annotations

import os
import signal
import time

import pytest

from inference.phantom import abdominal_ct, generate_phantom, write_phantom_study
from scpnode.delivery.orthanc import free_port
from scpnode.pipeline.jobs import JobQueue
from scpnode.schema import open_node_database
from scpnode.worklist import parse_query, query_worklist
from tests.e2e.conftest import (NODE_AET, PHANTOM_SHAPE, push_study, serve_config, series_of_study, start_serve,
                                wait_until)

pytestmark = pytest.mark.e2e


def test_kill_minus_9_during_a_job(orthanc, tmp_path):
    workdir = tmp_path / "node"
    workdir.mkdir()
    port = free_port()
    orthanc.add_modality("scpnode", NODE_AET, "127.0.0.1", port)
    config = serve_config(workdir, port, orthanc, sender_aet=orthanc.aet, quiet_seconds=2)
    study = write_phantom_study(generate_phantom(abdominal_ct(31, shape=PHANTOM_SHAPE)), tmp_path / "study")

    node = start_serve(config, workdir / "serve.log")
    try:
        wait_until(lambda: (workdir / "node.db").exists(), 30, "the node database")
        push_study(orthanc, study.series.files, study.series.study.study_uid)

        def running_job():
            jobs = JobQueue(open_node_database(workdir / "node.db")).recent(5)
            return jobs and jobs[0].state == "running" and jobs[0].stage in ("segment", "measure") and jobs[0]

        job = wait_until(running_job, 300, "a running job")
    finally:
        os.killpg(node.pid, signal.SIGKILL)  # the node and its worker processes, as a crash would
        node.wait()

    restarted = start_serve(config, workdir / "serve.log")
    try:
        queue = JobQueue(open_node_database(workdir / "node.db"))
        done = wait_until(lambda: queue.get(job.id).state in ("done", "failed") and queue.get(job.id), 600, "the job")
        assert done.state == "done", done.error
        assert done.attempts == 2
        wait_until(lambda: series_of_study(orthanc, study.series.study.study_uid).get("OT"), 120, "results in Orthanc")
        time.sleep(2)  # anything sent twice would arrive now
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(timeout=60) == 0

    assert len(queue.recent(10)) == 1
    counts = series_of_study(orthanc, study.series.study.study_uid)
    assert counts == {"CT": len(study.series.files), "SEG": 1, "SR": 1, "OT": 1}
    assert len(query_worklist(open_node_database(workdir / "node.db"), parse_query({})).rows) == 1
