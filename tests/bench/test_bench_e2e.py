"""End-to-end latency and throughput of the node on this machine's CPU.

Latency: a 512 x 512 x 300 phantom at 1.25 mm (0.78 mm pixels), from the last
instance received by the node to SEG + SR + visual report stored in Orthanc,
with the time of each pipeline stage. Throughput: studies per hour when
several reduced-size studies arrive at once (``SCPNODE_BENCH_STUDIES``,
default 6; 10 with ``SCPNODE_BENCH_FULL=1``) with the default concurrency of 1.
"""

from __future__ import annotations

import time

import pytest

from inference.phantom import abdominal_ct, generate_phantom, write_phantom_study
from scpnode.assembly import assemble_node
from scpnode.delivery.orthanc import free_port
from scpnode.schema import open_node_database
from tests.bench import scale
from tests.e2e.conftest import NODE_AET, NodeAndPacs, e2e_settings, push_study, series_of_study

pytestmark = pytest.mark.bench

QUIET_SECONDS = 1.0


def _node(tmp_path, orthanc) -> NodeAndPacs:
    port = free_port()
    orthanc.add_modality("scpnode", NODE_AET, "127.0.0.1", port)
    settings = e2e_settings(tmp_path / "node", orthanc, port,
                            completion={"quiet_seconds": QUIET_SECONDS, "check_interval_seconds": 0.2})
    node = assemble_node(settings, web=False, poll_seconds=0.2, sender_options={"poll_seconds": 0.2})
    node.start()
    return NodeAndPacs(node, settings, orthanc)


def _results_in_pacs(orthanc, study_uid: str) -> bool:
    counts = series_of_study(orthanc, study_uid)
    return all(counts.get(modality) for modality in ("SEG", "SR", "OT"))


def test_latency_512x512x300(tmp_path, orthanc, bench_report):
    study = write_phantom_study(generate_phantom(abdominal_ct(41)), tmp_path / "study")
    running = _node(tmp_path, orthanc)
    try:
        push_study(orthanc, study.series.files, study.series.study.study_uid)
        db = open_node_database(running.settings.node.database)
        last_received = db.execute("select max(received_at) from instances").fetchone()[0]
        job, = running.wait_for_jobs(1, timeout=900)
        while job.state == "done" and not _results_in_pacs(orthanc, study.series.study.study_uid):
            time.sleep(0.2)
        stored = time.time()
    finally:
        running.node.stop()
    assert job.state == "done", job.error
    bench_report("512x512x300 last instance -> SEG+SR+report in Orthanc",
                 seconds=stored - last_received, quiet_period_s=QUIET_SECONDS,
                 **{f"{stage}_s": seconds for stage, seconds in job.stage_seconds.items()})


def test_throughput_studies_arriving_at_once(tmp_path, orthanc, bench_report):
    count = scale.studies(ci=6, full=10)
    shape = (272, 272, 160)  # 1.47 mm pixels: inside the default selection rules
    studies = [write_phantom_study(generate_phantom(abdominal_ct(100 + i, shape=shape)), tmp_path / f"s{i}")
               for i in range(count)]
    running = _node(tmp_path, orthanc)
    try:
        for study in studies:
            for path in study.series.files:
                orthanc.upload(path)
        started = time.monotonic()
        orthanc.post("/modalities/scpnode/store", {
            "Resources": [orthanc.find_study(s.series.study.study_uid) for s in studies], "Synchronous": True})
        jobs = running.wait_for_jobs(count, timeout=3600)
        running.wait_for_outbox_empty()
        elapsed = time.monotonic() - started
    finally:
        running.node.stop()
    done = sum(job.state == "done" for job in jobs)
    bench_report(f"{count} studies {'x'.join(map(str, shape))} at once, concurrency 1",
                 seconds=elapsed, studies_per_hour=3600 * count / elapsed, done=done,
                 mean_job_s=sum(sum(j.stage_seconds.values()) for j in jobs) / count)
