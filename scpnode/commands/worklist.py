"""``scpnode worklist``: list and export the screening worklist from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scpnode import worklist
from scpnode.commands._common import terminal_safe
from scpnode.errors import UsageError
from scpnode.schema import open_node_database
from scpnode.worklist import FlagReason, Status, WorklistError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("worklist", help="list and export the screening worklist",
                                   description="List and export the screening worklist (flagged studies first).")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="print one page of the worklist")
    export = actions.add_parser("export", help="write every matching row as CSV")
    export.add_argument("--out", required=True, metavar="FILE", help="CSV file to write ('-': standard output)")
    for action in (listing, export):
        action.add_argument("--status", choices=[s.value for s in Status])
        action.add_argument("--flag-reason", choices=[r.value for r in FlagReason])
        action.add_argument("--flagged", action="store_true", help="flagged studies only")
        action.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", help="study date from")
        action.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD", help="study date to")
        action.add_argument("--risk", choices=[*worklist.RISK_CATEGORIES, worklist.UNCALIBRATED])
        action.add_argument("--vbmd", choices=worklist.VBMD_CATEGORIES)
        action.add_argument("--search", default="", metavar="ID", help="exact patient ID or accession number")
        action.add_argument("--sort", choices=list(worklist.SORT_COLUMNS), default="flagged")
        action.add_argument("--asc", action="store_true", help="ascending order")
    listing.add_argument("--page", default="1")
    listing.add_argument("--page-size", default="50")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    params = {
        "status": args.status, "flag_reason": args.flag_reason, "flagged_only": "1" if args.flagged else "",
        "date_from": args.date_from, "date_to": args.date_to, "risk_category": args.risk,
        "vbmd_category": args.vbmd, "sort": args.sort, "order": "asc" if args.asc else "desc",
        "page": getattr(args, "page", ""), "page_size": getattr(args, "page_size", ""),
    }
    try:
        query = worklist.parse_query({k: v for k, v in params.items() if v}, search=args.search)
    except WorklistError as exc:
        raise UsageError(str(exc)) from None
    db = open_node_database(args.settings.node.database)
    try:
        if args.action == "export":
            return _export(db, query, args.out)
        _print_page(worklist.query_worklist(db, query))
    finally:
        db.conn.close()
    return 0


def _export(db, query: worklist.WorklistQuery, out: str) -> int:
    if out == "-":
        count = worklist.export_csv(db, query, sys.stdout)
    else:
        try:
            with Path(out).open("w", encoding="utf-8", newline="") as handle:
                count = worklist.export_csv(db, query, handle)
        except OSError as exc:
            raise UsageError(f"cannot write {out}: {exc.strerror}") from None
    print(f"exported {count} rows", file=sys.stderr)
    return 0


def _print_page(page: worklist.WorklistPage) -> None:
    print(f"{'id':>6} {'flag':<4} {'status':<10} {'study date':<10} {'patient id':<16} {'accession':<16} "
          f"{'L1 HU':>6} {'vBMD':>6} {'risk':<14} reasons")
    for row in page.rows:
        print(f"{row.id:>6} {'*' if row.flagged else '':<4} {row.status.value:<10} {row.study_date:<10} "
              f"{terminal_safe(row.patient_id)[:16]:<16} {terminal_safe(row.accession_number)[:16]:<16} "
              f"{_num(row.l1_hu):>6} {_num(row.vbmd):>6} "
              f"{row.risk_display:<14} {' '.join(r.value for r in row.flag_reasons)}")
    print(f"page {page.page} of {page.pages}, {page.total} rows", file=sys.stderr)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
