"""The ``worklist`` and ``worklist_audit`` tables: every read and write of them goes through here.

A row's review status changes and its audit entry are written in one
transaction. Component ``worklist`` of :func:`scpnode.db.migrate`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import sqlite_utils

from inference.results import StudyMeasurements
from scpnode import strict_json
from scpnode.config import WorklistSettings
from scpnode.db import migrate, transaction
from scpnode.timestamps import text_columns_to_epoch
from scpnode.worklist.flags import CLINICAL_FLAGS, FlagReason, flag_reasons
from scpnode.worklist.query import SORT_COLUMNS, WorklistPage, WorklistQuery
from scpnode.worklist.rows import UNCALIBRATED, AuditEntry, LevelStatus, Status, StudyInfo, WorklistError, WorklistRow

MIGRATIONS = ["""
create table if not exists worklist (
    id integer primary key,
    created_at text not null,
    updated_at text not null,
    study_uid text not null unique,
    series_uid text not null,
    patient_id text not null default '',
    patient_name text not null default '',
    accession_number text not null default '',
    study_date text not null default '',
    study_description text not null default '',
    levels_measured text not null default '[]',
    l1_hu real,
    l1_hu_category text,
    vbmd real,
    vbmd_category text,
    radscore real,
    risk_probability real,
    risk_category text,
    genant_grade integer,
    flagged integer not null,
    flag_reasons text not null default '[]',
    status text not null default 'new'
        check (status in ('new', 'in_review', 'referred', 'dismissed')),
    status_note text not null default '',
    model_id text not null default '',
    model_version text not null default '',
    calibrated integer not null default 0,
    overlay_path text not null default '',
    measurements_path text not null default '',
    measurements_json text not null default '{}'
);
create index if not exists worklist_flagged_date on worklist (flagged desc, study_date desc, id desc);
create index if not exists worklist_status on worklist (status);
create index if not exists worklist_study_date on worklist (study_date);
create index if not exists worklist_patient_id on worklist (patient_id);
create index if not exists worklist_accession on worklist (accession_number);
create table if not exists worklist_audit (
    id integer primary key,
    entry_id integer not null references worklist (id),
    at text not null,
    user text not null,
    action text not null,
    from_status text not null,
    to_status text not null,
    note text not null default ''
);
create index if not exists worklist_audit_entry on worklist_audit (entry_id, id);
""", """
alter table worklist add column level_status text not null default 'automatic';
create index if not exists worklist_level_status on worklist (level_status);
""", lambda db: text_columns_to_epoch(db, "worklist", {"created_at": True, "updated_at": True}),
    lambda db: text_columns_to_epoch(db, "worklist_audit", {"at": True}), """
alter table worklist add column class_probabilities text not null default '{}';
"""]
"""Schema steps of the ``worklist`` component (:func:`scpnode.db.migrate`); append, never edit."""


def ensure_schema(db: sqlite_utils.Database) -> None:
    """Create or upgrade the worklist and audit tables (:func:`scpnode.schema.prepare` calls it at start)."""
    migrate(db, "worklist", MIGRATIONS)


def add_scored_study(db: sqlite_utils.Database, study: StudyInfo, measurements: StudyMeasurements,
                     settings: WorklistSettings) -> int:
    """Put a scored study on the worklist and return its row id.

    A study already on the list (same Study Instance UID, e.g. after a job
    retry) gets the new measurements and flag but keeps its review status and
    audit trail; the re-scoring is itself an audit entry. Measurements whose
    level labels need review flag the row "levels need review" and leave its
    clinical flags as they were.
    """
    score = measurements.score
    calibrated = bool(score and score.calibrated)
    level_status = LevelStatus(measurements.level_identification.value)
    values = {
        "study_uid": study.study_uid,
        "series_uid": study.series_uid,
        "patient_id": study.patient_id,
        "patient_name": study.patient_name,
        "accession_number": study.accession_number,
        "study_date": study.study_date.isoformat() if study.study_date else "",
        "study_description": study.study_description,
        "levels_measured": json.dumps([name for name, lv in measurements.levels.items() if lv.complete]),
        "l1_hu": strict_json.finite(measurements.l1_attenuation_hu),
        "l1_hu_category": measurements.l1_attenuation_category,
        "vbmd": strict_json.finite(measurements.vbmd_mg_cm3),
        "vbmd_category": measurements.vbmd_category,
        "radscore": strict_json.finite(score.radscores.get("vertebral")) if score else None,
        "risk_probability": strict_json.finite(score.probability) if calibrated else None,
        "risk_category": score.category if calibrated else None,
        "class_probabilities": strict_json.dumps(score.class_probabilities if score else {}),
        "genant_grade": measurements.max_genant_grade,
        "model_id": score.model_id if score else "",
        "model_version": score.model_version if score else "",
        "calibrated": int(calibrated),
        "overlay_path": study.overlay_path,
        "measurements_path": study.measurements_path,
        "measurements_json": strict_json.dumps(measurements.to_json()),
        "level_status": level_status.value,
    }
    now = time.time()
    with transaction(db):
        existing = db.execute("select id, status, flag_reasons from worklist where study_uid = ?",
                              [study.study_uid]).fetchone()
        if level_status.trusted:
            reasons = flag_reasons(measurements, settings)
        else:
            kept = [FlagReason(code) for code in json.loads(existing[2])] if existing else []
            reasons = [reason for reason in kept if reason in CLINICAL_FLAGS] + [FlagReason.LEVELS]
        values.update(flagged=int(bool(reasons)), flag_reasons=json.dumps([r.value for r in reasons]))
        if existing is None:
            columns = ", ".join(values) + ", created_at, updated_at"
            marks = ", ".join("?" for _ in values) + ", ?, ?"
            cursor = db.execute(f"insert into worklist ({columns}) values ({marks})", [*values.values(), now, now])
            return int(cursor.lastrowid)
        entry_id, status, _ = existing
        assignments = ", ".join(f"{name} = ?" for name in values)
        db.execute(f"update worklist set {assignments}, updated_at = ? where id = ?",
                   [*values.values(), now, entry_id])
        _audit(db, entry_id, "system", "rescored", status, status, "", now)
        return int(entry_id)


def set_status(db: sqlite_utils.Database, entry_id: int, status: Status | str, user: str, note: str = "") -> None:
    """Change a row's review status and write the audit entry, in one transaction.

    Raises:
        WorklistError: unknown row or status, or a referral without a note /
            a dismissal without a reason.
    """
    try:
        status = Status(status)
    except ValueError:
        raise WorklistError(f"unknown status {status!r}; one of {', '.join(s.value for s in Status)}") from None
    note = note.strip()
    if status is Status.NEW:
        raise WorklistError("a study cannot be set back to new")
    if status is Status.REFERRED and not note:
        raise WorklistError("a referral needs a note (to whom, why)")
    if status is Status.DISMISSED and not note:
        raise WorklistError("a dismissal needs a reason")
    now = time.time()
    with transaction(db):
        row = db.execute("select status from worklist where id = ?", [entry_id]).fetchone()
        if row is None:
            raise WorklistError(f"no worklist entry {entry_id}")
        db.execute("update worklist set status = ?, status_note = ?, updated_at = ? where id = ?",
                   [status.value, note, now, entry_id])
        _audit(db, entry_id, user, status.value, row[0], status.value, note, now)


def note_level_review(db: sqlite_utils.Database, study_uid: str, user: str, action: str, note: str) -> int:
    """Record a reviewer's answer about a row's levels (``action`` e.g. "levels_confirmed") and mark the
    row relabelling until the node has measured again; return the row id.

    Raises:
        WorklistError: the study is not on the worklist.
    """
    now = time.time()
    with transaction(db):
        row = db.execute("select id, status from worklist where study_uid = ?", [study_uid]).fetchone()
        if row is None:
            raise WorklistError("the study is not on the worklist")
        db.execute("update worklist set level_status = ?, updated_at = ? where id = ?",
                   [LevelStatus.RELABELLING.value, now, row[0]])
        _audit(db, row[0], user, action, row[1], row[1], note, now)
    return int(row[0])


def withdraw_scores(db: sqlite_utils.Database, study_uid: str, reason: str, user: str) -> None:
    """With the levels a reviewer confirmed the study cannot be scored: drop its numbers and flags.

    The row stays (the coordinator sees why nothing came), with the reason as an audit entry.
    A study that is not on the worklist is left alone.
    """
    now = time.time()
    with transaction(db):
        row = db.execute("select id, status from worklist where study_uid = ?", [study_uid]).fetchone()
        if row is None:
            return
        cleared = ", ".join(f"{name} = null" for name in _SCORE_COLUMNS)
        db.execute(f"update worklist set {cleared}, class_probabilities = '{{}}', flagged = 0, flag_reasons = '[]', levels_measured = '[]', "
                   "level_status = ?, updated_at = ? where id = ?", [LevelStatus.NOT_SCORED.value, now, row[0]])
        _audit(db, row[0], user or "system", "not_scored", row[1], row[1], reason, now)


_SCORE_COLUMNS = ("l1_hu", "l1_hu_category", "vbmd", "vbmd_category", "radscore", "risk_probability",
                  "risk_category", "genant_grade")


def _audit(db: sqlite_utils.Database, entry_id: int, user: str, action: str,
           from_status: str, to_status: str, note: str, at: float) -> None:
    db.execute("insert into worklist_audit (entry_id, at, user, action, from_status, to_status, note) "
               "values (?, ?, ?, ?, ?, ?, ?)", [entry_id, at, user, action, from_status, to_status, note])


def audit_log(db: sqlite_utils.Database, entry_id: int) -> list[AuditEntry]:
    """The status changes of one row, oldest first."""
    rows = db.execute("select at, user, action, from_status, to_status, note from worklist_audit "
                      "where entry_id = ? order by id", [entry_id]).fetchall()
    return [AuditEntry(*row) for row in rows]


def _where(query: WorklistQuery) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if query.status:
        clauses.append("status = ?")
        params.append(query.status.value)
    if query.flagged_only:
        clauses.append("flagged = 1")
    if query.flag_reason:
        clauses.append("exists (select 1 from json_each(flag_reasons) where value = ?)")
        params.append(query.flag_reason.value)
    if query.date_from:
        clauses.append("study_date >= ?")
        params.append(query.date_from.isoformat())
    if query.date_to:
        clauses.append("study_date <= ?")
        params.append(query.date_to.isoformat())
    if query.risk_category == UNCALIBRATED:
        clauses.append("risk_category is null")
    elif query.risk_category:
        clauses.append("risk_category = ?")
        params.append(query.risk_category)
    if query.vbmd_category:
        clauses.append("vbmd_category = ?")
        params.append(query.vbmd_category)
    if query.search:
        clauses.append("(patient_id = ? or accession_number = ?)")
        params += [query.search, query.search]
    return (" where " + " and ".join(clauses)) if clauses else "", params


def _order(query: WorklistQuery) -> str:
    direction = "desc" if query.descending else "asc"
    first = "level_status = 'needs_review' desc, " if query.levels_first else ""
    if query.sort == "flagged":
        return f" order by {first}flagged {direction}, study_date desc, id desc"
    column = SORT_COLUMNS[query.sort]
    # NULLs (e.g. risk of an uncalibrated model) go last in either direction.
    return f" order by {first}{column} is null, {column} {direction}, id desc"


_LIST_COLUMNS = ", ".join(f.name for f in WorklistRow.__dataclass_fields__.values() if f.name != "measurements")


def query_worklist(db: sqlite_utils.Database, query: WorklistQuery) -> WorklistPage:
    """The rows of one page matching ``query``, and the total that match."""
    where, params = _where(query)
    total = db.execute(f"select count(*) from worklist{where}", params).fetchone()[0]
    offset = (query.page - 1) * query.page_size
    cursor = db.execute(f"select {_LIST_COLUMNS} from worklist{where}{_order(query)} limit ? offset ?",
                        [*params, query.page_size, offset])
    return WorklistPage([_row(cursor.description, r) for r in cursor], total, query.page, query.page_size)


def get_row(db: sqlite_utils.Database, entry_id: int) -> WorklistRow:
    """One row with its full measurements JSON.

    Raises:
        WorklistError: no such row.
    """
    cursor = db.execute(f"select {_LIST_COLUMNS}, measurements_json from worklist where id = ?", [entry_id])
    found = cursor.fetchone()
    if found is None:
        raise WorklistError(f"no worklist entry {entry_id}")
    row = _row(cursor.description[:-1], found[:-1])
    row.measurements = json.loads(found[-1])
    return row


def _row(description: Any, values: tuple) -> WorklistRow:
    data = dict(zip((d[0] for d in description), values))
    data["levels_measured"] = json.loads(data["levels_measured"])
    data["flag_reasons"] = [FlagReason(code) for code in json.loads(data["flag_reasons"])]
    data["flagged"] = bool(data["flagged"])
    data["calibrated"] = bool(data["calibrated"])
    data["status"] = Status(data["status"])
    data["level_status"] = LevelStatus(data["level_status"])
    data["class_probabilities"] = json.loads(data["class_probabilities"])
    return WorklistRow(**data)


def status_counts(db: sqlite_utils.Database) -> dict[Status, int]:
    """Number of rows per status (every status present, zero when none)."""
    found = dict(db.execute("select status, count(*) from worklist group by status").fetchall())
    return {status: found.get(status.value, 0) for status in Status}


def matching_rows(db: sqlite_utils.Database, query: WorklistQuery) -> Iterator[WorklistRow]:
    """Every row matching ``query`` (all pages), in its order."""
    where, params = _where(query)
    cursor = db.execute(f"select {_LIST_COLUMNS} from worklist{where}{_order(query)}", params)
    for values in cursor:
        yield _row(cursor.description, values)
