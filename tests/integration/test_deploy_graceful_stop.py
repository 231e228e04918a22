"""The real ``scpnode serve`` process and SIGTERM, as systemd stops it (KillSignal=SIGTERM, KillMode=mixed).

When the signal arrives an association is in the middle of sending a series:
the node stops listening, lets the association finish (every instance
acknowledged and stored) and exits 0. After a restart the work resumes: the
study received during the stop is processed, a job left queued runs, results
reach the PACS, and ``/healthz`` reports a healthy node.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE

from inference.phantom import abdominal_ct, generate_phantom, write_phantom_study
from scpnode.delivery.orthanc import free_port
from scpnode.pipeline.jobs import JobQueue
from scpnode.schema import open_node_database
from tests.e2e.conftest import NODE_AET, PHANTOM_SHAPE, serve_config, series_of_study, start_serve, wait_until

pytestmark = pytest.mark.integration

SENDER_AET = "MODALITY"


def _health(web_port: int) -> tuple[int, dict] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/healthz", timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)
    except OSError:
        return None


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _study(seed: int, folder: Path, shape: tuple[int, int, int] = PHANTOM_SHAPE):
    study = write_phantom_study(generate_phantom(abdominal_ct(seed, shape=shape)), folder)
    return study, [pydicom.dcmread(path) for path in study.series.files]


def _association(port: int, datasets: list[pydicom.Dataset]):
    ae = AE(ae_title=SENDER_AET)
    ae.add_requested_context(datasets[0].SOPClassUID, datasets[0].file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AET)
    assert assoc.is_established
    return assoc


def _sigterm_during_association(node: subprocess.Popen, port: int, datasets: list[pydicom.Dataset]) -> list[int]:
    """Send half the data sets, SIGTERM the node as systemd does, send the rest once it stopped listening."""
    assoc = _association(port, datasets)
    half = len(datasets) // 2
    statuses = [assoc.send_c_store(ds).Status for ds in datasets[:half]]
    node.send_signal(signal.SIGTERM)  # KillSignal=SIGTERM, KillMode=mixed: the main process only
    wait_until(lambda: not _listening(port), 120, "the node to stop listening")  # stopping has begun
    assert node.poll() is None  # ...and the node waits for this association
    statuses += [assoc.send_c_store(ds).Status for ds in datasets[half:]]
    assoc.release()
    assert node.wait(timeout=60) == 0
    return statuses


def _stopped(node: subprocess.Popen) -> None:
    if node.poll() is None:
        node.kill()
        node.wait()


def test_sigterm_lets_the_association_finish_and_work_resumes_after_restart(orthanc, tmp_path):
    workdir = tmp_path / "node"
    workdir.mkdir()
    port, web_port = free_port(), free_port()
    config = serve_config(workdir, port, orthanc, sender_aet=SENDER_AET, quiet_seconds=5, web_port=web_port)
    study, datasets = _study(23, tmp_path / "study")
    log = workdir / "serve.log"

    node = start_serve(config, log)
    try:
        status, health = wait_until(lambda: _health(web_port), 60, "the web UI's /healthz")
        assert status == 200 and health["status"] == "ok", health
        statuses = _sigterm_during_association(node, port, datasets)
    finally:
        _stopped(node)
    assert statuses == [0x0000] * len(datasets)
    db = open_node_database(workdir / "node.db")
    assert db.execute("SELECT count(*) FROM instances").fetchone()[0] == len(datasets)
    assert all(Path(row[0]).exists() for row in db.execute("SELECT path FROM instances"))
    assert "node_stopped" in log.read_text()

    restarted = start_serve(config, log)
    try:
        queue = JobQueue(open_node_database(workdir / "node.db"))
        job = wait_until(lambda: [j for j in queue.recent(5) if j.state in ("done", "failed")], 300, "the job")[0]
        assert job.state == "done", job.error
        study_uid = study.series.study.study_uid
        wait_until(lambda: {"SEG", "SR", "OT"} <= set(series_of_study(orthanc, study_uid)), 60, "results in the PACS")
        wait_until(lambda: _health(web_port)[1]["outbox"]["sent"] == 3, 30, "the outbox to be delivered")
        status, health = _health(web_port)
        assert status == 200 and health["jobs"]["done"] == 1 and health["status"] == "ok", health
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(timeout=60) == 0
    assert len(queue.recent(10)) == 1


def test_sigterm_finishes_the_running_job_and_the_queued_one_runs_after_restart(orthanc, tmp_path):
    workdir = tmp_path / "node"
    workdir.mkdir()
    port, web_port = free_port(), free_port()
    config = serve_config(workdir, port, orthanc, sender_aet=SENDER_AET, quiet_seconds=5, web_port=web_port)
    (first, first_ds), (second, second_ds) = (_study(seed, tmp_path / f"study{seed}") for seed in (23, 24))
    # Sent while the node stops; rejected later by the selection rules (6 mm pixels), so it costs no job.
    _, late_ds = _study(25, tmp_path / "late", shape=(64, 64, 64))

    node = start_serve(config, workdir / "serve.log")
    try:
        wait_until(lambda: _health(web_port), 60, "the web UI")
        assoc = _association(port, first_ds + second_ds)
        assert all(assoc.send_c_store(ds).Status == 0x0000 for ds in first_ds + second_ds)
        assoc.release()
        queue = JobQueue(open_node_database(workdir / "node.db"))
        queued, running = wait_until(lambda: [j.state for j in queue.recent(5)] == ["queued", "running"]
                                and queue.recent(5), 120, "one job running, one queued")
        assert _sigterm_during_association(node, port, late_ds) == [0x0000] * len(late_ds)
    finally:
        _stopped(node)
    assert queue.get(running.id).state == "done", queue.get(running.id).error  # finished before the exit
    assert queue.get(queued.id).state == "queued"  # left for the next start

    restarted = start_serve(config, workdir / "serve.log")
    try:
        wait_until(lambda: queue.get(queued.id).state in ("done", "failed"), 300, "the queued job")
        assert queue.get(queued.id).state == "done" and queue.get(queued.id).attempts == 1
        for study in (first, second):
            study_uid = study.series.study.study_uid
            wait_until(lambda: {"SEG", "SR", "OT"} <= set(series_of_study(orthanc, study_uid)), 60, "results in the PACS")
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(timeout=60) == 0
    assert len(queue.recent(10)) == 2  # the late, rejected series made no job
