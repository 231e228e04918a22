"""``scpnode cohort``: research side: extract features, fit, evaluate and export a site model."""

from __future__ import annotations

import argparse

from scpnode.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("cohort", help="research side: extract features, fit, evaluate and export a site model", description="Research side: extract features, fit, evaluate and export a site model.")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    raise UsageError("not available in this build yet (issue #10)")
