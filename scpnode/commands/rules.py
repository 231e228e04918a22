"""``scpnode rules test SERIES_DIR``: show which selection rule passes or fails for a series.

Reads the DICOM files of a folder (pixel data is not loaded), groups them by
Series Instance UID and applies the ``[selection]`` rules of the configuration
exactly as the node does for a complete series. Where a study has several
selected series, prints their ranking by ``[study_choice]`` and which one the
node would analyse. Exit code 0 when every series in the folder would be
selected, 1 when one would be rejected.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import pydicom

from scpnode.commands._common import terminal_safe
from scpnode.config import StudyChoiceSettings
from scpnode.errors import UsageError
from scpnode.pipeline.selection import SelectionDecision, evaluate
from scpnode.pipeline.study_choice import RankedSeries, describe, rank, series_facts, why_not
from scpnode.storage.index import InstanceMeta, SeriesRef, SeriesState


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
    rankings = study_rankings({uid: series[uid] for uid, d in decisions.items() if d.selected},
                              args.settings.study_choice)
    if args.json:
        print(json.dumps({
            "series": {uid: decision.to_dict() for uid, decision in decisions.items()},
            "studies": {study: [r.series.series_instance_uid for r in ranking] for study, ranking in rankings.items()},
        }, indent=2))
    else:
        for uid, decision in decisions.items():
            print(format_decision(uid, len(series[uid]), decision))
        for study, ranking in rankings.items():
            print(format_ranking(study, ranking, args.settings.study_choice))
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


def study_rankings(selected: dict[str, list[InstanceMeta]], settings: StudyChoiceSettings
                   ) -> dict[str, list[RankedSeries]]:
    """Study Instance UID -> its selected series, best first, as the node would rank them."""
    by_study: dict[str, list] = defaultdict(list)
    for order, (uid, instances) in enumerate(selected.items()):
        first = instances[0]
        ref = SeriesRef(study_instance_uid=first.study_instance_uid, series_instance_uid=uid, folder=Path(),
                        instance_count=len(instances), modality=first.modality,
                        series_description=first.series_description, state=SeriesState.SELECTED, revision=1,
                        first_received_at=float(order))
        by_study[first.study_instance_uid].append((ref, series_facts(instances, settings)))
    return {study: rank(candidates, settings) for study, candidates in by_study.items()}


def format_ranking(study_uid: str, ranking: list[RankedSeries], settings: StudyChoiceSettings) -> str:
    """The ranking of one study's selected series, and what the node would do with each."""
    if settings.mode == "every":
        return f"study {study_uid}: [study_choice] mode = \"every\": each selected series is analysed"
    lines = [f"study {study_uid}: {len(ranking)} selected series, ranked by {', '.join(settings.order)}"]
    for place, ranked in enumerate(ranking, start=1):
        facts = "; ".join(describe(ranked.facts, criterion) for criterion in settings.order)
        verdict = "=> analysed" if place == 1 else f"=> not chosen ({why_not(ranked, ranking[0], settings)})"
        lines.append(f"  {place}. {terminal_safe(ranked.series.series_description or ranked.series.series_instance_uid)}: "
                     f"{facts}  {verdict}")
    return "\n".join(lines)


def format_decision(series_uid: str, count: int, decision: SelectionDecision) -> str:
    """A small table: one line per rule, then the verdict."""
    lines = [f"series {series_uid} ({count} files)"]
    width = max(len(result.rule) for result in decision.results)
    for result in decision.results:
        lines.append(f"  {'pass' if result.passed else 'FAIL'}  {result.rule:<{width}}  {terminal_safe(result.detail)}")
    lines.append("  => selected" if decision.selected else f"  => rejected: {terminal_safe(decision.reason)}")
    return "\n".join(lines)
