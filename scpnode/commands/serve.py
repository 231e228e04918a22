"""``scpnode serve``: run the node: DICOM receiver, scheduler, sender and web UI."""

from __future__ import annotations

import argparse

from scpnode.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="run the node: DICOM receiver, scheduler, sender and web UI", description="Run the node: DICOM receiver, scheduler, sender and web UI.")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    raise UsageError("not available in this build yet (issue #3)")
