"""``scpnode segment``: segment the vertebrae of a CT (DICOM folder or NIfTI) into DIR."""

from __future__ import annotations

import argparse

from scpnode.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("segment", help="segment the vertebrae of a CT (DICOM folder or NIfTI) into DIR", description="Segment the vertebrae of a CT (DICOM folder or NIfTI) into DIR.")
    parser.add_argument("input", help="DICOM series folder or NIfTI file")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    raise UsageError("not available in this build yet (issue #5)")
