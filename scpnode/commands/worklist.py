"""``scpnode worklist``: list and export the screening worklist."""

from __future__ import annotations

import argparse

from scpnode.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("worklist", help="list and export the screening worklist", description="List and export the screening worklist.")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    raise UsageError("not available in this build yet (issue #8)")
