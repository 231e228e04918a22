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

Modules: :mod:`.flags` (the flag rule), :mod:`.rows` (the values a row is
made of), :mod:`.query` (filters, sort and paging from a request),
:mod:`.table` (the ``worklist`` and ``worklist_audit`` tables: every read and
write), :mod:`.export` (CSV). The names below are the package's API.
"""

from scpnode.worklist.export import CSV_COLUMNS, export_csv
from scpnode.worklist.flags import CLINICAL_FLAGS, FlagReason, flag_reasons
from scpnode.worklist.query import MAX_PAGE_SIZE, SORT_COLUMNS, WorklistPage, WorklistQuery, parse_query
from scpnode.worklist.rows import (
    RISK_CATEGORIES, UNCALIBRATED, VBMD_CATEGORIES, AuditEntry, LevelStatus, Status, StudyInfo, WorklistError,
    WorklistRow,
)
from scpnode.worklist.table import (
    MIGRATIONS, add_scored_study, audit_log, ensure_schema, get_row, note_level_review, query_worklist, set_status,
    status_counts, withdraw_scores,
)

__all__ = [
    "CLINICAL_FLAGS", "CSV_COLUMNS", "MAX_PAGE_SIZE", "MIGRATIONS", "RISK_CATEGORIES", "SORT_COLUMNS",
    "UNCALIBRATED", "VBMD_CATEGORIES", "AuditEntry", "FlagReason", "LevelStatus", "Status", "StudyInfo",
    "WorklistError", "WorklistPage", "WorklistQuery", "WorklistRow", "add_scored_study", "audit_log", "ensure_schema",
    "export_csv", "flag_reasons", "get_row", "note_level_review", "parse_query", "query_worklist", "set_status",
    "status_counts", "withdraw_scores",
]
