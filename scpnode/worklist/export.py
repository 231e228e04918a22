"""The worklist as CSV, for a spreadsheet."""

from __future__ import annotations

import csv
from typing import TextIO

import sqlite_utils

from scpnode.worklist.query import WorklistQuery
from scpnode.worklist.rows import UNCALIBRATED, WorklistRow
from scpnode.worklist.table import matching_rows


CSV_COLUMNS = (
    "id", "status", "flagged", "flag_reasons", "patient_id", "patient_name", "accession_number", "study_date",
    "study_uid", "levels_measured", "l1_hu", "vbmd", "vbmd_category", "radscore", "risk", "genant_grade",
    "model_id", "calibrated", "status_note", "level_status", "class_probabilities_research_use",
)


def export_csv(db: sqlite_utils.Database, query: WorklistQuery, out: TextIO) -> int:
    """Write every row matching ``query`` (all pages) as CSV; return the number of rows.

    Text cells that a spreadsheet would run as a formula (starting with
    ``= + - @``) are prefixed with an apostrophe (OWASP "CSV injection"):
    names and notes come from outside and the file is opened in Excel.
    """
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for row in matching_rows(db, query):
        writer.writerow([
            row.id, row.status.value, int(row.flagged), " ".join(r.value for r in row.flag_reasons),
            _cell(row.patient_id), _cell(row.patient_name), _cell(row.accession_number), row.study_date,
            row.study_uid, " ".join(row.levels_measured), _number(row.l1_hu), _number(row.vbmd),
            row.vbmd_category or "", _number(row.radscore, 3),
            _risk(row),
            "" if row.genant_grade is None else row.genant_grade, row.model_id, int(row.calibrated),
            _cell(row.status_note), row.level_status.value,
            _cell(" ".join(f"{name}={p:.3f}" for name, p in row.class_probabilities.items())),
        ])
        count += 1
    return count


def _risk(row: WorklistRow) -> float | str:
    if row.class_probabilities:
        return "not computed (research model)"
    return row.risk_probability if row.calibrated and row.risk_probability is not None else UNCALIBRATED


def _cell(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _number(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"
