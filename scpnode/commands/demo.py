"""``scpnode demo``: first run: make a synthetic study, send it to a temporary node over DICOM, show the result."""

from __future__ import annotations

import argparse

from scpnode.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="first run: make a synthetic study, send it to a temporary node over DICOM, show the result", description="First run: make a synthetic study, send it to a temporary node over DICOM, show the result.")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    raise UsageError("not available in this build yet (issue #8)")
