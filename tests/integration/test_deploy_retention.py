"""Retention (``scpnode purge``) and backups (``scpnode backup``) on a real store and node database."""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, SegmentationStorage, generate_uid

from scpnode.cli import main
from scpnode.config import RetentionSettings
from scpnode.delivery import outbox
from scpnode.pipeline.jobs import DONE, FAILED, AnalysisTarget, Job, JobQueue
from scpnode.schema import open_node_database, prepare
from scpnode.storage import index
from scpnode.storage import retention
from scpnode.storage.index import InstanceMeta, PatientStudy, SeriesState
from scpnode.storage.store import InstanceStore

DAY = 86400.0
NOW = time.time()


def _dataset(sop_class: str, study: str, series: str, modality: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = sop_class, ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = study, series, modality
    ds.PatientID, ds.PatientName = "RET-1", "Retention^Test"
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated, ds.PixelRepresentation, ds.SamplesPerPixel = 16, 1, 1
    ds.PixelData = bytes(32)
    return ds


class Site:
    """A node database and store holding received series in various states."""

    def __init__(self, root: Path):
        self.root = root
        self.store = InstanceStore(root / "store")
        self.db = open_node_database(root / "node.db")
        prepare(self.db)
        self.jobs = JobQueue(self.db)

    def receive(self, slices: int = 3, received_at: float = NOW - 40 * DAY) -> tuple[str, str, list[Path]]:
        study, series = generate_uid(), generate_uid()
        paths = []
        for _ in range(slices):
            ds = _dataset(CTImageStorage, study, series, "CT")
            path = self.store.instance_path(study, series, ds.SOPInstanceUID)
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            self.store.write(path, buffer.getvalue())
            os.utime(path, (received_at, received_at))  # as if written when it was received
            index.record_instance(self.db, InstanceMeta.from_dataset(ds), PatientStudy.from_dataset(ds),
                                  path=path, folder=path.parent, size=len(buffer.getvalue()),
                                  sha256=hashlib.sha256(buffer.getvalue()).hexdigest(),
                                  transfer_syntax_uid=ExplicitVRLittleEndian, now=received_at)
            paths.append(path)
        index.complete_quiet_series(self.db, 1, 1, now=received_at + 60)
        return study, series, paths

    def decide(self, series_uid: str, selected: bool) -> None:
        ref = index.series_ref(self.db, series_uid)
        index.record_decision(self.db, ref, selected, None if selected else "min_slices", now=ref.last_received_at)

    def process(self, study: str, series: str, sent_at: float | None, destinations: int = 1,
                state: str = DONE) -> Job:
        """A job (done) whose result file went to the outbox of each destination (sent at ``sent_at``)."""
        ref = index.series_ref(self.db, series)
        job = self.jobs.enqueue(AnalysisTarget(study, series, ref.folder, ref.revision))
        self.jobs.claim_next()
        result_dir = self.root / "results" / f"job-{job.id}"
        result_dir.mkdir(parents=True)
        seg = _dataset(SegmentationStorage, study, generate_uid(), "SEG")
        seg.save_as(result_dir / "seg.dcm", enforce_file_format=True)
        for n in range(destinations):
            item = outbox.enqueue(self.db, result_dir / "seg.dcm", f"pacs{n}", job_id=job.id)
            if sent_at is not None:
                outbox.mark_sent(self.db, item, now=sent_at)
        self.jobs.finish(job.id, state, result_dir=str(result_dir))
        return self.jobs.get(job.id)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def test_delivered_series_are_purged_after_the_configured_days(site):
    study, old, old_files = site.receive()
    site.decide(old, True)
    results = Path(site.process(study, old, sent_at=NOW - 31 * DAY).result_dir)
    _, recent, recent_files = site.receive()
    site.decide(recent, True)
    site.process(study, recent, sent_at=NOW - 5 * DAY)

    outcomes = retention.purge(site.db, RetentionSettings(purge_images_after_days=30))

    assert [o.candidate.series_instance_uid for o in outcomes] == [old]
    assert outcomes[0].complete and outcomes[0].files_removed == 3
    assert not any(p.exists() for p in old_files) and not old_files[0].parent.exists()
    assert all(p.exists() for p in recent_files)
    assert (results / "seg.dcm").exists()  # derived results stay
    rows = list(site.db.query("SELECT purged_at FROM instances WHERE series_instance_uid = ?", [old]))
    assert len(rows) == 3 and all(r["purged_at"] for r in rows)  # index rows stay, marked
    assert index.series_ref(site.db, old).state == SeriesState.SELECTED
    assert retention.purge(site.db, RetentionSettings(purge_images_after_days=30)) == []  # idempotent


def test_a_series_reopened_after_a_purge_is_purged_again_once_delivered(site):
    study, series, files = site.receive()
    site.decide(series, True)
    site.process(study, series, sent_at=NOW - 40 * DAY)
    changed = pydicom.dcmread(files[0])  # the modality will send one image again, corrected
    changed.SeriesDescription = "corrected"
    rules = RetentionSettings(purge_images_after_days=30)
    assert len(retention.purge(site.db, rules)) == 1

    buffer = io.BytesIO()
    changed.save_as(buffer, enforce_file_format=True)
    site.store.write(files[0], buffer.getvalue())
    os.utime(files[0], (NOW - 39 * DAY, NOW - 39 * DAY))
    index.record_instance(site.db, InstanceMeta.from_dataset(changed), PatientStudy.from_dataset(changed),
                          path=files[0], folder=files[0].parent, size=len(buffer.getvalue()),
                          sha256=hashlib.sha256(buffer.getvalue()).hexdigest(),
                          transfer_syntax_uid=ExplicitVRLittleEndian, now=NOW - 39 * DAY)
    assert retention.purge(site.db, rules) == []  # reopened: not decided, not processed
    index.complete_quiet_series(site.db, 1, 1, now=NOW - 39 * DAY + 60)
    site.decide(series, True)
    site.process(study, series, sent_at=NOW - 35 * DAY)

    outcome, = retention.purge(site.db, rules)
    assert outcome.files_removed == 1 and not files[0].exists()


def test_undelivered_open_and_failed_series_are_kept(site):
    study, pending, pending_files = site.receive()
    site.decide(pending, True)
    site.process(study, pending, sent_at=None)  # outbox item still pending
    _, partly, partly_files = site.receive()
    site.decide(partly, True)
    job = site.process(study, partly, sent_at=NOW - 40 * DAY, destinations=1)
    outbox.enqueue(site.db, Path(job.result_dir) / "seg.dcm", "second-pacs", job_id=job.id)  # one destination still waiting
    _, failed, failed_files = site.receive()
    site.decide(failed, True)
    site.process(study, failed, sent_at=NOW - 40 * DAY, state=FAILED)  # a person may still retry it
    _, queued, queued_files = site.receive()
    site.decide(queued, True)  # selected, no job finished
    _, open_series, open_files = site.receive()  # never completed: still received
    site.db.execute("UPDATE series SET state = ? WHERE series_instance_uid = ?",
                    [SeriesState.RECEIVED.value, open_series])
    site.db.conn.commit()

    rules = RetentionSettings(purge_images_after_days=0, purge_unprocessed_after_days=0)
    assert retention.purge(site.db, rules) == []
    assert all(p.exists() for p in pending_files + partly_files + failed_files + queued_files + open_files)


def test_rejected_series_follow_the_unprocessed_rule(site):
    _, rejected, files = site.receive(received_at=NOW - 8 * DAY)
    site.decide(rejected, False)

    assert retention.purge_candidates(site.db, RetentionSettings(purge_images_after_days=0)) == []
    assert retention.purge_candidates(site.db, RetentionSettings(purge_unprocessed_after_days=10)) == []
    outcomes = retention.purge(site.db, RetentionSettings(purge_unprocessed_after_days=7))
    assert [o.candidate.rule for o in outcomes] == [retention.UNPROCESSED]
    assert not any(p.exists() for p in files)


def test_a_file_rewritten_after_indexing_is_left_alone(site):
    study, series, files = site.receive()
    site.decide(series, True)
    site.process(study, series, sent_at=NOW - 40 * DAY)
    files[0].write_bytes(files[0].read_bytes())  # a resend being received: newer than its index row

    outcome, = retention.purge(site.db, RetentionSettings(purge_images_after_days=30))
    assert not outcome.complete and outcome.files_removed == 2
    assert files[0].exists()
    assert index.series_ref(site.db, series) is not None
    assert retention.purge_candidates(site.db, RetentionSettings(purge_images_after_days=30))  # retried next run


def _config(root: Path, retention_toml: str) -> Path:
    path = root / "node.toml"
    path.write_text(f'[node]\nstorage_dir = "store"\ndatabase = "node.db"\n\n[retention]\n{retention_toml}\n')
    return path


def test_purge_command_dry_run_lists_and_keeps(site, capsys):
    study, series, files = site.receive()
    site.decide(series, True)
    site.process(study, series, sent_at=NOW - 40 * DAY)
    prepare(site.db)
    config = _config(site.root, "purge_images_after_days = 30")

    assert main(["--config", str(config), "purge", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would purge: series {series} of study {study}: 3 files" in out
    assert "Retention^Test" not in out and "RET-1" not in out
    assert all(p.exists() for p in files)

    assert main(["--config", str(config), "purge"]) == 0
    assert "1 series" in capsys.readouterr().out
    assert not any(p.exists() for p in files)


def test_purge_command_without_rules_does_nothing(site, capsys):
    site.receive()
    assert main(["--config", str(_config(site.root, "")), "purge"]) == 0
    assert "retention is off" in capsys.readouterr().out


def test_backup_is_a_consistent_copy_while_a_writer_is_open(site, tmp_path):
    site.receive()
    writer = open_node_database(site.root / "node.db")  # uncommitted work of a running node is not copied
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("DELETE FROM instances")
    config = _config(site.root, "")
    dest = tmp_path / "backups"
    dest.mkdir()

    assert main(["--config", str(config), "backup", str(dest)]) == 0
    writer.conn.rollback()
    backup, = dest.glob("scpnode-*.db")
    copy = sqlite3.connect(backup)
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert copy.execute("SELECT count(*) FROM instances").fetchone()[0] == 3
    assert main(["--config", str(config), "backup", str(backup)]) == 2  # no silent overwrite
