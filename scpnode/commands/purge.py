"""``scpnode purge [--dry-run]``: apply the ``[retention]`` rules to the received images.

Run it daily (``deploy/systemd/scpnode-purge.timer``) next to a running node;
it only takes the database's write lock for one series at a time.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone

from scpnode.errors import UsageError
from scpnode.schema import open_node_database
from scpnode.storage import retention


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "purge", help="delete received images per [retention] (results, worklist and index stay)",
        description="Delete received images of series whose results were delivered (or that were rejected "
                    "or out of scope) longer ago than [retention] allows. Results, the worklist and the "
                    "index rows are kept; instances are marked purged.")
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = args.settings
    rules = settings.retention
    if rules.purge_images_after_days is None and rules.purge_unprocessed_after_days is None:
        print("retention is off: [retention] purge_images_after_days and purge_unprocessed_after_days are unset")
        return 0
    path = settings.node.database
    if not path.exists():
        raise UsageError(f"no node database at {path} (has the node run with this configuration?)")
    db = open_node_database(path)
    try:
        if args.dry_run:
            candidates = retention.purge_candidates(db, rules)
            for candidate in candidates:
                print(_line("would purge", candidate, candidate.series.instance_count, candidate.series.total_bytes))
            print(f"{len(candidates)} series, {_size(sum(c.series.total_bytes for c in candidates))} would be purged")
            return 0
        outcomes = retention.purge(db, rules)
        for outcome in outcomes:
            verb = "purged" if outcome.complete else "partly purged (resend in progress)"
            print(_line(verb, outcome.candidate, outcome.files_removed, outcome.bytes_freed))
        print(f"{len(outcomes)} series, {_size(sum(o.bytes_freed for o in outcomes))} freed")
        return 0
    finally:
        db.conn.close()


def _line(verb: str, candidate: retention.PurgeCandidate, files: int, size: int) -> str:
    since = datetime.fromtimestamp(candidate.since, timezone.utc).strftime("%Y-%m-%d %H:%M")
    return (f"{verb}: series {candidate.series_instance_uid} of study {candidate.series.study_instance_uid}: "
            f"{files} files, {_size(size)} ({candidate.rule} {since} UTC)")


def _size(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
