"""The screening worklist: one row per scored study, for the coordinator.

The pipeline calls :func:`add_scored_study` once a study is measured and
scored. The flag rule comes from ``[worklist]`` settings (:func:`flag_reasons`);
a flagged study is one the coordinator should look at first. A coordinator
moves a row through explicit statuses::

    new -> in_review -> referred (with a note) | dismissed (with a reason)

and every change is written, with user and time, to the ``worklist_audit``
table in the same transaction. Rows are read with :func:`query_worklist`
(filters, sort, paging), counted with :func:`status_counts` and exported with
:func:`export_csv`.

Each row also says how sure its vertebral levels are (:class:`LevelStatus`).
Numbers measured on labels that still need review are stored for a person to
see, greyed, but raise no clinical flag (and clear none a row had): such a
row is flagged "levels need review" only, and a reviewer sees it first. A
reviewer's confirmation (:func:`note_level_review`) and its outcome are audit
entries like any status change.

Risk probability and category are stored only when the model is calibrated:
an uncalibrated model (``StudyScore.calibrated`` false) yields ``None`` for
both, and every view shows "uncalibrated" instead of a number that looks
clinical.

Tables live in the node's SQLite database (``sqlite_utils.Database``, WAL mode).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from enum import StrEnum
from typing import Any, TextIO

import sqlite_utils

from inference.results import StudyMeasurements
from scpnode import strict_json
from scpnode.config import WorklistSettings
from scpnode.db import migrate, transaction


class Status(StrEnum):
    """Where a worklist row is in the coordinator's review."""

    NEW = "new"
    IN_REVIEW = "in_review"
    REFERRED = "referred"
    DISMISSED = "dismissed"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


class FlagReason(StrEnum):
    """Why a study was flagged; stored as these codes, shown with :attr:`label`."""

    RISK = "risk"
    VBMD = "vbmd"
    L1_HU = "l1_hu"
    FRACTURE = "fracture"
    LEVELS = "levels"

    @property
    def label(self) -> str:
        return {
            FlagReason.RISK: "fracture risk category",
            FlagReason.VBMD: "low vBMD",
            FlagReason.L1_HU: "low L1 attenuation",
            FlagReason.FRACTURE: "prevalent fracture",
            FlagReason.LEVELS: "levels need review",
        }[self]


CLINICAL_FLAGS = (FlagReason.RISK, FlagReason.VBMD, FlagReason.L1_HU, FlagReason.FRACTURE)


class LevelStatus(StrEnum):
    """How sure the vertebral levels of a row's numbers are."""

    AUTOMATIC = "automatic"
    """Labelled by the node from agreeing anatomical anchors."""
    NEEDS_REVIEW = "needs_review"
    """The anchors conflict or are few: a reviewer must confirm or correct the labels."""
    RELABELLING = "relabelling"
    """A reviewer answered; the node is measuring again with the confirmed labels."""
    CONFIRMED = "confirmed"
    """A reviewer confirmed or corrected the labels; the numbers are theirs."""
    NOT_SCORED = "not_scored"
    """With the labels a reviewer confirmed, T11-L2 are not all completely in view: no numbers."""

    @property
    def label(self) -> str:
        return {"automatic": "automatic", "needs_review": "levels need review",
                "relabelling": "relabelling", "confirmed": "confirmed by a reviewer",
                "not_scored": "not scored"}[self.value]

    @property
    def trusted(self) -> bool:
        """Whether the row's numbers belong to levels that are not in doubt."""
        return self in (LevelStatus.AUTOMATIC, LevelStatus.CONFIRMED)


RISK_CATEGORIES = ("low", "intermediate", "high")
VBMD_CATEGORIES = ("normal", "low", "osteoporosis")
"""ACR QCT categories as written by the measurement step (``StudyMeasurements.vbmd_category``)."""
UNCALIBRATED = "uncalibrated"
"""Shown, and accepted as a risk-category filter, where an uncalibrated model gave no risk."""


class WorklistError(ValueError):
    """A request the worklist cannot carry out (unknown row, missing note, bad filter)."""


@dataclass(frozen=True)
class StudyInfo:
    """Who and what a scored study is: the identifiers shown to the coordinator."""

    study_uid: str
    series_uid: str
    patient_id: str = ""
    patient_name: str = ""
    accession_number: str = ""
    study_date: date | None = None
    study_description: str = ""
    overlay_path: str = ""
    """PNG of the sagittal overlay (segmentation on the image), served by the web UI."""
    measurements_path: str = ""
    """The ``measurements.json`` written by the pipeline."""


@dataclass(frozen=True)
class AuditEntry:
    """One status change of a worklist row."""

    at: str
    user: str
    action: str
    from_status: str
    to_status: str
    note: str


@dataclass
class WorklistRow:
    """One worklist row as read back from the database."""

    id: int
    created_at: str
    updated_at: str
    study_uid: str
    series_uid: str
    patient_id: str
    patient_name: str
    accession_number: str
    study_date: str
    study_description: str
    levels_measured: list[str]
    l1_hu: float | None
    l1_hu_category: str | None
    vbmd: float | None
    vbmd_category: str | None
    radscore: float | None
    risk_probability: float | None
    risk_category: str | None
    genant_grade: int | None
    flagged: bool
    flag_reasons: list[FlagReason]
    status: Status
    status_note: str
    model_id: str
    model_version: str
    calibrated: bool
    overlay_path: str
    measurements_path: str
    level_status: LevelStatus = LevelStatus.AUTOMATIC
    measurements: dict[str, Any] = field(default_factory=dict)
    """The full ``StudyMeasurements`` JSON; filled only by :func:`get_row`."""

    @property
    def risk_display(self) -> str:
        """Risk as shown to people: "uncalibrated" unless a calibrated model gave a number."""
        if not self.calibrated or self.risk_probability is None:
            return UNCALIBRATED
        return f"{self.risk_probability:.0%} ({self.risk_category})"


_MIGRATIONS = ["""
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
"""]
"""Schema steps of the ``worklist`` component (:func:`scpnode.db.migrate`); append, never edit."""


def ensure_schema(db: sqlite_utils.Database) -> None:
    """Create or upgrade the worklist and audit tables (call once per process, before queries)."""
    migrate(db, "worklist", _MIGRATIONS)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def flag_reasons(measurements: StudyMeasurements, settings: WorklistSettings) -> list[FlagReason]:
    """Apply the ``[worklist]`` flag rule; an empty list means not flagged.

    A risk category flags only when it comes from a calibrated model, so an
    uncalibrated node flags on vBMD, L1 attenuation (Pickhardt et al., Ann
    Intern Med 2013: L1 < 110 HU) and prevalent fracture (Genant grade) alone.
    """
    reasons = []
    score = measurements.score
    if score is not None and score.calibrated and score.category in settings.flag_risk_categories:
        reasons.append(FlagReason.RISK)
    if _below(measurements.vbmd_mg_cm3, settings.flag_vbmd_below):
        reasons.append(FlagReason.VBMD)
    if _below(measurements.l1_attenuation_hu, settings.flag_l1_hu_below):
        reasons.append(FlagReason.L1_HU)
    grade, least = measurements.max_genant_grade, settings.flag_genant_grade_at_least
    if grade is not None and least is not None and grade >= least:
        reasons.append(FlagReason.FRACTURE)
    return reasons


def _below(value: float | None, threshold: float | None) -> bool:
    return value is not None and threshold is not None and math.isfinite(value) and value < threshold


def add_scored_study(db: sqlite_utils.Database, study: StudyInfo, measurements: StudyMeasurements,
                     settings: WorklistSettings) -> int:
    """Put a scored study on the worklist and return its row id.

    A study already on the list (same Study Instance UID, e.g. after a job
    retry) gets the new measurements and flag but keeps its review status and
    audit trail; the re-scoring is itself an audit entry. Measurements whose
    level labels need review flag the row "levels need review" and leave its
    clinical flags as they were.
    """
    ensure_schema(db)
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
        "genant_grade": measurements.max_genant_grade,
        "model_id": score.model_id if score else "",
        "model_version": score.model_version if score else "",
        "calibrated": int(calibrated),
        "overlay_path": study.overlay_path,
        "measurements_path": study.measurements_path,
        "measurements_json": strict_json.dumps(measurements.to_json()),
        "level_status": level_status.value,
    }
    now = _now()
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
    now = _now()
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
    ensure_schema(db)
    now = _now()
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
    ensure_schema(db)
    now = _now()
    with transaction(db):
        row = db.execute("select id, status from worklist where study_uid = ?", [study_uid]).fetchone()
        if row is None:
            return
        cleared = ", ".join(f"{name} = null" for name in _SCORE_COLUMNS)
        db.execute(f"update worklist set {cleared}, flagged = 0, flag_reasons = '[]', levels_measured = '[]', "
                   "level_status = ?, updated_at = ? where id = ?", [LevelStatus.NOT_SCORED.value, now, row[0]])
        _audit(db, row[0], user or "system", "not_scored", row[1], row[1], reason, now)


_SCORE_COLUMNS = ("l1_hu", "l1_hu_category", "vbmd", "vbmd_category", "radscore", "risk_probability",
                  "risk_category", "genant_grade")


def _audit(db: sqlite_utils.Database, entry_id: int, user: str, action: str,
           from_status: str, to_status: str, note: str, at: str) -> None:
    db.execute("insert into worklist_audit (entry_id, at, user, action, from_status, to_status, note) "
               "values (?, ?, ?, ?, ?, ?, ?)", [entry_id, at, user, action, from_status, to_status, note])


def audit_log(db: sqlite_utils.Database, entry_id: int) -> list[AuditEntry]:
    """The status changes of one row, oldest first."""
    rows = db.execute("select at, user, action, from_status, to_status, note from worklist_audit "
                      "where entry_id = ? order by id", [entry_id]).fetchall()
    return [AuditEntry(*row) for row in rows]


# ---------------------------------------------------------------- queries

SORT_COLUMNS: dict[str, str] = {
    "flagged": "flagged",
    "study_date": "study_date",
    "patient_id": "patient_id",
    "patient_name": "patient_name",
    "accession_number": "accession_number",
    "l1_hu": "l1_hu",
    "vbmd": "vbmd",
    "vbmd_category": "vbmd_category",
    "radscore": "radscore",
    "risk_probability": "risk_probability",
    "risk_category": "risk_category",
    "genant_grade": "genant_grade",
    "status": "status",
    "created_at": "created_at",
}
"""Sortable columns: request name -> SQL column (a whitelist; nothing from a request reaches SQL text)."""

MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class WorklistQuery:
    """Which rows to show: filters, sort and page. The default puts flagged studies first."""

    status: Status | None = None
    flag_reason: FlagReason | None = None
    flagged_only: bool = False
    date_from: date | None = None
    date_to: date | None = None
    risk_category: str | None = None
    """One of :data:`RISK_CATEGORIES` or :data:`UNCALIBRATED`."""
    vbmd_category: str | None = None
    search: str = ""
    """Exact patient ID or accession number (kept out of URLs by the web UI)."""
    sort: str = "flagged"
    descending: bool = True
    page: int = 1
    page_size: int = 50
    levels_first: bool = False
    """Rows whose levels need review before all others (the reviewer's queue); set by the caller's role,
    not by a request parameter."""

    def filter_params(self) -> dict[str, str]:
        """Filters and sort as URL parameters (never the search term: it may be patient data)."""
        params = {
            "status": self.status.value if self.status else "",
            "flag_reason": self.flag_reason.value if self.flag_reason else "",
            "flagged_only": "1" if self.flagged_only else "",
            "date_from": self.date_from.isoformat() if self.date_from else "",
            "date_to": self.date_to.isoformat() if self.date_to else "",
            "risk_category": self.risk_category or "",
            "vbmd_category": self.vbmd_category or "",
            "sort": self.sort if self.sort != "flagged" else "",
            "order": "" if self.descending else "asc",
            "page_size": str(self.page_size) if self.page_size != 50 else "",
        }
        return {key: value for key, value in params.items() if value}


def parse_query(params: Mapping[str, str], search: str = "") -> WorklistQuery:
    """Build a query from request parameters, rejecting anything malformed.

    Raises:
        WorklistError: naming the parameter and what it accepts.
    """
    known = {"status", "flag_reason", "flagged_only", "date_from", "date_to", "risk_category",
             "vbmd_category", "sort", "order", "page", "page_size"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise WorklistError(f"unknown filter {unknown[0]!r}")

    def get(name: str) -> str:
        return (params.get(name) or "").strip()

    def choice(name: str, allowed: Iterable[str]) -> str | None:
        value, allowed = get(name), tuple(allowed)
        if value and value not in allowed:
            raise WorklistError(f"{name} must be one of {', '.join(allowed)}; got {value[:40]!r}")
        return value or None

    def day(name: str) -> date | None:
        value = get(name)
        if not value:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise WorklistError(f"{name} must be a date YYYY-MM-DD; got {value[:40]!r}") from None

    def integer(name: str, default: int, low: int, high: int) -> int:
        value = get(name)
        if not value:
            return default
        if not value.isdigit() or not low <= int(value) <= high:
            raise WorklistError(f"{name} must be a whole number from {low} to {high}; got {value[:40]!r}")
        return int(value)

    status = choice("status", [s.value for s in Status])
    reason = choice("flag_reason", [r.value for r in FlagReason])
    date_from, date_to = day("date_from"), day("date_to")
    if date_from and date_to and date_from > date_to:
        raise WorklistError("date_from is after date_to")
    flagged_only = choice("flagged_only", ["1", "0"]) == "1"
    order = choice("order", ["asc", "desc"])
    return WorklistQuery(
        status=Status(status) if status else None,
        flag_reason=FlagReason(reason) if reason else None,
        flagged_only=flagged_only,
        date_from=date_from,
        date_to=date_to,
        risk_category=choice("risk_category", [*RISK_CATEGORIES, UNCALIBRATED]),
        vbmd_category=choice("vbmd_category", VBMD_CATEGORIES),
        search=search.strip(),
        sort=choice("sort", SORT_COLUMNS) or "flagged",
        descending=order != "asc",
        page=integer("page", 1, 1, 10**6),
        page_size=integer("page_size", 50, 1, MAX_PAGE_SIZE),
    )


@dataclass(frozen=True)
class WorklistPage:
    """One page of rows and the figures a pager needs."""

    rows: list[WorklistRow]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.page_size))


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
    return WorklistRow(**data)


def status_counts(db: sqlite_utils.Database) -> dict[Status, int]:
    """Number of rows per status (every status present, zero when none)."""
    found = dict(db.execute("select status, count(*) from worklist group by status").fetchall())
    return {status: found.get(status.value, 0) for status in Status}


# ---------------------------------------------------------------- export

CSV_COLUMNS = (
    "id", "status", "flagged", "flag_reasons", "patient_id", "patient_name", "accession_number", "study_date",
    "study_uid", "levels_measured", "l1_hu", "vbmd", "vbmd_category", "radscore", "risk", "genant_grade",
    "model_id", "calibrated", "status_note", "level_status",
)


def export_csv(db: sqlite_utils.Database, query: WorklistQuery, out: TextIO) -> int:
    """Write every row matching ``query`` (all pages) as CSV; return the number of rows.

    Text cells that a spreadsheet would run as a formula (starting with
    ``= + - @``) are prefixed with an apostrophe (OWASP "CSV injection"):
    names and notes come from outside and the file is opened in Excel.
    """
    where, params = _where(query)
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    cursor = db.execute(f"select {_LIST_COLUMNS} from worklist{where}{_order(query)}", params)
    count = 0
    for values in cursor:
        row = _row(cursor.description, values)
        writer.writerow([
            row.id, row.status.value, int(row.flagged), " ".join(r.value for r in row.flag_reasons),
            _cell(row.patient_id), _cell(row.patient_name), _cell(row.accession_number), row.study_date,
            row.study_uid, " ".join(row.levels_measured), _number(row.l1_hu), _number(row.vbmd),
            row.vbmd_category or "", _number(row.radscore, 3),
            row.risk_probability if row.calibrated and row.risk_probability is not None else UNCALIBRATED,
            "" if row.genant_grade is None else row.genant_grade, row.model_id, int(row.calibrated),
            _cell(row.status_note), row.level_status.value,
        ])
        count += 1
    return count


def _cell(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _number(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"
