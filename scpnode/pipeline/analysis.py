"""The inference pipeline: one job turns a selected CT series into results.

Stages, each timed into the job row (``stage_seconds``)::

    load -> segment -> coverage -> measure -> encode -> outbox -> worklist

A study whose level labels need review skips ``outbox`` and its job ends
``held`` (``[pipeline] uncertain_levels = "hold"``); once a person confirms or
corrects the labels (:mod:`scpnode.pipeline.level_review`), the job's next revision runs
the same stages on the stored segmentation and sends the results, the SR
naming any SR of the study sent before as its predecessor.

``coverage`` is the anatomical decision that the selection rules leave open:
a series whose T11, T12, L1 and L2 are not all completely in view is
``out_of_scope`` with the reason, and the series is marked so in the index.

A job whose series received new content while it ran (a new revision, with
its own job) sends nothing: only the newest content's results reach the PACS.

Running a job again (after a crash or a retry) must not send its results
twice: the encoded objects are written once per job folder and reused, so a
rerun sends the same SOP Instance UIDs, and objects already in the outbox for
a destination are not queued again.

:class:`InferencePipeline` is the node service: it takes selected series from
the node's hook, queues jobs, and runs them in worker processes
(:class:`scpnode.pipeline.runner.JobRunner`); :func:`run_job` is what a worker runs.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
import sqlite_utils
from PIL import Image
from pydicom.dataset import Dataset

from dicom_sr import AlgorithmInfo, encode_results
from inference.levels import TARGET_LEVELS
from inference.measure import measure_study
from inference.models import load_model
from inference.results import LevelIdentification, SegmentationResult, StudyMeasurements
from inference.segment import segment_volume
from inference.segment.anchors import SPINE_SEQUENCE
from inference.segment.io import read_segmentation, write_segmentation
from inference.segment.relabel import confirm_levels
from inference.volume import load_volume
from scpnode import __version__, strict_json, worklist
from scpnode.config import Settings
from scpnode.db import open_database
from scpnode.delivery import outbox
from scpnode.logs import configure_logging, log_event
from scpnode.pipeline.jobs import DONE, FAILED, HELD, OUT_OF_SCOPE, Job, JobQueue, revision_dir
from scpnode.pipeline.level_review import MAX_LEVEL_SHIFT, LevelViewFile
from scpnode.storage import index

log = logging.getLogger(__name__)

RESULT_FILES = {"seg": "seg.dcm", "sr": "sr.dcm", "report": "report.dcm"}


@dataclass(frozen=True)
class JobOutcome:
    """How a job ended, for callers that run it in-process (CLI, tests)."""

    state: str
    result_dir: Path
    reason: str = ""
    error: str = ""


# -- worker side ---------------------------------------------------------------

_worker_settings: Settings | None = None


def init_worker(settings_json: str) -> None:
    """Worker process initializer: settings and logging of the node.

    The worker also exits when the node process dies, so a crashed node never
    leaves an orphan finishing a job that the restarted node will run again.
    """
    global _worker_settings
    _die_with_parent()
    _worker_settings = Settings.model_validate_json(settings_json)
    configure_logging(_worker_settings.logging.level, _worker_settings.logging.file)


def _die_with_parent() -> None:
    """Exit as soon as the node process is gone (checked every second in a daemon thread).

    Polling the parent pid rather than prctl(PR_SET_PDEATHSIG): the latter fires
    when the *thread* that started the worker ends, which here is a scheduler
    thread, not the node.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(70)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run_job(job_id: int) -> None:
    """Run one job in a worker process (see :func:`process_job`)."""
    if _worker_settings is None:
        raise RuntimeError("worker process was not initialised with the node settings")
    process_job(_worker_settings, job_id)


def process_job(settings: Settings, job_id: int) -> JobOutcome:
    """Run the pipeline for one claimed (running) job and record its final state.

    Revision 0 segments the series; a later revision takes the stored
    segmentation with the labels a person confirmed (:meth:`JobQueue.confirm_levels`).
    Results whose labels need review are held (nothing sent) when
    ``[pipeline] uncertain_levels = "hold"``.

    Errors in a stage fail the job with ``"<stage>: <error>"``; they are not raised.
    """
    db = open_database(settings.node.database)
    queue = JobQueue(db)
    job = queue.get(job_id)
    target = job.target
    job_dir = settings.node.results_dir / f"job-{job.id}"
    result_dir = revision_dir(job_dir, job.revision)
    result_dir.mkdir(parents=True, exist_ok=True)
    stage = "load"

    @contextmanager
    def timed(name: str) -> Iterator[None]:
        nonlocal stage
        stage = name
        queue.record_stage(job.id, name)
        started = time.perf_counter()
        yield
        queue.record_stage(job.id, name, time.perf_counter() - started)

    try:
        with timed("load"):
            sources = read_series(target.series_dir)
            image = load_volume(target.series_dir, series_uid=target.series_uid)
        with timed("segment"):
            segmentation = _segment_or_relabel(settings, job, image, job_dir)
            write_segmentation(segmentation, result_dir / "segmentation")
        with timed("coverage"):
            reason = coverage_problem(segmentation)
            review = segmentation.level_identification is LevelIdentification.NEEDS_REVIEW
        if reason and not (review and coverable_by_relabelling(segmentation)):
            index.mark_revision_out_of_scope(db, target.series_uid, target.series_revision, reason)
            if job.revision:
                worklist.withdraw_scores(db, str(sources[0].StudyInstanceUID), reason, job.confirmed_by)
            queue.finish(job.id, OUT_OF_SCOPE, reason=reason, result_dir=str(job_dir))
            log_event(log, "job_out_of_scope", job=job.id, reason=reason)
            return JobOutcome(OUT_OF_SCOPE, result_dir, reason=reason)
        with timed("measure"):
            model = load_model(settings.pipeline.model_id, settings.pipeline.model_dir)
            measurements = measure_study(image, segmentation, model)
            _write_json(result_dir / "measurements.json", measurements.to_json())
        with timed("encode"):
            algorithm = algorithm_info(segmentation)
            predecessor = sent_predecessor(db, queue, job, job_dir)
            results = encode_once(result_dir, sources, image, segmentation, measurements, algorithm,
                                  predecessor=predecessor)
            LevelViewFile(result_dir).write(image, segmentation)
        if not index.is_current_revision(db, target.series_uid, target.series_revision):
            note = ("the series received new content while it was analysed: its new revision is analysed on "
                    "its own; these results are kept here and not sent")
            queue.finish(job.id, DONE, reason=note, result_dir=str(job_dir))
            log_event(log, "job_results_outdated", job=job.id)
            return JobOutcome(DONE, result_dir, reason=note)
        hold = review and settings.pipeline.uncertain_levels == "hold"
        if not hold:
            with timed("outbox"):
                queue_results(db, results, [d.name for d in settings.destinations], job.id)
        with timed("worklist"):
            overlay = result_dir / "overlay.png"
            if not overlay.exists():
                save_overlay_png(results.dataset("report"), overlay)
            worklist.add_scored_study(db, study_info(sources[0], target.series_uid, overlay, result_dir),
                                      measurements, settings.worklist)
        if hold:
            held = "level labels need review: " + ("; ".join(segmentation.warnings) or "few anatomical anchors")
            queue.finish(job.id, HELD, reason=held[:2000], result_dir=str(job_dir))
            log_event(log, "job_held_for_level_review", job=job.id)
            return JobOutcome(HELD, result_dir, reason=held)
        queue.finish(job.id, DONE, result_dir=str(job_dir))
        return JobOutcome(DONE, result_dir)
    except Exception as exc:  # noqa: BLE001 - any stage error fails the job, visibly, not the node
        error = f"{stage}: {type(exc).__name__}: {exc}"
        queue.finish(job.id, FAILED, error=error, result_dir=str(job_dir))
        log_event(log, "job_failed", logging.ERROR, job=job.id, stage=stage, error_type=type(exc).__name__)
        log.debug("job %s failed", job.id, exc_info=True)
        return JobOutcome(FAILED, result_dir, error=error)
    finally:
        db.conn.close()


def _segment_or_relabel(settings: Settings, job: Job, image: sitk.Image, job_dir: Path) -> SegmentationResult:
    """Revision 0: segment the series. Later revisions: the stored automatic segmentation with the
    labels the person confirmed (the series is not segmented again: the person judged those outlines)."""
    if job.revision == 0:
        return segment_volume(image, settings.pipeline.segmentation_backend, device=settings.pipeline.device,
                              model_dir=settings.pipeline.segmentation_model_dir)
    automatic = read_segmentation(revision_dir(job_dir, 0) / "segmentation")
    return confirm_levels(automatic, image, job.level_shift, job.confirmed_by)


def coverable_by_relabelling(segmentation: SegmentationResult, max_shift: int = MAX_LEVEL_SHIFT) -> bool:
    """True when moving every label by at most ``max_shift`` levels would put T11-L2 completely in view.

    A study whose labels need review is held for a person in that case, not
    called out of scope: an incomplete "L2" may be a complete L2 labelled L3.
    """
    complete = {name for name, level in segmentation.levels.items() if level.complete}
    for steps in range(-max_shift, max_shift + 1):
        try:
            wanted = [SPINE_SEQUENCE[SPINE_SEQUENCE.index(name) - steps] for name in TARGET_LEVELS]
        except IndexError:
            continue
        if all(name in complete for name in wanted):
            return True
    return False


def sent_predecessor(db: sqlite_utils.Database, queue: JobQueue, job: Job, job_dir: Path) -> Dataset | None:
    """The newest SR of this study that went to the outbox (None: none did).

    First an earlier revision of this job (labels corrected by a person), then
    the jobs of other series of the study (a better series that supersedes the
    one analysed first, :mod:`scpnode.pipeline.study_choice`).
    """
    folders = [revision_dir(job_dir, earlier) for earlier in range(job.revision - 1, -1, -1)]
    for other in queue.earlier_in_study(job.study_uid, job.id):
        if other.result_dir:
            folders += [revision_dir(Path(other.result_dir), r) for r in range(other.revision, -1, -1)]
    for folder in folders:
        path = folder / RESULT_FILES["sr"]
        if not path.exists():
            continue
        sr = pydicom.dcmread(path)
        if outbox.instance_items(db, str(sr.SOPInstanceUID)):
            return sr
    return None


def algorithm_info(segmentation: SegmentationResult) -> AlgorithmInfo:
    """The algorithm recorded in SEG and SR: this software and the segmentation backend/model."""
    backend = segmentation.backend
    model_id = f"{backend}-{segmentation.backend_version}" if segmentation.backend_version else backend
    return AlgorithmInfo(name=f"scpnode {backend}", version=__version__, model_id=model_id)


def read_series(folder: Path) -> list[Dataset]:
    """The headers of the stored instances of one series (the encoders take pixels from the volume)."""
    datasets = [pydicom.dcmread(path, stop_before_pixels=True) for path in sorted(folder.glob("*.dcm"))]
    if not datasets:
        raise FileNotFoundError(f"no instances in {folder}")
    return datasets


def coverage_problem(segmentation: SegmentationResult) -> str:
    """Why the series cannot be scored for T11-L2, or "" when all four are completely in view."""
    problems = []
    for name in TARGET_LEVELS:
        level = segmentation.levels.get(name)
        if level is None:
            problems.append(f"{name} not in view")
        elif not level.complete:
            problems.append(f"{name} incomplete" + (f" ({level.reason})" if level.reason else ""))
    return "; ".join(problems)


@dataclass(frozen=True)
class ResultFiles:
    """SEG, SR and report of a job on disk, with the data sets when this run encoded them.

    The data sets are handed on in memory (outbox, overlay) rather than read
    back from the files just written; a rerun that reuses earlier files reads
    them when asked.
    """

    paths: dict[str, Path]
    encoded: dict[str, Dataset]

    def dataset(self, kind: str) -> Dataset:
        return self.encoded[kind] if kind in self.encoded else pydicom.dcmread(self.paths[kind])


def encode_once(result_dir: Path, sources: list[Dataset], ct: sitk.Image, segmentation: SegmentationResult,
                measurements: StudyMeasurements, algorithm: AlgorithmInfo, *,
                predecessor: Dataset | None = None) -> ResultFiles:
    """Encode SEG, SR and report into ``result_dir``, or reuse them from an earlier run of the job.

    Reuse keeps the SOP Instance UIDs of a job stable across reruns, so the
    PACS never gets two SEGs for one job.
    """
    paths = {kind: result_dir / name for kind, name in RESULT_FILES.items()}
    if all(path.exists() for path in paths.values()):
        return ResultFiles(paths, {})
    objects = encode_results(sources, segmentation, measurements, algorithm, ct=ct, predecessor=predecessor)
    encoded = {"seg": objects.seg, "sr": objects.sr, "report": objects.report}
    for kind, dataset in encoded.items():
        partial = paths[kind].with_suffix(".partial")
        dataset.save_as(partial, enforce_file_format=True)
        partial.replace(paths[kind])
    return ResultFiles(paths, encoded)


def queue_results(db: sqlite_utils.Database, results: ResultFiles, destinations: list[str], job_id: int) -> None:
    """Put job ``job_id``'s result files in the outbox of every destination, once per SOP instance."""
    for kind, path in results.paths.items():
        dataset = results.encoded.get(kind) or pydicom.dcmread(path, stop_before_pixels=True)
        queued = {item.destination for item in outbox.instance_items(db, str(dataset.SOPInstanceUID))}
        for destination in destinations:
            if destination not in queued:
                outbox.enqueue(db, path, destination, written=dataset, job_id=job_id)


def save_overlay_png(report: Dataset, path: Path) -> None:
    """The visual report's pixels as a PNG for the web UI (rendered once, by the encoder)."""
    pixels = np.asarray(report.pixel_array, dtype=np.uint8)
    partial = path.with_suffix(".partial.png")
    Image.fromarray(pixels).save(partial)
    partial.replace(path)


def study_info(source: Dataset, series_uid: str, overlay: Path, result_dir: Path) -> worklist.StudyInfo:
    """Worklist identifiers of a study, read from one of its instances."""
    return worklist.StudyInfo(
        study_uid=str(source.StudyInstanceUID),
        series_uid=series_uid,
        patient_id=str(source.get("PatientID", "") or ""),
        patient_name=str(source.get("PatientName", "") or ""),
        accession_number=str(source.get("AccessionNumber", "") or ""),
        study_date=_dicom_date(source.get("StudyDate", "")),
        study_description=str(source.get("StudyDescription", "") or ""),
        overlay_path=str(overlay),
        measurements_path=str(result_dir / "measurements.json"),
    )


def _dicom_date(value: object) -> date | None:
    text = str(value or "").strip()
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8])) if len(text) == 8 else None
    except ValueError:
        return None


def _write_json(path: Path, document: dict) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(strict_json.dumps(document, indent=2, default=_json_default))
    partial.replace(path)


def _json_default(value: object) -> object:
    if isinstance(value, sitk.Image):
        return None
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
