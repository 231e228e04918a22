"""Which rows to show: filters, sort and paging, parsed strictly from request parameters."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

from scpnode.worklist.flags import FlagReason
from scpnode.worklist.rows import RISK_CATEGORIES, UNCALIBRATED, VBMD_CATEGORIES, Status, WorklistError, WorklistRow


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
