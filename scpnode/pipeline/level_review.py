"""A person's answer to "are these the right vertebral levels?": confirm them, or move them.

The web UI's review form and ``scpnode jobs relabel`` / ``reject`` come here. An
answer is relative to the labels the person was shown (the job's current
revision): "as shown", "every label N levels down" or "the vertebra at this
height is T12" (or L1). :func:`answer_level_review` turns it into a shift from
the backend's labels, queues the job's next revision
(:meth:`scpnode.pipeline.jobs.JobQueue.confirm_levels`) and writes who said what to the
worklist's audit log; a worker then relabels, measures, encodes and sends.

Renaming cannot mend a segmentation that merged two vertebrae, missed one or
cut one in two; a held study showing that is rejected instead
(:func:`reject_segmentation`): it is not scored, nothing is sent, and the
reason stays on the worklist.

The picture the person answers on is drawn once per revision by the pipeline
(:class:`LevelViewFile`), with the mapping from its rows to the patient's
superior coordinate, so a click on it names a vertebra.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk
import sqlite_utils

from inference.results import SegmentationResult
from inference.segment.anchors import SPINE_SEQUENCE
from inference.segment.level_view import LevelView, render_level_view
from inference.segment.relabel import describe_shift
from scpnode import worklist
from scpnode.logs import log_event
from scpnode.pipeline.jobs import CONFIRMABLE_STATES, Job, JobQueue
from scpnode.storage import index

log = logging.getLogger(__name__)

MAX_LEVEL_SHIFT = 3
"""Largest shift from the backend's labels a person may give, and the pipeline looks for before it
calls a study out of scope; larger ones are taken for a slip of the hand."""
ANSWERABLE_AS = ("T12", "L1")
"""Levels a person may name a clicked vertebra as: the two a reader finds first (lowest rib, first
rib-free vertebra)."""
VIEW_FILE = "levels.png"


class LevelReviewError(ValueError):
    """An answer the node cannot act on; the message says why, in the reviewer's terms."""


class LevelViewFile:
    """The review picture of one result folder (``levels.png``) and its row mapping (``levels.json``)."""

    def __init__(self, output_dir: Path):
        self.png = Path(output_dir) / VIEW_FILE

    def write(self, image: sitk.Image, segmentation: SegmentationResult) -> None:
        render_level_view(image, segmentation).save(self.png)

    def mapping(self) -> LevelView | None:
        """The row mapping, or None where no picture was drawn (results from before this feature)."""
        try:
            return LevelView.load_mapping(self.png)
        except (OSError, ValueError, KeyError):
            return None


@dataclass(frozen=True)
class LevelAnswer:
    """What the reviewer said about the labels shown."""

    shift: int = 0
    """Rename every vertebra shown this many levels caudally (T12 becomes L1 for 1; negative:
    cranially); 0 with no ``vertebra_at_mm``: the labels are right as shown."""
    vertebra_at_mm: float | None = None
    """The superior coordinate (LPS z, mm) of the vertebra the reviewer names."""
    vertebra_is: str = "T12"
    """What that vertebra is (one of :data:`ANSWERABLE_AS`)."""

    def steps(self, shown: dict[str, float]) -> tuple[int, str]:
        """Levels to move the shown labels, and the answer in words.

        Raises:
            LevelReviewError: nothing labelled to point at, or an unknown level.
        """
        if self.vertebra_at_mm is None:
            if self.shift == 0:
                return 0, "confirmed the labels as shown"
            return self.shift, f"renamed every vertebra {describe_shift(self.shift)}"
        if self.vertebra_is not in ANSWERABLE_AS:
            raise LevelReviewError(f"a vertebra can be named {' or '.join(ANSWERABLE_AS)}, not {self.vertebra_is!r}")
        if not shown:
            raise LevelReviewError("no labelled vertebra to point at")
        labelled = min(shown, key=lambda name: abs(shown[name] - self.vertebra_at_mm))
        if labelled not in SPINE_SEQUENCE:
            raise LevelReviewError(f"the vertebra labelled {labelled} cannot be renamed")
        steps = SPINE_SEQUENCE.index(self.vertebra_is) - SPINE_SEQUENCE.index(labelled)
        said = f"the vertebra labelled {labelled} is {self.vertebra_is}"
        return steps, said if steps == 0 else f"{said}: renamed every vertebra {describe_shift(steps)}"


@dataclass(frozen=True)
class ReviewOutcome:
    job: Job
    """The job, queued for its next revision."""
    note: str
    """The answer in words, as written to the audit log."""


def shown_levels(job: Job) -> dict[str, float]:
    """Level name -> superior coordinate (mm) of each vertebra as labelled in the job's current revision."""
    path = job.output_dir / "segmentation" / "segmentation.json"
    try:
        document = json.loads(path.read_text())
        return {str(name): float(level["centroid_lps"][2]) for name, level in document["levels"].items()}
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        raise LevelReviewError("the labels of this job cannot be read; run the job again") from None


def answer_level_review(db: sqlite_utils.Database, job_id: int, user: str, answer: LevelAnswer) -> ReviewOutcome:
    """Act on a reviewer's answer: queue the job's next revision and write the audit entry.

    Raises:
        LevelReviewError: unknown job, a job that is not held or done, an answer
            that moves the labels too far or off the spine.
    """
    queue = JobQueue(db)
    try:
        job = queue.get(job_id)
    except KeyError:
        raise LevelReviewError(f"there is no job {job_id}") from None
    if job.state not in CONFIRMABLE_STATES:
        raise LevelReviewError(f"job {job_id} is {job.state.replace('_', ' ')}; only a held or done job's "
                               "levels can be confirmed")
    if not job.result_dir:
        raise LevelReviewError(f"job {job_id} has no results to review yet")
    shown = shown_levels(job)
    steps, said = answer.steps(shown)
    total = job.level_shift + steps
    if abs(total) > MAX_LEVEL_SHIFT:
        raise LevelReviewError(f"that renames every vertebra {abs(total)} levels away from the node's labels; "
                               f"at most {MAX_LEVEL_SHIFT} are allowed (a larger error is taken for a slip)")
    for name in shown:
        if name in SPINE_SEQUENCE and not 0 <= SPINE_SEQUENCE.index(name) + steps < len(SPINE_SEQUENCE):
            raise LevelReviewError(f"renaming {name} {abs(steps)} level{'s' if abs(steps) > 1 else ''} "
                                   f"{'caudally' if steps > 0 else 'cranially'} leaves the spine")
    try:
        queued = queue.confirm_levels(job_id, total, user)
    except ValueError as exc:
        raise LevelReviewError(str(exc)) from None
    action = "levels_confirmed" if steps == 0 else "levels_corrected"
    try:
        worklist.note_level_review(db, job.study_uid, user, action, said)
    except worklist.WorklistError:
        pass  # a job whose results never reached the worklist: the job row records the answer
    log_event(log, "level_review", job=job_id, username=user, steps=steps, revision=queued.revision)
    return ReviewOutcome(queued, said)


def reject_segmentation(db: sqlite_utils.Database, job_id: int, user: str, reason: str) -> Job:
    """A reviewer found a held study's segmentation wrong: end the job out of scope, unscored.

    Raises:
        LevelReviewError: unknown job, a job that is not held, or no reason given.
    """
    reason = " ".join(reason.split())[:500]
    if not reason:
        raise LevelReviewError("say what is wrong with the segmentation (e.g. T12 and L1 merged)")
    if not user.strip():
        raise LevelReviewError("a rejection needs the name of the person who gave it")
    queue = JobQueue(db)
    try:
        job = queue.reject(job_id, f"segmentation rejected by {user}: {reason}")
    except KeyError:
        raise LevelReviewError(f"there is no job {job_id}") from None
    except ValueError as exc:
        raise LevelReviewError(str(exc)) from None
    index.mark_revision_out_of_scope(db, job.target.series_uid, job.target.series_revision, job.reason)
    worklist.withdraw_scores(db, job.study_uid, f"segmentation rejected: {reason}", user)
    log_event(log, "segmentation_rejected", job=job_id, username=user)
    return job
