"""A job's compute as a Dask task: what goes to a worker, what comes back.

A worker never sees the node's database, results or outbox. It gets a
:class:`RemoteJob` (the series from a shared file system or as bytes, and
the few files of the job's folder that the compute reads: revision 0's
segmentation for a later revision, SEG/SR/report of an earlier run so a
rerun keeps their SOP Instance UIDs, the SR the new one succeeds), runs
:func:`scpnode.pipeline.analysis.compute_job` in a temporary folder and
returns the revision folder's files as bytes (:class:`RemoteResult`). The
node writes and records them (:func:`scpnode.pipeline.analysis.record_job`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import pydicom

from scpnode.config import PipelineSettings, Settings
from scpnode.pipeline.analysis import RESULT_FILES, JobComputation, JobRequest, compute_job, job_folder
from scpnode.pipeline.jobs import Job, revision_dir

SEGMENTATION_DIR = "segmentation"


@dataclass(frozen=True)
class RemoteJob:
    """Everything a worker needs to compute one job."""

    pipeline: PipelineSettings
    request: JobRequest
    series_path: str | None
    """The series folder on a shared file system as the workers see it; None: ``series_files``."""
    series_files: dict[str, bytes] = field(default_factory=dict)
    job_files: dict[str, bytes] = field(default_factory=dict)
    """Files of the job's folder the compute reads, by path relative to that folder."""
    predecessor_sr: bytes | None = None
    """The SR of the study sent before, which the new SR names as its predecessor."""


@dataclass(frozen=True)
class RemoteResult:
    """A computed job: what the compute found and its revision folder's files by relative path."""

    computation: JobComputation
    files: dict[str, bytes]


def run_remote_job(job: RemoteJob) -> RemoteResult:
    """Compute one job on a Dask worker, in a temporary folder that is removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"scpnode-job-{job.request.job_id}-") as temporary:
        root = Path(temporary)
        if job.series_path is not None:
            series_dir = Path(job.series_path)
        else:
            series_dir = root / "series"
            _write_files(series_dir, job.series_files)
        job_dir = root / "job"
        _write_files(job_dir, job.job_files)
        predecessor = pydicom.dcmread(BytesIO(job.predecessor_sr)) if job.predecessor_sr else None
        computation = compute_job(job.pipeline, job.request, series_dir, job_dir, predecessor=predecessor)
        result_dir = revision_dir(job_dir, job.request.revision)
        files = {path.relative_to(result_dir).as_posix(): path.read_bytes()
                 for path in sorted(result_dir.rglob("*"))
                 if path.is_file() and not path.relative_to(result_dir).parts[0].startswith("revision-")}
    return RemoteResult(computation, files)


def remote_job(settings: Settings, job: Job, predecessor: pydicom.Dataset | None) -> RemoteJob:
    """The task payload of a claimed job, read from the node's store and results (node side)."""
    series_dir = job.target.series_dir
    series_path = _shared_path(settings, series_dir)
    series_files = {} if series_path is not None else {p.name: p.read_bytes() for p in sorted(series_dir.glob("*.dcm"))}
    if series_path is None and not series_files:
        raise FileNotFoundError(f"no instances in {series_dir}")
    job_dir = job_folder(settings, job)
    wanted = [revision_dir(job_dir, job.revision) / name for name in RESULT_FILES.values()]
    job_files: dict[str, bytes] = {}
    if all(path.is_file() for path in wanted):
        job_files.update({path.relative_to(job_dir).as_posix(): path.read_bytes() for path in wanted})
    if job.revision:
        automatic = revision_dir(job_dir, 0) / SEGMENTATION_DIR
        job_files.update({path.relative_to(job_dir).as_posix(): path.read_bytes()
                          for path in sorted(automatic.rglob("*")) if path.is_file()})
    predecessor_sr = None
    if predecessor is not None:
        buffer = BytesIO()
        predecessor.save_as(buffer, enforce_file_format=True)
        predecessor_sr = buffer.getvalue()
    return RemoteJob(settings.pipeline, JobRequest.of(job), series_path, series_files, job_files, predecessor_sr)


def _shared_path(settings: Settings, series_dir: Path) -> str | None:
    """The series folder as the workers see it, when ``[pipeline] worker_storage_dir`` names the shared store."""
    shared = settings.pipeline.worker_storage_dir
    if shared is None:
        return None
    try:
        relative = series_dir.resolve().relative_to(settings.node.storage_dir.resolve())
    except ValueError:
        return None
    return str(shared / relative)


def _write_files(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
