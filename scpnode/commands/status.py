"""``scpnode status``: show the job queue, recent jobs and the outbox."""

from __future__ import annotations

import argparse

from scpnode.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("status", help="show the job queue, recent jobs and the outbox", description="Show the job queue, recent jobs and the outbox.")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    raise UsageError("not available in this build yet (issue #8)")
