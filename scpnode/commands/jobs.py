"""``scpnode jobs``: list inference jobs and retry failed ones."""

from __future__ import annotations

import argparse

from scpnode.db import open_database
from scpnode.errors import UsageError
from scpnode.jobs import STATES, Job, JobQueue


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("jobs", help="list and retry inference jobs",
                                   description="List inference jobs and retry failed ones.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list recent jobs")
    listing.add_argument("--state", choices=STATES, help="only jobs in this state")
    listing.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    retry = actions.add_parser("retry", help="put a failed job back in the queue")
    retry.add_argument("job_id", type=int, metavar="ID")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    queue = JobQueue(open_database(args.settings.node.database))
    if args.action == "retry":
        try:
            job = queue.retry(args.job_id)
        except (KeyError, ValueError) as exc:
            raise UsageError(str(exc).strip("'")) from None
        print(f"job {job.id} queued again (attempt {job.attempts + 1} when it runs)")
        return 0
    print_jobs(queue.recent(args.limit, args.state))
    return 0


def print_jobs(jobs: list[Job]) -> None:
    """A table of jobs: id, state, attempts, stage timings and error or reason."""
    if not jobs:
        print("no jobs")
        return
    print(f"{'id':>5}  {'state':<12} {'tries':>5}  {'created (UTC)':<19}  {'seconds':>8}  detail")
    for job in jobs:
        seconds = sum(job.stage_seconds.values())
        detail = job.error or job.reason or (f"stage {job.stage}" if job.state == "running" else "")
        print(f"{job.id:>5}  {job.state:<12} {job.attempts:>5}  {job.created_at[:19]:<19}  "
              f"{seconds:>8.1f}  {detail}")
