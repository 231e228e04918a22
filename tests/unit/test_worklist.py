import csv
import io
from datetime import date

import pytest

from inference.results import StudyScore
from scpnode.config import WorklistSettings
from scpnode.schema import open_node_database
from scpnode.worklist import (
    UNCALIBRATED, FlagReason, Status, StudyInfo, WorklistError, WorklistQuery, add_scored_study, audit_log,
    ensure_schema, export_csv, flag_reasons, get_row, parse_query, query_worklist, set_status, status_counts,
)
from scpnode.worklist.rows import RESEARCH_CLASSES
from tests.unit.worklist_samples import add_study, measurements


@pytest.fixture
def db(tmp_path):
    database = open_node_database(tmp_path / "node.db")
    ensure_schema(database)
    return database


def test_flag_rule_follows_settings():
    settings = WorklistSettings()
    assert flag_reasons(measurements(l1_hu=180, vbmd=150), settings) == []
    assert flag_reasons(measurements(l1_hu=95, vbmd=70, genant=2), settings) == [
        FlagReason.VBMD, FlagReason.L1_HU, FlagReason.FRACTURE]
    assert flag_reasons(measurements(180, 150, risk=(0.4, "high")), settings) == [FlagReason.RISK]
    relaxed = WorklistSettings(flag_risk_categories=[], flag_vbmd_below=None, flag_l1_hu_below=None,
                               flag_genant_grade_at_least=None)
    assert flag_reasons(measurements(l1_hu=60, vbmd=40, genant=3, risk=(0.9, "high")), relaxed) == []


def test_uncalibrated_model_stores_no_risk_and_never_flags_on_it(db):
    entry = add_study(db, 1, risk=None)
    row = get_row(db, entry)
    assert row.calibrated is False and row.risk_probability is None and row.risk_category is None
    assert row.risk_display == UNCALIBRATED
    assert row.flagged is False
    assert row.measurements["score"]["model_id"] == "che2025-published"
    assert row.levels_measured == ["T11", "T12", "L1", "L2"]


def test_a_multiclass_research_model_shows_its_classes_as_research_and_never_flags_on_them(db):
    values = measurements(l1_hu=180, vbmd=150)
    values.score = StudyScore(model_id="fracture-type-site", model_version="1", calibrated=True,
                              class_probabilities={"biconcave": 0.2, "crush": 0.1, "wedge": 0.7},
                              predicted_class="wedge")
    entry = add_scored_study(db, StudyInfo("1.2.3", "1.2.3.4", patient_id="P1"), values, WorklistSettings())
    row = get_row(db, entry)
    assert row.class_probabilities == {"biconcave": 0.2, "crush": 0.1, "wedge": 0.7}
    assert row.risk_probability is None and row.risk_category is None and not row.flagged
    assert row.risk_display == RESEARCH_CLASSES + "biconcave 20%, crush 10%, wedge 70%"
    out = io.StringIO()
    export_csv(db, WorklistQuery(), out)
    (exported,) = csv.DictReader(io.StringIO(out.getvalue()))
    assert exported["risk"] == "not computed (research model)"
    assert exported["class_probabilities_research_use"] == "biconcave=0.200 crush=0.100 wedge=0.700"


def test_rescoring_keeps_status_and_audit(db):
    entry = add_study(db, 1)
    set_status(db, entry, Status.IN_REVIEW, "alice")
    again = add_study(db, 1, l1_hu=90)
    assert again == entry
    row = get_row(db, entry)
    assert row.status is Status.IN_REVIEW and row.flagged and row.l1_hu == 90
    assert [a.action for a in audit_log(db, entry)] == ["in_review", "rescored"]


def test_status_changes_need_notes_and_are_audited(db):
    entry = add_study(db, 1)
    with pytest.raises(WorklistError, match="note"):
        set_status(db, entry, Status.REFERRED, "alice", "   ")
    with pytest.raises(WorklistError, match="reason"):
        set_status(db, entry, "dismissed", "alice")
    with pytest.raises(WorklistError, match="unknown status"):
        set_status(db, entry, "deleted", "alice")
    with pytest.raises(WorklistError, match="no worklist entry"):
        set_status(db, 999, Status.IN_REVIEW, "alice")
    set_status(db, entry, Status.REFERRED, "alice", "to bone clinic")
    (audit,) = audit_log(db, entry)
    assert (audit.user, audit.from_status, audit.to_status, audit.note) == ("alice", "new", "referred", "to bone clinic")
    assert status_counts(db)[Status.REFERRED] == 1 and status_counts(db)[Status.NEW] == 0


def test_flagged_first_filters_sort_and_paging(db):
    for i in range(30):
        add_study(db, i, study_date=date(2026, 3, 1 + i % 28))
    low = add_study(db, 100, l1_hu=95, vbmd=70, study_date=date(2025, 1, 5))
    fracture = add_study(db, 101, genant=3, study_date=date(2025, 1, 4))
    high = add_study(db, 102, risk=(0.35, "high"))
    page = query_worklist(db, WorklistQuery(page_size=10))
    assert page.total == 33 and page.pages == 4
    assert {r.id for r in page.rows[:3]} == {low, fracture, high}
    assert all(not r.flagged for r in page.rows[3:])

    assert [r.id for r in query_worklist(db, WorklistQuery(flag_reason=FlagReason.FRACTURE)).rows] == [fracture]
    assert [r.id for r in query_worklist(db, WorklistQuery(risk_category="high")).rows] == [high]
    assert query_worklist(db, WorklistQuery(risk_category=UNCALIBRATED)).total == 32
    assert [r.id for r in query_worklist(db, WorklistQuery(vbmd_category="osteoporosis")).rows] == [low]
    in_2025 = query_worklist(db, WorklistQuery(date_from=date(2025, 1, 1), date_to=date(2025, 12, 31)))
    assert {r.id for r in in_2025.rows} == {low, fracture}
    assert [r.id for r in query_worklist(db, WorklistQuery(search="ACC00101")).rows] == [fracture]
    assert [r.id for r in query_worklist(db, WorklistQuery(search="PAT00100")).rows] == [low]

    by_hu = query_worklist(db, WorklistQuery(sort="l1_hu", descending=False, page_size=500)).rows
    assert by_hu[0].id == low and [r.l1_hu for r in by_hu] == sorted(r.l1_hu for r in by_hu)
    last = query_worklist(db, WorklistQuery(page=4, page_size=10))
    assert len(last.rows) == 3
    set_status(db, low, Status.DISMISSED, "bob", "known, treated")
    assert [r.id for r in query_worklist(db, WorklistQuery(status=Status.DISMISSED)).rows] == [low]


@pytest.mark.parametrize("params, message", [
    ({"status": "closed"}, "status must be one of"),
    ({"date_from": "2026-13-01"}, "date_from must be a date"),
    ({"date_from": "2026-02-01", "date_to": "2026-01-01"}, "after"),
    ({"page": "-1"}, "page must be a whole number"),
    ({"page_size": "100000"}, "page_size must be a whole number"),
    ({"sort": "patient_id; drop table worklist"}, "sort must be one of"),
    ({"risk_category": "very high"}, "risk_category must be one of"),
    ({"patient_id": "PAT1"}, "unknown filter"),
])
def test_malformed_filters_are_rejected_with_the_parameter_named(params, message):
    with pytest.raises(WorklistError, match=message):
        parse_query(params)


def test_parse_query_round_trips_filter_params():
    query = parse_query({"status": "referred", "flag_reason": "vbmd", "date_from": "2026-01-01", "sort": "l1_hu",
                         "order": "asc", "risk_category": UNCALIBRATED, "page": "3"}, search=" PAT1 ")
    assert query.search == "PAT1" and query.page == 3 and not query.descending
    assert "search" not in query.filter_params()
    assert parse_query(query.filter_params()) == WorklistQuery(
        status=Status.REFERRED, flag_reason=FlagReason.VBMD, date_from=date(2026, 1, 1), sort="l1_hu",
        descending=False, risk_category=UNCALIBRATED)


def test_csv_export_has_every_matching_row_and_neutralises_formulas(db):
    for i in range(120):
        add_study(db, i, l1_hu=95 if i % 4 == 0 else 180)
    add_scored_study(db, StudyInfo("1.2.3", "1.2.3.4", patient_id="=HYPERLINK(1)", patient_name="@evil"),
                     measurements(95, 150), WorklistSettings())
    out = io.StringIO()
    count = export_csv(db, WorklistQuery(flag_reason=FlagReason.L1_HU), out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert count == len(rows) == 31
    (hostile,) = [r for r in rows if r["study_uid"] == "1.2.3"]
    assert hostile["patient_id"] == "'=HYPERLINK(1)" and hostile["patient_name"] == "'@evil"
    assert all(r["flag_reasons"] == "l1_hu" for r in rows)
    assert {r["risk"] for r in rows} == {UNCALIBRATED}
    assert {r["l1_hu"] for r in rows} == {"95.0"}


def test_non_finite_measurements_are_stored_as_null_not_lost(db):
    values = measurements(l1_hu=float("nan"), vbmd=150)
    values.levels["L1"].features = {"cancellous": {"glcm_Correlation": float("nan"), "firstorder_Mean": 180.0}}
    entry = add_scored_study(db, StudyInfo("1.2.3", "1.2.3.4"), values, WorklistSettings())
    row = get_row(db, entry)
    assert row.l1_hu is None and not row.flagged
    assert row.measurements["levels"]["L1"]["features"]["cancellous"] == {"glcm_Correlation": None,
                                                                          "firstorder_Mean": 180.0}
