"""``scpnode status``: the job queue, recent jobs and the outbox, read from the node database."""

from __future__ import annotations

import argparse
from collections import Counter

from scpnode.commands.jobs import print_jobs
from scpnode.delivery import outbox
from scpnode.errors import UsageError
from scpnode.pipeline.jobs import JobQueue
from scpnode.schema import open_node_database


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("status", help="show the job queue, recent jobs and the outbox",
                                   description="Show the job queue, recent jobs and the outbox.")
    parser.add_argument("--limit", type=int, default=10, help="recent jobs to list (default 10)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    path = args.settings.node.database
    if not path.exists():
        raise UsageError(f"no node database at {path} (has the node run with this configuration?)")
    db = open_node_database(path)
    queue = JobQueue(db)
    counts = queue.counts()
    print("jobs:   " + ", ".join(f"{state} {n}" for state, n in counts.items()))
    states = Counter(item.state.value for item in outbox.items(db))
    print("outbox: " + (", ".join(f"{state} {n}" for state, n in sorted(states.items())) or "empty"))
    print()
    print_jobs(queue.recent(args.limit))
    return 1 if counts["failed"] else 0
