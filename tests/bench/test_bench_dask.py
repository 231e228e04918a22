"""Benchmark: pipeline throughput with the local executor and with 1 and 2 Dask workers on this machine.

``SCPNODE_BENCH_STUDIES`` (default 4; 12 with ``SCPNODE_BENCH_FULL=1``) phantom abdominal CTs (192 x 192 x 112,
T10-S1) are indexed, selected and queued at once in a fresh node database;
then the node's pipeline (:class:`scpnode.pipeline.service.InferencePipeline`)
runs until every job is final. Printed per executor (never asserted):

- studies per hour from the queue to the last job recorded (the local
  executor's figure includes spawning its worker process once);
- the steady rate, from the first job recorded to the last, as seconds per
  study and studies per hour;
- the mean compute of a job (its stages' seconds, measured where it ran).

The per-study overhead of the cluster is the steady seconds per study with
one Dask worker minus those of the local executor (both one job at a time);
and one study alone, queued on an idle node, shows the latency beyond its
compute with each executor (the local figure includes spawning the worker
process, once per node start).

Dask workers run as ``dask worker --nthreads 1`` processes on this machine;
with ``worker_storage_dir`` they read the series from the store (as on a
shared file system); with ``SCPNODE_BENCH_FULL=1`` also without it, the node
then sending each series as bytes.
"""

from __future__ import annotations

import time
from pathlib import Path

import pydicom
import pytest

from inference.phantom import abdominal_ct, generate_phantom, write_phantom_study
from scpnode import worklist
from scpnode.config import Settings, settings_from_dict
from scpnode.delivery import outbox
from scpnode.pipeline.jobs import FINAL_STATES, AnalysisTarget, Job, JobQueue
from scpnode.pipeline.service import InferencePipeline
from scpnode.schema import open_node_database
from scpnode.storage import index
from scpnode.storage.index import InstanceMeta, PatientStudy
from tests.bench.scale import FULL, studies
from tests.integration.dask_cluster import LocalDaskCluster

pytestmark = pytest.mark.bench

SHAPE = (192, 192, 112)
COMPUTE_STAGES = ("load", "segment", "coverage", "measure", "encode")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """The phantom studies, each in its own folder under one store."""
    root = tmp_path_factory.mktemp("bench_dask_store")
    for i in range(studies(ci=4, full=12)):
        write_phantom_study(generate_phantom(abdominal_ct(200 + i, shape=SHAPE)), root / f"s{i}")
    return root


def _settings(workdir: Path, store: Path, **pipeline) -> Settings:
    return settings_from_dict({
        "node": {"storage_dir": str(store), "database": str(workdir / "node.db"),
                 "results_dir": str(workdir / "results")},
        "destinations": [{"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": 11112}],
        "pipeline": {"uncertain_levels": "send", **pipeline},
    })


def _queue_every_series(settings: Settings, store: Path, studies: int | None = None) -> int:
    db = open_node_database(settings.node.database)
    index.create_tables(db)
    outbox.create_tables(db)
    worklist.ensure_schema(db)
    folders = sorted(store.glob("s*/dicom"))[:studies]
    for path in [path for folder in folders for path in sorted(folder.glob("*.dcm"))]:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        index.record_instance(db, InstanceMeta.from_dataset(ds), PatientStudy.from_dataset(ds), path=path,
                              folder=path.parent, size=path.stat().st_size, sha256=path.name,
                              transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID), now=100.0)
    queue = JobQueue(db)
    series = index.complete_quiet_series(db, 30, 600, now=200.0)
    for ref in series:
        assert index.record_decision(db, ref, True, None)
        queue.enqueue(AnalysisTarget(ref.study_instance_uid, ref.series_instance_uid, ref.folder, ref.revision))
    return len(series)


def _run(settings: Settings, count: int) -> tuple[float, list[Job]]:
    pipeline = InferencePipeline(settings, poll_seconds=0.1)
    queue = JobQueue(open_node_database(settings.node.database))
    started = time.monotonic()
    pipeline.start()
    try:
        while not all(job.state in FINAL_STATES for job in queue.recent(count)):
            time.sleep(0.1)
        elapsed = time.monotonic() - started
    finally:
        pipeline.stop()
    return elapsed, queue.recent(count)


def test_throughput_local_vs_dask_workers(store, tmp_path, bench_report):
    runs: dict[str, tuple[float, list[Job]]] = {}
    count = _queue_every_series(settings := _settings(tmp_path / "local", store), store)
    runs["local, concurrency 1"] = _run(settings, count)
    latency: dict[str, tuple[float, list[Job]]] = {}
    _queue_every_series(settings := _settings(tmp_path / "local-one", store), store, studies=1)
    latency["local"] = _run(settings, 1)
    for workers, shared in ((1, True), (2, True), *([(2, False)] if FULL else [])):
        label = f"dask, {workers} worker{'s' * (workers > 1)}, series {'shared' if shared else 'as bytes'}"
        folder = tmp_path / f"dask-{workers}-{'shared' if shared else 'bytes'}"
        cluster = LocalDaskCluster(folder / "cluster", workers=workers)
        settings = _settings(folder, store, executor="dask", scheduler_address=cluster.address,
                             **({"worker_storage_dir": str(store)} if shared else {}))
        _queue_every_series(settings, store)
        try:
            cluster.start()
            runs[label] = _run(settings, count)
            if workers == 1:  # one study alone on the warm cluster: the latency the cluster adds
                _queue_every_series(settings := _settings(folder / "one", store, executor="dask",
                                                          scheduler_address=cluster.address,
                                                          worker_storage_dir=str(store)), store, studies=1)
                latency["dask"] = _run(settings, 1)
        finally:
            cluster.stop()
    for label, (elapsed, jobs) in runs.items():
        compute = sum(sum(job.stage_seconds.get(s, 0.0) for s in COMPUTE_STAGES) for job in jobs) / count
        steady = _steady_seconds(jobs)
        bench_report(f"{count} studies {'x'.join(map(str, SHAPE))}, {label}", seconds=elapsed,
                     studies_per_hour=3600 * count / elapsed, steady_studies_per_hour=3600 / steady,
                     steady_per_study_s=steady, mean_compute_s=compute, done=sum(j.state == "done" for j in jobs))
    local_steady, dask_steady = (_steady_seconds(runs[label][1]) for label in (
        "local, concurrency 1", "dask, 1 worker, series shared"))
    bench_report("per-study overhead of the cluster (steady, 1 dask worker vs local concurrency 1)",
                 seconds=dask_steady - local_steady)
    for name, (elapsed, (job,)) in latency.items():
        compute = sum(job.stage_seconds.get(s, 0.0) for s in COMPUTE_STAGES)
        bench_report(f"one study alone, {name}: queue -> recorded", seconds=elapsed, compute_s=compute,
                     beyond_compute_s=elapsed - compute)


def _steady_seconds(jobs: list[Job]) -> float:
    """Seconds per study between the first and the last job recorded."""
    finished = sorted(job.finished_at for job in jobs)
    return (finished[-1] - finished[0]) / (len(jobs) - 1)
