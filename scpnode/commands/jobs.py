"""``scpnode jobs``: list and retry inference jobs."""

from __future__ import annotations

import argparse

from scpnode.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("jobs", help="list and retry inference jobs", description="List and retry inference jobs.")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    raise UsageError("not available in this build yet (issue #8)")
