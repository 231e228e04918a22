"""``scpnode analyze``: segment, measure and score a CT; writes measurements.json into DIR."""

from __future__ import annotations

import argparse

from scpnode.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("analyze", help="segment, measure and score a CT; writes measurements.json into DIR", description="Segment, measure and score a CT; writes measurements.json into DIR.")
    parser.add_argument("input", help="DICOM series folder or NIfTI file")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--seg", metavar="DIR", help="reuse the output of 'scpnode segment'")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    raise UsageError("not available in this build yet (issue #6)")
