"""``scpnode rules test SERIES_DIR``: show which selection rule passes or fails for a series.

Reads the DICOM files of a folder (pixel data is not loaded), groups them by
Series Instance UID and applies the ``[selection]`` rules of the configuration
exactly as the node does for a complete series. Exit code 0 when every series
in the folder would be selected, 1 when one would be rejected.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import pydicom

from scpnode.errors import UsageError
from scpnode.index import InstanceMeta
from scpnode.selection import SelectionDecision, evaluate


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("rules", help="test the series selection rules on a series folder",
                                   description="Test the series selection rules on a series folder.")
    actions = parser.add_subparsers(dest="rules_action", metavar="ACTION", title="actions", required=True)
    test = actions.add_parser("test", help="apply the [selection] rules to the DICOM files of a folder",
                              description="Apply the [selection] rules of the configuration to the DICOM "
                                          "files of a folder, as the node does for a complete series.")
    test.add_argument("series_dir", metavar="SERIES_DIR", type=Path, help="folder of DICOM files (searched recursively)")
    test.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    series = read_series(args.series_dir)
    decisions = {uid: evaluate(instances, args.settings.selection) for uid, instances in series.items()}
    if args.json:
        print(json.dumps({uid: decision.to_dict() for uid, decision in decisions.items()}, indent=2))
    else:
        for uid, decision in decisions.items():
            print(format_decision(uid, len(series[uid]), decision))
    return 0 if all(decision.selected for decision in decisions.values()) else 1


def read_series(folder: Path) -> dict[str, list[InstanceMeta]]:
    """The instances of each series found in ``folder`` (non-DICOM files are skipped)."""
    if not folder.is_dir():
        raise UsageError(f"not a folder: {folder}")
    series: dict[str, list[InstanceMeta]] = defaultdict(list)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            meta = InstanceMeta.from_file(path)
        except (pydicom.errors.InvalidDicomError, OSError, ValueError):
            continue
        series[meta.series_instance_uid or "(no Series Instance UID)"].append(meta)
    if not series:
        raise UsageError(f"no DICOM files in {folder}")
    return dict(series)


def format_decision(series_uid: str, count: int, decision: SelectionDecision) -> str:
    """A small table: one line per rule, then the verdict."""
    lines = [f"series {series_uid} ({count} files)"]
    width = max(len(result.rule) for result in decision.results)
    for result in decision.results:
        lines.append(f"  {'pass' if result.passed else 'FAIL'}  {result.rule:<{width}}  {result.detail}")
    lines.append("  => selected" if decision.selected else f"  => rejected: {decision.reason}")
    return "\n".join(lines)
