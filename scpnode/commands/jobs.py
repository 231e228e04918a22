"""``scpnode jobs``: list inference jobs, retry failed ones, confirm, correct or reject their levels."""

from __future__ import annotations

import argparse
import getpass

from scpnode.commands._common import terminal_safe
from scpnode.errors import UsageError
from scpnode.pipeline.jobs import STATES, Job, JobQueue
from scpnode.pipeline.level_review import (
    LevelAnswer,
    LevelReviewError,
    answer_level_review,
    reject_segmentation,
)
from scpnode.schema import open_node_database
from scpnode.timestamps import iso_utc


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("jobs", help="list and retry inference jobs",
                                   description="List inference jobs and retry failed ones.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list recent jobs")
    listing.add_argument("--state", choices=STATES, help="only jobs in this state")
    listing.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    retry = actions.add_parser("retry", help="put a failed job back in the queue")
    retry.add_argument("job_id", type=int, metavar="ID")
    relabel = actions.add_parser(
        "relabel", help="confirm or correct the vertebral levels of a held or done job",
        description="Confirm or correct the vertebral levels of a held or done job, as a reviewer does in the "
                    "web UI. The running node then measures the job again with those labels and sends the "
                    "results; the answer is written to the worklist's audit log.")
    relabel.add_argument("job_id", type=int, metavar="ID")
    answer = relabel.add_mutually_exclusive_group(required=True)
    answer.add_argument("--shift", type=int, metavar="N",
                        help="rename every vertebra N levels caudally as shown now (1: T12 becomes L1; "
                             "-1: T12 becomes T11; 0: the labels are right)")
    answer.add_argument("--t12-at", type=float, metavar="MM",
                        help="the vertebra whose centre is nearest this superior patient coordinate "
                             "(LPS z in mm, as centroid_lps in segmentation.json) is T12")
    relabel.add_argument("--user", default=getpass.getuser(),
                         help="who answers, for the audit log and the SR (default: the login name)")
    reject = actions.add_parser(
        "reject", help="do not score a held job whose segmentation is wrong",
        description="A held job whose segmentation is wrong (vertebrae merged, missed or split), which "
                    "renaming cannot mend: it ends out of scope, nothing is sent, the reason goes to the worklist.")
    reject.add_argument("job_id", type=int, metavar="ID")
    reject.add_argument("--reason", required=True, help="what is wrong, e.g. 'T12 and L1 merged'")
    reject.add_argument("--user", default=getpass.getuser(), help="who rejects it (default: the login name)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    queue = JobQueue(open_node_database(args.settings.node.database))
    if args.action == "retry":
        try:
            job = queue.retry(args.job_id)
        except (KeyError, ValueError) as exc:
            raise UsageError(str(exc).strip("'")) from None
        print(f"job {job.id} queued again (attempt {job.attempts + 1} when it runs)")
        return 0
    if args.action == "reject":
        try:
            job = reject_segmentation(queue.db, args.job_id, args.user, args.reason)
        except LevelReviewError as exc:
            raise UsageError(str(exc)) from None
        print(f"job {job.id}: {job.reason}; nothing is sent")
        return 0
    if args.action == "relabel":
        answer = (LevelAnswer(shift=args.shift) if args.shift is not None
                  else LevelAnswer(vertebra_at_mm=args.t12_at, vertebra_is="T12"))
        try:
            outcome = answer_level_review(queue.db, args.job_id, args.user, answer)
        except LevelReviewError as exc:
            raise UsageError(str(exc)) from None
        print(f"job {outcome.job.id}: {outcome.note}; revision {outcome.job.revision} queued "
              "(the running node measures and sends it)")
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
        if job.revision:
            detail = f"revision {job.revision}, levels by {job.confirmed_by}" + (f"; {detail}" if detail else "")
        print(f"{job.id:>5}  {job.state:<12} {job.attempts:>5}  {iso_utc(job.created_at)[:19]:<19}  "
              f"{seconds:>8.1f}  {terminal_safe(detail)}")
