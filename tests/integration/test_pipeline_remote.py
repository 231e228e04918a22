"""A job computed as a Dask worker computes it (without a cluster): the payload carries what the compute
reads from the node, and the node records the returned files."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from inference.phantom import abdominal_ct, generate_phantom, write_phantom_study
from scpnode import worklist
from scpnode.config import Settings
from scpnode.delivery import outbox
from scpnode.pipeline.analysis import process_job, record_job, sent_predecessor
from scpnode.pipeline.jobs import DONE, AnalysisTarget, JobQueue
from scpnode.pipeline.remote import remote_job, run_remote_job
from scpnode.schema import open_node_database
from scpnode.storage import index
from tests.integration.node_helpers import index_stored_file

pytestmark = pytest.mark.integration


def test_a_confirmed_revision_computed_remotely_reuses_the_stored_segmentation_and_names_the_sent_sr(tmp_path):
    settings = Settings.model_validate({
        "node": {"database": str(tmp_path / "node.db"), "storage_dir": str(tmp_path / "store"),
                 "results_dir": str(tmp_path / "results")},
        "destinations": [{"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": 11112}],
        "pipeline": {"uncertain_levels": "send"},
    })
    db = open_node_database(settings.node.database)
    index.create_tables(db)
    outbox.create_tables(db)
    worklist.ensure_schema(db)
    written = write_phantom_study(generate_phantom(abdominal_ct(10, shape=(128, 128, 80))), tmp_path / "store" / "s")
    for path in sorted(written.dicom_folder.iterdir()):
        index_stored_file(db, path, sha=path.name, now=100.0)
    (series,) = index.complete_quiet_series(db, 30, 600, now=200.0)
    assert index.record_decision(db, series, True, None)
    queue = JobQueue(db)
    job = queue.enqueue(AnalysisTarget(series.study_instance_uid, series.series_instance_uid, series.folder,
                                       series.revision))
    queue.claim_next()
    assert process_job(settings, job.id).state == DONE  # revision 0, locally: sent
    first_sr = pydicom.dcmread(queue.get(job.id).output_dir / "sr.dcm")

    queue.confirm_levels(job.id, 0, "rad.reviewer")
    job = queue.claim_next()
    payload = remote_job(settings, job, sent_predecessor(db, queue, job, Path(job.result_dir)))
    assert payload.series_path is None and len(payload.series_files) == 80, "no worker_storage_dir: bytes"
    assert any(name.startswith("segmentation/") for name in payload.job_files), "revision 0's segmentation goes along"
    result = run_remote_job(payload)
    assert result.computation.error == ""
    assert {"seg.dcm", "sr.dcm", "report.dcm", "measurements.json"} <= set(result.files)

    assert record_job(db, settings, result.computation, result.files).state == DONE
    job = queue.get(job.id)
    assert job.output_dir == Path(job.result_dir) / "revision-1"
    second_sr = pydicom.dcmread(job.output_dir / "sr.dcm")
    predecessor = second_sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert predecessor.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == first_sr.SOPInstanceUID
    assert len(outbox.items(db)) == 6, "both revisions' SEG, SR and report, each once"
    # The same result delivered twice is recorded once.
    assert "recorded already" in record_job(db, settings, result.computation, result.files).reason
    assert len(outbox.items(db)) == 6
