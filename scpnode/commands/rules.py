"""``scpnode rules``: test the series selection rules on a series folder."""

from __future__ import annotations

import argparse

from scpnode.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("rules", help="test the series selection rules on a series folder", description="Test the series selection rules on a series folder.")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    raise UsageError("not available in this build yet (issue #3)")
