"""The node with ``[pipeline] executor = "dask"``: a real scheduler and two workers on loopback.

Studies arrive over DICOM, jobs are computed on the workers and the node
records and sends the results to a real Orthanc. Exactly once is checked
where it is hard: ten studies at once, a worker killed (SIGKILL) in the
middle of a job, and the scheduler killed and started again while jobs are out.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
from distributed import Client

from inference.phantom import abdominal_ct, generate_phantom, write_phantom_study
from inference.phantom.cohort import generate_cohort
from scpnode.assembly import assemble_node
from scpnode.cli import main
from scpnode.config import Settings
from scpnode.delivery import outbox
from scpnode.delivery.orthanc import LocalOrthanc
from scpnode.node import Node
from scpnode.pipeline.analysis import JobComputation, JobRequest, record_job
from scpnode.pipeline.jobs import DONE, FINAL_STATES, Job, JobQueue
from scpnode.schema import open_node_database
from tests.e2e.conftest import series_of_study
from tests.integration.dask_cluster import LocalDaskCluster
from tests.integration.node_helpers import node_settings, storescu, wait_for

pytestmark = pytest.mark.integration

SHAPE = (128, 128, 80)
"""Small phantoms (3.1 mm pixels, 4.7 mm slices): a job takes a second or two."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDaskCluster]:
    running = LocalDaskCluster(tmp_path_factory.mktemp("dask")).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def studies(tmp_path: Path):
    """Write ``count`` phantom abdominal CTs (T11-L2 in view) and return them."""
    def write(count: int, first_seed: int = 10):  # seed 9 at this size does not reach T11
        return [write_phantom_study(generate_phantom(abdominal_ct(first_seed + i, shape=SHAPE)), tmp_path / f"s{i}")
                for i in range(count)]
    return write


def _start_node(workdir: Path, orthanc: LocalOrthanc, cluster: LocalDaskCluster, **pipeline) -> tuple[Node, Settings]:
    settings = node_settings(
        # sync_writes off: the studies arrive in seconds rather than at the pace of fsync
        workdir, node={"results_dir": str(workdir / "results"), "sync_writes": False},
        destinations=[{"name": "pacs", "ae_title": orthanc.aet, "host": "127.0.0.1", "port": orthanc.dicom_port}],
        # "send": a phantom whose levels rest on few anchors is sent too (marked unconfirmed), not held
        pipeline={"executor": "dask", "scheduler_address": cluster.address, "uncertain_levels": "send", **pipeline},
        selection={"max_pixel_spacing_mm": 3.5}, web={"enabled": False})
    node = assemble_node(settings, web=False, poll_seconds=0.2, sender_options={"poll_seconds": 0.2})
    node.start()
    return node, settings


def _send(node: Node, studies) -> None:
    """Each study on its own association, up to 8 at once (the sender's limit in ``node_settings``)."""
    with ThreadPoolExecutor(8) as pool:
        for sent in pool.map(lambda study: storescu(node.port, study.series.files), studies):
            assert sent.returncode == 0, sent.stderr


def _final_jobs(settings: Settings, count: int, timeout: float = 120.0) -> list[Job]:
    queue = JobQueue(open_node_database(settings.node.database))

    def finished() -> list[Job] | None:
        jobs = queue.recent(100)
        return jobs if len(jobs) == count and all(job.state in FINAL_STATES for job in jobs) else None
    return sorted(wait_for(finished, timeout=timeout, interval=0.2), key=lambda job: job.id)


def _assert_each_result_sent_once(settings: Settings, orthanc: LocalOrthanc, studies, jobs: list[Job]) -> None:
    assert [job.state for job in jobs] == [DONE] * len(studies), [job.error for job in jobs]
    db = open_node_database(settings.node.database)
    wait_for(lambda: all(item.state == outbox.OutboxState.SENT for item in outbox.items(db)), timeout=60)
    items = outbox.items(db)
    assert len(items) == len({item.sop_instance_uid for item in items}) == 3 * len(studies)
    for study in studies:
        assert series_of_study(orthanc, study.series.study.study_uid) == {"SEG": 1, "SR": 1, "OT": 1}
    rows = db.execute("select count(*), count(distinct study_uid) from worklist").fetchone()
    assert tuple(rows) == (len(studies), len(studies))


def _processing(cluster: LocalDaskCluster) -> dict[str, tuple[str, ...]]:
    """Worker address -> keys of node jobs it is computing now."""
    with cluster.client() as client:
        return {worker: tuple(k for k in keys if str(k).startswith("scpnode-job-"))
                for worker, keys in client.processing().items()}


def test_ten_studies_at_once_are_each_scored_exactly_once(cluster, orthanc, studies, tmp_path):
    written = studies(10)
    cluster.start()
    node, settings = _start_node(tmp_path / "node", orthanc, cluster)
    try:
        _send(node, written)
        jobs = _final_jobs(settings, 10)
        _assert_each_result_sent_once(settings, orthanc, written, jobs)
        assert all(job.attempts == 1 for job in jobs)
        assert all({"load", "segment", "measure", "encode", "outbox"} <= set(job.stage_seconds) for job in jobs)

        # A late second result of a finished job (a task that ran twice) changes nothing.
        db = open_node_database(settings.node.database)
        outcome = record_job(db, settings, JobComputation(JobRequest.of(jobs[0]), {"load": 99.0}))
        assert outcome.state == DONE and "recorded already" in outcome.reason
        assert JobQueue(db).get(jobs[0].id).stage_seconds["load"] != 99.0
        assert len(outbox.items(db)) == 30
    finally:
        node.stop()


def test_a_worker_killed_mid_job_its_job_reruns_on_the_other_and_is_sent_once(cluster, orthanc, studies, tmp_path):
    written = studies(1, first_seed=20)
    cluster.start()
    node, settings = _start_node(tmp_path / "node", orthanc, cluster)
    try:
        _send(node, written)
        busy = wait_for(lambda: [w for w, keys in _processing(cluster).items() if keys], timeout=60, interval=0.05)
        victim = [i for i in range(2) if cluster.worker_address(i) == busy[0]]
        assert victim, f"{busy[0]} is none of the test's workers"
        cluster.kill_worker(victim[0])
        jobs = _final_jobs(settings, 1)
        _assert_each_result_sent_once(settings, orthanc, written, jobs)
        assert jobs[0].attempts == 1, "rerun by the scheduler, not failed and retried by the node"
    finally:
        node.stop()
        cluster.start()


def test_the_scheduler_killed_and_restarted_the_node_resubmits_and_sends_each_once(cluster, orthanc, studies, tmp_path,
                                                                                  caplog):
    written = studies(4, first_seed=30)
    cluster.start()
    workdir = tmp_path / "node"
    # The workers read the series from the node's store (a shared file system here) rather than as bytes.
    node, settings = _start_node(workdir, orthanc, cluster, worker_storage_dir=str(workdir / "store"))
    caplog.set_level(logging.INFO, logger="scpnode.pipeline.dask_runner")
    try:
        _send(node, written)
        wait_for(lambda: any(_processing(cluster).values()), timeout=60, interval=0.05)
        cluster.kill_scheduler()
        for worker in cluster.workers.values():  # they stop once their scheduler is gone, as distributed does
            worker.wait(timeout=30)
        time.sleep(1.0)  # the node notices while the cluster is down
        cluster.start()
        jobs = _final_jobs(settings, 4)
        _assert_each_result_sent_once(settings, orthanc, written, jobs)
        assert all(job.attempts == 1 for job in jobs), "resubmitted as the same attempt"
        assert any(record.getMessage() == "job_resubmitted" for record in caplog.records)
    finally:
        node.stop()


def test_a_node_stopped_with_jobs_out_requeues_them_on_start_and_sends_each_once(cluster, orthanc, studies,
                                                                                tmp_path):
    written = studies(2, first_seed=40)
    cluster.start()
    node, settings = _start_node(tmp_path / "node", orthanc, cluster)
    try:
        _send(node, written)
        wait_for(lambda: any(_processing(cluster).values()), timeout=60, interval=0.05)
        node.services[0].runner.stop(wait=False)  # as a crash would: the jobs out stay "running"
    finally:
        node.stop()
    queue = JobQueue(open_node_database(settings.node.database))
    left_running = {job.id for job in queue.recent(10) if job.state == "running"}
    assert left_running

    node = assemble_node(settings, web=False, poll_seconds=0.2, sender_options={"poll_seconds": 0.2})
    node.start()
    try:
        jobs = _final_jobs(settings, 2)
        _assert_each_result_sent_once(settings, orthanc, written, jobs)
        assert all(job.attempts == (2 if job.id in left_running else 1) for job in jobs)
    finally:
        node.stop()


def test_cohort_extract_on_the_cluster_matches_local_extraction_and_resumes(cluster, tmp_path):
    cohort = generate_cohort(4, tmp_path / "cohort", seed=5, shape=(96, 96, 56))
    labels = pd.read_csv(cohort.labels)
    table = tmp_path / "cohort" / "cohort.csv"  # its paths are relative to its folder
    pd.DataFrame({"study_id": labels.patient_id, "image": labels.image_path, "mask": labels.mask_path,
                  "vertebrae": labels.vertebrae_path, "label": labels.outcome}).to_csv(table, index=False)
    features = tmp_path / "features.txt"
    features.write_text("original_firstorder_Mean\noriginal_glcm_Contrast\n")
    extract = ["cohort", "extract", str(table), "--features", str(features)]
    cluster.start()

    assert main([*extract, "--out", str(tmp_path / "local")]) == 0
    assert main([*extract, "--out", str(tmp_path / "cluster"), "--scheduler", cluster.address]) == 0
    local = sorted((tmp_path / "local" / "studies").glob("*.json"))
    on_cluster = sorted((tmp_path / "cluster" / "studies").glob("*.json"))
    assert [p.name for p in on_cluster] == [p.name for p in local] and len(local) == 4
    assert all(json.loads(a.read_text()) == json.loads(b.read_text()) for a, b in zip(local, on_cluster))

    # Resumable: a study whose result is missing is the only one extracted again.
    on_cluster[0].unlink()
    kept = on_cluster[1].stat().st_mtime_ns
    assert main([*extract, "--out", str(tmp_path / "cluster"), "--scheduler", cluster.address]) == 0
    assert on_cluster[0].is_file() and on_cluster[1].stat().st_mtime_ns == kept


def test_a_tls_cluster_scores_a_study_and_refuses_a_client_without_certificate(orthanc, studies, pki,
                                                                              tmp_path):
    written = studies(1, first_seed=50)
    cluster = LocalDaskCluster(tmp_path / "dask-tls", workers=1, pki=pki).start()
    try:
        node, settings = _start_node(tmp_path / "node", orthanc, cluster, scheduler_tls_ca_file=str(pki / "ca.pem"),
                                     scheduler_tls_cert_file=str(pki / "client.pem"),
                                     scheduler_tls_key_file=str(pki / "client.key"))
        try:
            _send(node, written)
            _assert_each_result_sent_once(settings, orthanc, written, _final_jobs(settings, 1))
        finally:
            node.stop()
        with pytest.raises((OSError, TimeoutError)):
            Client(cluster.address.replace("tls://", "tcp://"), timeout=3, set_as_default=False)
    finally:
        cluster.stop()
