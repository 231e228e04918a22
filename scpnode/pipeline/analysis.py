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

A job is two halves: the compute (:func:`compute_job`: load, segment,
coverage, measure, encode; files into the job's folder, no database) and the
recording (:func:`record_job`: index, outbox, worklist, the job's state).
The local executor runs both in a worker process of the node
(:func:`process_job`); the Dask executor runs the compute on a cluster worker
and the recording in the node (:mod:`scpnode.pipeline.dask_runner`), which so
stays the only writer of its database, store and outbox.

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date
from functools import partial
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
from inference.segment.anchors import SPINE_SEQUENCE
from inference.segment.io import read_segmentation, write_segmentation
from inference.segment.relabel import confirm_levels
from inference.segment.second_opinion import algorithm_notes, segment_with_second_opinion
from inference.volume import load_volume
from scpnode import __version__, strict_json, worklist
from scpnode.config import PipelineSettings, Settings
from scpnode.db import open_database
from scpnode.delivery import outbox
from scpnode.logs import configure_logging, log_event
from scpnode.pipeline.jobs import DONE, FAILED, HELD, OUT_OF_SCOPE, RUNNING, Job, JobQueue, revision_dir
from scpnode.pipeline.level_review import MAX_LEVEL_SHIFT, LevelViewFile
from scpnode.storage import index

log = logging.getLogger(__name__)

RESULT_FILES = {"seg": "seg.dcm", "sr": "sr.dcm", "report": "report.dcm"}
OVERLAY_FILE = "overlay.png"


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
    """Run the pipeline for one claimed (running) job in this process and record its final state.

    Revision 0 segments the series; a later revision takes the stored
    segmentation with the labels a person confirmed (:meth:`JobQueue.confirm_levels`).
    Results whose labels need review are held (nothing sent) when
    ``[pipeline] uncertain_levels = "hold"``.

    The compute (:func:`compute_job`) and the recording (:func:`record_job`) are
    the same functions a Dask executor runs on a worker and in the node
    (:mod:`scpnode.pipeline.dask_runner`); here both run in this process and
    each stage is recorded as it starts.

    Errors in a stage fail the job with ``"<stage>: <error>"``; they are not raised.
    """
    db = open_database(settings.node.database)
    queue = JobQueue(db)
    try:
        job = queue.get(job_id)
        job_dir = job_folder(settings, job)
        request = JobRequest.of(job)
        try:
            predecessor = sent_predecessor(db, queue, job, job_dir)
        except Exception as exc:  # noqa: BLE001 - an unreadable earlier SR fails the job, visibly, not the node
            return record_job(db, settings, JobComputation.failure(request, "encode", exc))
        computation = compute_job(settings.pipeline, request, job.target.series_dir, job_dir,
                                  predecessor=predecessor, on_stage=partial(queue.record_stage, job.id))
        # its stages were recorded as they ran: record_job need not write their seconds again
        return record_job(db, settings, replace(computation, stage_seconds={}))
    finally:
        db.conn.close()


StageListener = Callable[[str, float | None], None]
"""Told when a stage starts (seconds None) and how long it took (:meth:`JobQueue.record_stage`)."""


@dataclass(frozen=True)
class JobRequest:
    """What the compute of one job needs to know about the job: no database, no node paths."""

    job_id: int
    revision: int
    attempt: int
    series_uid: str
    level_shift: int = 0
    confirmed_by: str = ""

    @classmethod
    def of(cls, job: Job) -> "JobRequest":
        return cls(job.id, job.revision, job.attempts, job.series_uid, job.level_shift, job.confirmed_by)


@dataclass(frozen=True)
class JobComputation:
    """What the compute of a job found; the result files are in the job's revision folder.

    Exactly one of: ``error`` (a stage failed), ``out_of_scope`` (T11-L2 not
    completely in view, the reason) or ``measurements`` (scored).
    """

    request: JobRequest
    stage_seconds: dict[str, float]
    measurements: StudyMeasurements | None = None
    needs_review: bool = False
    warnings: tuple[str, ...] = ()
    out_of_scope: str = ""
    failed_stage: str = ""
    error: str = ""
    """``"<stage>: <error type>: <message>"``."""

    @classmethod
    def failure(cls, request: JobRequest, stage: str, exc: BaseException,
                stage_seconds: dict[str, float] | None = None) -> "JobComputation":
        return cls(request, stage_seconds or {}, failed_stage=stage, error=f"{stage}: {type(exc).__name__}: {exc}")

    @property
    def error_type(self) -> str:
        return self.error.split(": ", 2)[1] if self.error.count(": ") >= 2 else ""


def job_folder(settings: Settings, job: Job) -> Path:
    """The node's folder of a job's results (revision 0 in it, later revisions below it)."""
    return settings.node.results_dir / f"job-{job.id}"


def compute_job(pipeline: PipelineSettings, request: JobRequest, series_dir: Path, job_dir: Path, *,
                predecessor: Dataset | None = None, on_stage: StageListener | None = None) -> JobComputation:
    """Load, segment, check coverage, measure and encode one job; touches no database.

    Writes the segmentation, ``measurements.json``, SEG, SR, visual report,
    level view and overlay into the job's revision folder under ``job_dir``
    (for a later revision, ``job_dir`` must hold revision 0's segmentation).
    ``predecessor`` is the SR of the study sent before, named in the new SR.
    A stage error is returned as a failed computation, never raised.
    """
    result_dir = revision_dir(job_dir, request.revision)
    result_dir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    stage = "load"

    @contextmanager
    def timed(name: str) -> Iterator[None]:
        nonlocal stage
        stage = name
        if on_stage is not None:
            on_stage(name, None)
        started = time.perf_counter()
        yield
        seconds[name] = time.perf_counter() - started
        if on_stage is not None:
            on_stage(name, seconds[name])

    try:
        with timed("load"):
            sources = read_series(series_dir)
            image = load_volume(series_dir, series_uid=request.series_uid)
        with timed("segment"):
            segmentation = _segment_or_relabel(pipeline, request, image, job_dir)
            write_segmentation(segmentation, result_dir / "segmentation")
        with timed("coverage"):
            reason = coverage_problem(segmentation)
            review = segmentation.level_identification is LevelIdentification.NEEDS_REVIEW
        if reason and not (review and coverable_by_relabelling(segmentation)):
            return JobComputation(request, seconds, out_of_scope=reason)
        with timed("measure"):
            model = load_model(pipeline.model_id, pipeline.model_dir)
            measurements = measure_study(image, segmentation, model)
            _write_json(result_dir / "measurements.json", measurements.to_json())
        with timed("encode"):
            results = encode_once(result_dir, sources, image, segmentation, measurements,
                                  algorithm_info(segmentation), predecessor=predecessor)
            LevelViewFile(result_dir).write(image, segmentation)
            overlay = result_dir / OVERLAY_FILE
            if not overlay.exists():
                save_overlay_png(results.dataset("report"), overlay)
        return JobComputation(request, seconds, measurements=measurements, needs_review=review,
                              warnings=tuple(segmentation.warnings))
    except Exception as exc:  # noqa: BLE001 - any stage error fails the job, visibly, not the node
        log.debug("job %s failed in %s", request.job_id, stage, exc_info=True)
        return JobComputation.failure(request, stage, exc, seconds)


def record_job(db: sqlite_utils.Database, settings: Settings, computation: JobComputation,
               files: dict[str, bytes] | None = None) -> JobOutcome:
    """Record what a job's compute found: index, outbox, worklist and the job's final state.

    ``files`` is the revision folder's content when the compute ran elsewhere
    (a Dask worker): it is written into the node's results first; a SEG, SR or
    report already there from an earlier run of the job is kept, so a rerun
    sends the same SOP instances.

    Idempotent: a computation for a job that is no longer running that
    revision and attempt (a second result for a finished job) is dropped with
    a log line and changes nothing.
    """
    queue = JobQueue(db)
    request = computation.request
    job = queue.get(request.job_id)
    job_dir = job_folder(settings, job)
    result_dir = revision_dir(job_dir, request.revision)
    if (job.state, job.revision, job.attempts) != (RUNNING, request.revision, request.attempt):
        log_event(log, "job_result_dropped", job=job.id, state=job.state, revision=request.revision,
                  attempt=request.attempt)
        return JobOutcome(job.state, result_dir, reason="a result for this job was recorded already")
    stage = "record"
    try:
        if files is not None:
            write_result_files(result_dir, files)
        for name, seconds in computation.stage_seconds.items():
            queue.record_stage(job.id, name, seconds)
        if computation.error:
            queue.finish(job.id, FAILED, error=computation.error, result_dir=str(job_dir))
            log_event(log, "job_failed", logging.ERROR, job=job.id, stage=computation.failed_stage,
                      error_type=computation.error_type)
            return JobOutcome(FAILED, result_dir, error=computation.error)
        target = job.target
        if computation.out_of_scope:
            reason = computation.out_of_scope
            index.mark_revision_out_of_scope(db, target.series_uid, target.series_revision, reason)
            if job.revision:
                worklist.withdraw_scores(db, job.study_uid, reason, job.confirmed_by)
            queue.finish(job.id, OUT_OF_SCOPE, reason=reason, result_dir=str(job_dir))
            log_event(log, "job_out_of_scope", job=job.id, reason=reason)
            return JobOutcome(OUT_OF_SCOPE, result_dir, reason=reason)
        if not index.is_current_revision(db, target.series_uid, target.series_revision):
            note = ("the series received new content while it was analysed: its new revision is analysed on "
                    "its own; these results are kept here and not sent")
            queue.finish(job.id, DONE, reason=note, result_dir=str(job_dir))
            log_event(log, "job_results_outdated", job=job.id)
            return JobOutcome(DONE, result_dir, reason=note)
        hold = computation.needs_review and settings.pipeline.uncertain_levels == "hold"
        if not hold:
            stage = "outbox"
            started = time.perf_counter()
            results = ResultFiles({kind: result_dir / name for kind, name in RESULT_FILES.items()}, {})
            queue_results(db, results, [d.name for d in settings.destinations], job.id)
            queue.record_stage(job.id, stage, time.perf_counter() - started)
        stage = "worklist"
        started = time.perf_counter()
        source = read_series(target.series_dir, first_only=True)[0]
        worklist.add_scored_study(db, study_info(source, target.series_uid, result_dir / OVERLAY_FILE, result_dir),
                                  computation.measurements, settings.worklist)
        queue.record_stage(job.id, stage, time.perf_counter() - started)
        if hold:
            held = "level labels need review: " + ("; ".join(computation.warnings) or "few anatomical anchors")
            queue.finish(job.id, HELD, reason=held[:2000], result_dir=str(job_dir))
            log_event(log, "job_held_for_level_review", job=job.id)
            return JobOutcome(HELD, result_dir, reason=held)
        queue.finish(job.id, DONE, result_dir=str(job_dir))
        return JobOutcome(DONE, result_dir)
    except Exception as exc:  # noqa: BLE001 - a recording error fails the job, visibly, not the node
        error = f"{stage}: {type(exc).__name__}: {exc}"
        queue.finish(job.id, FAILED, error=error, result_dir=str(job_dir))
        log_event(log, "job_failed", logging.ERROR, job=job.id, stage=stage, error_type=type(exc).__name__)
        log.debug("job %s failed", job.id, exc_info=True)
        return JobOutcome(FAILED, result_dir, error=error)


def write_result_files(result_dir: Path, files: dict[str, bytes]) -> None:
    """Write a revision folder's files computed elsewhere, each atomically; keep SEG, SR and report already there."""
    keep = set(RESULT_FILES.values())
    root = result_dir.resolve()
    for name, data in files.items():
        path = (result_dir / name).resolve()
        if not path.is_relative_to(root) or path == root:
            raise ValueError(f"result file {name!r} is outside the job's folder")
        if name in keep and path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        incoming = path.with_name(path.name + ".partial")
        incoming.write_bytes(data)
        incoming.replace(path)


def _segment_or_relabel(pipeline: PipelineSettings, request: JobRequest, image: sitk.Image,
                        job_dir: Path) -> SegmentationResult:
    """Revision 0: segment the series. Later revisions: the stored automatic segmentation with the
    labels the person confirmed (the series is not segmented again: the person judged those outlines)."""
    if request.revision == 0:
        return segment_with_second_opinion(
            image, pipeline.segmentation_backend, pipeline.segmentation_check_backend, device=pipeline.device,
            model_dir=pipeline.segmentation_model_dir, check_model_dir=pipeline.segmentation_check_model_dir)
    automatic = read_segmentation(revision_dir(job_dir, 0) / "segmentation")
    return confirm_levels(automatic, image, request.level_shift, request.confirmed_by)


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
    if segmentation.second_opinion is None:
        return AlgorithmInfo(name=f"scpnode {backend}", version=__version__, model_id=model_id)
    notes, level_notes = algorithm_notes(segmentation.second_opinion, backend)
    return AlgorithmInfo(name=f"scpnode {backend}", version=__version__, model_id=model_id, notes=notes,
                         level_notes=level_notes)


def read_series(folder: Path, first_only: bool = False) -> list[Dataset]:
    """The headers of the stored instances of one series (the encoders take pixels from the volume);
    with ``first_only`` just the first (the study's identifiers for the worklist)."""
    paths = sorted(folder.glob("*.dcm"))
    datasets = [pydicom.dcmread(path, stop_before_pixels=True) for path in paths[:1 if first_only else None]]
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
