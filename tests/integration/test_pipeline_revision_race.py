"""The revision race: a series reopened by new content while its first job runs."""

from __future__ import annotations

import pytest

from inference.phantom import abdominal_ct, generate_phantom, write_phantom_study
from scpnode import worklist
from scpnode.config import Settings
from scpnode.delivery import outbox
from scpnode.pipeline.analysis import process_job
from scpnode.pipeline.jobs import DONE, AnalysisTarget, JobQueue
from scpnode.schema import open_node_database
from scpnode.storage import index
from scpnode.storage.index import SeriesState
from tests.integration.node_helpers import index_stored_file

pytestmark = pytest.mark.integration


def test_results_of_an_outdated_revision_are_not_sent_and_the_new_revision_is_analysed_alone(tmp_path) -> None:
    settings = Settings.model_validate({
        "node": {"database": str(tmp_path / "node.db"), "storage_dir": str(tmp_path / "store"),
                 "results_dir": str(tmp_path / "results")},
        "destinations": [{"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": 11112}],
    })
    db = open_node_database(settings.node.database)
    index.create_tables(db)
    outbox.create_tables(db)
    worklist.ensure_schema(db)
    written = write_phantom_study(generate_phantom(abdominal_ct(41, shape=(160, 160, 100))), tmp_path / "study")
    files = sorted(written.dicom_folder.iterdir())
    for path in files:
        index_stored_file(db, path, sha=path.name, now=100.0)
    (series,) = index.complete_quiet_series(db, 30, 600, now=200.0)
    assert index.record_decision(db, series, True, None)
    queue = JobQueue(db)
    first = queue.enqueue(AnalysisTarget(series.study_instance_uid, series.series_instance_uid, series.folder,
                                         series.revision))
    queue.claim_next()

    index_stored_file(db, files[0], sha="changed content", now=250.0)  # the PACS resends a corrected image: revision 2
    assert index.series_ref(db, series.series_instance_uid).revision == 2

    outcome = process_job(settings, first.id)
    assert outcome.state == DONE and "new content while it was analysed" in outcome.reason
    assert outbox.items(db) == [], "nothing of the outdated revision is sent"
    assert worklist.query_worklist(db, worklist.parse_query({})).rows == []
    assert index.series_ref(db, series.series_instance_uid).state is SeriesState.RECEIVED, "left to be decided again"
