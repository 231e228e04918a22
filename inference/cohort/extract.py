"""Feature extraction over a cohort: per study, level (T11-L2 by default) and VOI, resumable and parallel.

For each cohort row the CT is loaded (:func:`inference.volume.load_volume`),
segmented with :func:`inference.segment.segment_volume` unless a mask is
given, measured with :func:`inference.measure.measure_study` (attenuation and
the node's vBMD estimate) and its VOIs (cortical shell, cancellous core,
whole body of each complete target level - the node's own VOI definition)
go through :func:`inference.radiomics.extract_features`. So a site model is
trained on exactly the numbers the node computes when it scores.

A mask is either a ``scpnode segment`` output folder, or a compartments
label image (1 cortical / 2 cancellous) with a ``vertebrae`` column naming
the whole-vertebra VerSe label image on the same grid.

In ROI mode (``ExtractionPlan.roi``) each row's mask is the region itself,
drawn by a reader on any modality (a 2D ROI on one sagittal MR slice, or a
3D one): nothing is segmented or measured, the single VOI is ``roi``, and
an MR image is normalised as its profile says (N4, z-score;
:mod:`inference.radiomics.preprocess`). CT-only steps refuse MR
(:func:`check_modality`).

With ``perturbation`` the VOIs are eroded, dilated or shifted by one voxel
first: a second extraction of the same cohort for the ICC reliability filter
(``[preprocess.reliability]`` of the recipe) when no second reader exists.

Each study's result is written to ``<out>/studies/<id>.json`` as soon as it
is done; a rerun skips studies already there (resumable) and retries the
failed ones. A failure is recorded with its reason and never stops the run.
The levels are the plan's (T11-L2, or any of T10-L5 as far as in view:
the lumbar studies used L1-L4). Outputs: ``features_long.csv`` (study,
level, VOI, features), ``levels.csv`` (per study and level: the node's vBMD
estimate and Genant grade of that vertebra), ``studies.csv`` (per study:
patient, label and the cohort's own columns as named there), ``features.csv``
(study-level: those columns, ``node_vbmd`` as the node estimates it - also
as ``vbmd`` unless the cohort has its own ``vbmd`` column, which keeps its
values - and ``"<voi>:<feature>"`` level means)
and ``features.provenance.json`` (what was extracted, how, with which
versions). ``cohort fit`` can combine the levels otherwise (per vertebra,
concatenated; :func:`inference.cohort.table.combine_levels`) from this folder.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk
from tqdm import tqdm

from inference.cohort.table import NODE_VBMD, ROI_VOI, CohortRow, combine_levels, study_level
from inference.levels import RESEARCH_LEVELS, TARGET_LEVELS, VERSE_IDS, Compartment, verse_id
from inference.measure.study import measure_study
from inference.radiomics import PAD_MM, RadiomicsError, extract_features, get_profile
from inference.radiomics.deep import DEEP_MODELS, deep_features, load_resnet50
from inference.radiomics.profiles import PROFILES
from inference.results import LevelSegmentation, SegmentationResult
from inference.segment import segment_volume
from inference.segment.io import read_segmentation
from inference.volume import load_volume

STUDIES_DIR = "studies"
LONG_TABLE = "features_long.csv"
STUDY_TABLE = "features.csv"
LEVEL_TABLE = "levels.csv"
STUDIES_TABLE = "studies.csv"
PROVENANCE = "features.provenance.json"
MODALITIES = ("CT", "MR")


@dataclass(frozen=True)
class ExtractionPlan:
    """What to extract: a profile's features, or named ones (per VOI or for every VOI)."""

    profile: str = "che2025"
    features: dict[str, tuple[str, ...]] | tuple[str, ...] | None = None
    """None: the whole profile; a tuple: these names on every VOI; a dict: names per VOI."""
    vois: tuple[str, ...] | None = None
    """VOIs to extract (default: the dict's keys, else the profile's VOIs)."""
    backend: str = "anatomical"
    levels: tuple[str, ...] = TARGET_LEVELS
    """The vertebrae to extract, where completely in view (any of T10-L5)."""
    perturbation: str | None = None
    """``erode``, ``dilate`` or ``shift``: extract from perturbed VOIs (see :func:`perturb_mask`)."""
    deep: str | None = None
    """``resnet50``: also the deep transfer features of each VOI (:mod:`inference.radiomics.deep`)."""
    deep_weights: str | None = None
    """The weights file of the deep model (required with ``deep``)."""
    roi: bool = False
    """Each row's mask is the ROI itself (any label image, 2D or 3D): no segmentation, no vertebrae,
    no vBMD; one VOI, ``roi``, per study (:func:`extract_roi_study`)."""
    roi_label: int | None = None
    """With ``roi``: the label value of the ROI in the mask (None: every non-zero voxel)."""
    modality: str = "CT"
    """``CT`` or ``MR``; MR is extracted in ``roi`` mode only, with an MR profile."""

    def voi_features(self) -> dict[str, tuple[str, ...] | None]:
        """``{voi: names or None (whole profile)}``."""
        if self.roi:
            return {ROI_VOI: self.features.get(ROI_VOI, ()) if isinstance(self.features, dict) else self.features}
        if isinstance(self.features, dict):
            vois = self.vois or tuple(self.features)
            return {v: tuple(self.features.get(v, ())) for v in vois}
        vois = self.vois or get_profile(self.profile).vois
        return {v: self.features for v in vois}


@dataclass
class ExtractionResult:
    done: int
    failures: dict[str, str]
    long_table: Path
    study_table: Path
    provenance: Path
    skipped: list[str] = field(default_factory=list)


def _file_name(study_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", study_id) + ".json"


def segmentation_from_labels(vertebrae: sitk.Image, compartments: sitk.Image) -> SegmentationResult:
    """A :class:`SegmentationResult` from given labels (every labelled level counted complete)."""
    verts = sitk.Cast(vertebrae, sitk.sitkUInt8)
    comps = sitk.Cast(compartments, sitk.sitkUInt8)
    comps.CopyInformation(verts)
    vert_arr = sitk.GetArrayViewFromImage(verts)
    bodies_arr = np.where(sitk.GetArrayViewFromImage(comps) > 0, vert_arr, 0).astype(np.uint8)
    bodies = sitk.GetImageFromArray(bodies_arr)
    bodies.CopyInformation(verts)
    levels: dict[str, LevelSegmentation] = {}
    for name, vid in VERSE_IDS.items():
        idx = np.argwhere(vert_arr == vid)
        if len(idx) == 0:
            continue
        centroid = verts.TransformContinuousIndexToPhysicalPoint([float(v) for v in idx.mean(axis=0)[::-1]])
        levels[name] = LevelSegmentation(name=name, verse_id=vid, complete=True, voxels=int(len(idx)),
                                         centroid_lps=tuple(float(c) for c in centroid), reason="given labels")
    return SegmentationResult(vertebrae=verts, bodies=bodies, compartments=comps, levels=levels, backend="given")


def _segmentation(row: CohortRow, image: sitk.Image, backend: str) -> SegmentationResult:
    if row.mask is None:
        return segment_volume(image, backend)
    if row.mask.is_dir():
        return read_segmentation(row.mask)
    if row.vertebrae is None:
        raise ValueError("a mask image needs a 'vertebrae' column naming the VerSe label image")
    seg = segmentation_from_labels(sitk.ReadImage(str(row.vertebrae)), sitk.ReadImage(str(row.mask)))
    if seg.vertebrae.GetSize() != image.GetSize():
        raise ValueError("mask and image grids differ")
    return seg


PERTURBATIONS = ("erode", "dilate", "shift")


def perturb_mask(mask: sitk.Image, how: str) -> sitk.Image:
    """A VOI changed as a second reader might have drawn it, for reliability (ICC) without one.

    ``erode``/``dilate``: binary morphology with a 1-voxel ball; ``shift``: the
    mask moved by one voxel along x and y (Zwanenburg et al., Sci Rep
    2019;9:614, assess feature robustness by such mask perturbations).
    """
    binary = sitk.Cast(mask, sitk.sitkUInt8)
    if how == "erode":
        return sitk.BinaryErode(binary, [1, 1, 1])
    if how == "dilate":
        return sitk.BinaryDilate(binary, [1, 1, 1])
    if how == "shift":
        array = sitk.GetArrayFromImage(binary)
        moved = np.zeros_like(array)
        moved[:, 1:, 1:] = array[:, :-1, :-1]
        out = sitk.GetImageFromArray(moved)
        out.CopyInformation(binary)
        return out
    raise ValueError(f"unknown perturbation {how!r}; known: {', '.join(PERTURBATIONS)}")


def _level_features(image: sitk.Image, seg: SegmentationResult, level: str, plan: ExtractionPlan,
                    wanted: dict[str, tuple[str, ...] | None]) -> dict[str, dict[str, float]]:
    """Radiomics of one level's VOIs, cropped around the body as :mod:`inference.measure` does."""
    vid = verse_id(level)
    bodies = sitk.GetArrayViewFromImage(seg.bodies)
    idx = np.argwhere(bodies == vid)
    pad = [math.ceil(2 * PAD_MM / s) for s in reversed(image.GetSpacing())]
    lo = [max(int(m) - p, 0) for m, p in zip(idx.min(axis=0), pad, strict=True)]
    hi = [min(int(m) + 1 + p, n) for m, p, n in zip(idx.max(axis=0), pad, reversed(image.GetSize()), strict=True)]
    crop = image[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
    body = seg.bodies[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]] == vid
    comps = seg.compartments[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
    masks = {"cortical": body & (comps == int(Compartment.CORTICAL)),
             "cancellous": body & (comps == int(Compartment.CANCELLOUS)), "body": body}
    out: dict[str, dict[str, float]] = {}
    for voi, names in wanted.items():
        if voi not in masks:
            raise ValueError(f"unknown VOI {voi!r}; known: {', '.join(masks)}")
        mask = masks[voi] if plan.perturbation is None else perturb_mask(masks[voi], plan.perturbation)
        out[voi] = extract_features(crop, mask, plan.profile, features=names)
        if plan.deep is not None:
            out[voi].update(deep_features(crop, mask, load_resnet50(plan.deep_weights), plan.deep))
    return out


def extract_roi_study(row: CohortRow, plan: ExtractionPlan) -> dict[str, Any]:
    """Features of one study's given ROI, any modality (the document written to ``studies/<id>.json``).

    The ROI is stored as the single level and VOI ``roi``, so the tables and
    ``cohort fit`` read it as they read vertebrae (study-level columns ``roi:<feature>``).

    Raises:
        VolumeError, RadiomicsError, ValueError and friends: the study failed.
    """
    if row.mask is None or not row.mask.is_file():
        raise ValueError("no ROI: a given mask image is needed (mask column)")
    image = load_volume(row.image, modality=plan.modality)
    labels = sitk.ReadImage(str(row.mask))
    same_grid = (labels.GetSize() == image.GetSize()
                 and np.allclose(labels.GetSpacing(), image.GetSpacing(), atol=1e-3)
                 and np.allclose(labels.GetDirection(), image.GetDirection(), atol=1e-3)
                 and np.allclose(labels.GetOrigin(), image.GetOrigin(), atol=0.5 * min(image.GetSpacing())))
    if not same_grid:  # a mask drawn on another series of the study must not be laid over this one
        raise ValueError(f"the ROI's grid (size {labels.GetSize()}, origin {np.round(labels.GetOrigin(), 1)}) "
                         f"is not the image's (size {image.GetSize()}, origin {np.round(image.GetOrigin(), 1)})")
    labels.CopyInformation(image)  # header rounding differences only
    roi = labels > 0 if plan.roi_label is None else labels == plan.roi_label
    if not sitk.GetArrayViewFromImage(roi).any():
        raise ValueError("the ROI is empty" + (f" (no voxel labelled {plan.roi_label})" if plan.roi_label else ""))
    if plan.perturbation is not None:
        roi = perturb_mask(roi, plan.perturbation)
    features = extract_features(image, roi, plan.profile, features=plan.voi_features()[ROI_VOI])
    if plan.deep is not None:
        features.update(deep_features(image, roi, load_resnet50(plan.deep_weights), plan.deep))
    return {"study_id": row.study_id, "vbmd_mg_cm3": None,
            "levels": {ROI_VOI: {"vbmd_mg_cm3": None, "genant_grade": None, "features": {ROI_VOI: features}}},
            "segmentation": "given ROI", "modality": plan.modality, "remarks": []}


def extract_study(row: CohortRow, plan: ExtractionPlan) -> dict[str, Any]:
    """Features and vBMD of one study (the document written to ``studies/<id>.json``).

    Raises:
        VolumeError, RadiomicsError, ValueError and friends: the study failed.
    """
    if plan.roi:
        return extract_roi_study(row, plan)
    image = load_volume(row.image)
    seg = _segmentation(row, image, plan.backend)
    measured = measure_study(image, seg, None, levels=plan.levels)
    wanted = plan.voi_features()
    levels: dict[str, Any] = {}
    for name, level in measured.levels.items():
        if not level.complete:
            continue
        levels[name] = {"vbmd_mg_cm3": level.vbmd_mg_cm3, "genant_grade": level.genant_grade,
                        "features": _level_features(image, seg, name, plan, wanted)}
    if not levels:
        raise ValueError(f"none of the levels {', '.join(plan.levels)} completely in view")
    return {"study_id": row.study_id, "vbmd_mg_cm3": measured.vbmd_mg_cm3, "levels": levels,
            "segmentation": seg.backend, "remarks": list(measured.remarks)}


StudyOutcome = tuple[str, dict[str, Any] | None, str | None]
"""(study_id, the study's document or None, error or None)."""


def _extract_one(row: CohortRow, plan: ExtractionPlan) -> StudyOutcome:
    """Worker (a local process or a Dask worker): extract one study; a failure is returned, not raised."""
    try:
        return row.study_id, extract_study(row, plan), None
    except (RadiomicsError, ValueError, OSError, RuntimeError, KeyError) as exc:
        return row.study_id, None, _one_line(exc)


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def _write_study(studies_dir: Path, study_id: str, document: dict[str, Any]) -> None:
    target = studies_dir / _file_name(study_id)
    partial = target.with_suffix(".json.part")
    partial.write_text(json.dumps(document, default=float) + "\n", encoding="utf-8")
    partial.replace(target)  # a crash never leaves a half-written result behind


def _extract_locally(todo: Sequence[CohortRow], plan: ExtractionPlan, workers: int) -> Iterator[StudyOutcome]:
    if workers <= 1:
        for row in todo:
            yield _extract_one(row, plan)
        return
    # spawned, not forked: a worker forked from a parent that has run torch (the deep model is
    # loaded above to check its file) or other OpenMP code hangs on its first parallel region
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for future in as_completed([pool.submit(_extract_one, row, plan) for row in todo]):
            yield future.result()


def _extract_on_cluster(todo: Sequence[CohortRow], plan: ExtractionPlan, client: Any) -> Iterator[StudyOutcome]:
    """One Dask task per study on ``client``'s cluster (a ``distributed.Client``), yielded as they finish.

    Task keys are derived from the row and the plan, so a task is never run twice
    at once for one study; a worker lost mid-study has its task rerun elsewhere by
    the scheduler. A task that fails on the cluster (it killed its workers, or the
    scheduler went away) is a failure of that study, retried by the next run.
    """
    from distributed import as_completed as completed_on_cluster

    rows = {}
    for row in todo:
        rows[client.submit(_extract_one, row, plan, pure=True)] = row
    for future in completed_on_cluster(list(rows), loop=client.loop):
        row = rows.pop(future)
        if future.status == "finished":
            yield future.result()
        else:
            yield row.study_id, None, f"cluster: {_one_line(future.exception())}" if future.status == "error" \
                else "cluster: the task was cancelled (scheduler connection lost)"
        future.release()


def extract_cohort(rows: Sequence[CohortRow], out_dir: str | Path, plan: ExtractionPlan,
                   workers: int = 1, progress: bool = True, client: Any = None) -> ExtractionResult:
    """Extract every study not yet done, then (re)write the tables and provenance.

    ``workers`` local processes, or with ``client`` (a ``distributed.Client``)
    the workers of its Dask cluster, which must see the rows' image and mask
    paths (a shared file system). Either way each study's document is written
    here as soon as it comes back.
    """
    out = Path(out_dir)
    studies_dir = out / STUDIES_DIR
    studies_dir.mkdir(parents=True, exist_ok=True)
    plan.voi_features()  # validates the profile before any work starts
    check_modality(plan)
    if plan.deep is not None:
        if plan.deep not in DEEP_MODELS:
            raise ValueError(f"unknown deep model {plan.deep!r}; known: {', '.join(DEEP_MODELS)}")
        load_resnet50(plan.deep_weights or "")  # a missing or wrong weights file fails before any study
    unknown = [name for name in plan.levels if name not in RESEARCH_LEVELS]
    if unknown or not plan.levels:
        raise ValueError(f"levels must be among {', '.join(RESEARCH_LEVELS)}; got {', '.join(unknown) or 'none'}")
    if plan.perturbation is not None and plan.perturbation not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {plan.perturbation!r}; known: {', '.join(PERTURBATIONS)}")
    todo = [r for r in rows if not (studies_dir / _file_name(r.study_id)).is_file()]
    skipped = [r.study_id for r in rows if r not in todo]
    failures: dict[str, str] = {}
    bar = tqdm(total=len(todo), desc="extract", unit="study", disable=not progress)
    outcomes = _extract_on_cluster(todo, plan, client) if client is not None else _extract_locally(todo, plan, workers)
    for sid, document, error in outcomes:
        if document is not None:
            _write_study(studies_dir, sid, document)
        else:
            failures[sid] = error or "no result"
        bar.update()
    bar.close()
    return _write_tables(rows, out, plan, failures, skipped)


def check_modality(plan: ExtractionPlan) -> None:
    """Refuse a plan that would run a step on a modality it is not made for.

    Raises:
        ValueError: an unknown modality; MR without given ROIs (segmentation and
            vBMD are CT-only); a profile made for another modality; deep
            features on MR (their input window is in HU).
    """
    if plan.modality not in MODALITIES:
        raise ValueError(f"unknown modality {plan.modality!r}; known: {', '.join(MODALITIES)}")
    profile = get_profile(plan.profile)
    if profile.modality != plan.modality:
        raise ValueError(f"profile {profile.name!r} is made for {profile.modality}, not {plan.modality} "
                         f"(MR profiles: {', '.join(n for n, p in PROFILES.items() if p.modality == 'MR')})")
    if plan.modality != "CT":
        if not plan.roi:
            raise ValueError(f"{plan.modality}: only given ROIs can be extracted (--roi); the node's "
                             "segmentation, levels and vBMD are made for CT")
        if plan.deep is not None:
            raise ValueError(f"{plan.modality}: deep features window their input in HU; they are CT-only")


def _write_tables(rows: Sequence[CohortRow], out: Path, plan: ExtractionPlan, failures: dict[str, str],
                  skipped: list[str]) -> ExtractionResult:
    records: list[dict[str, Any]] = []
    level_rows: list[dict[str, Any]] = []
    study_rows: list[dict[str, Any]] = []
    done = 0
    for row in rows:
        path = out / STUDIES_DIR / _file_name(row.study_id)
        if not path.is_file():
            continue
        document = json.loads(path.read_text(encoding="utf-8"))
        done += 1
        for level, entry in document["levels"].items():
            level_rows.append({"study_id": row.study_id, "level": level, "vbmd": entry.get("vbmd_mg_cm3"),
                               "genant_grade": entry.get("genant_grade")})
            for voi, values in entry["features"].items():
                records.append({"study_id": row.study_id, "level": level, "voi": voi, **values})
        attributes = {"study_id": row.study_id, "patient_id": row.patient_id, "label": row.label,
                      **row.covariates}
        if document["vbmd_mg_cm3"] is not None or not plan.roi:  # an ROI has no vBMD
            attributes[NODE_VBMD] = document["vbmd_mg_cm3"]
            attributes.setdefault("vbmd", document["vbmd_mg_cm3"])  # a cohort's own vbmd column is kept as it is
        study_rows.append(attributes)
    long = pd.DataFrame.from_records(records)
    long_path, study_path = out / LONG_TABLE, out / STUDY_TABLE
    long.to_csv(long_path, index=False)
    pd.DataFrame.from_records(level_rows, columns=["study_id", "level", "vbmd", "genant_grade"]).to_csv(
        out / LEVEL_TABLE, index=False)
    pd.DataFrame.from_records(study_rows).to_csv(out / STUDIES_TABLE, index=False)
    if done:
        means = study_level(long)
        table = pd.DataFrame(study_rows).set_index("study_id").join(means)
        table.to_csv(study_path)
    provenance = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "plan": {**asdict(plan), "features": plan.features if not isinstance(plan.features, tuple)
                 else list(plan.features)},
        "profile": plan.profile, "studies": len(rows), "done": done, "failures": failures,
        "reused_from_previous_run": len(skipped),
        "levels": list(plan.levels),
        "vbmd": "node estimate (inference.measure internal calibration), unless the cohort table has its own "
                "'vbmd' column, which is kept",
        "software": {pkg: _version(pkg) for pkg in ("scpnode", "pyradiomics", "SimpleITK", "numpy")},
    }
    prov_path = out / PROVENANCE
    prov_path.write_text(json.dumps(provenance, indent=2, default=str) + "\n", encoding="utf-8")
    return ExtractionResult(done=done, failures=failures, long_table=long_path, study_table=study_path,
                            provenance=prov_path, skipped=skipped)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def table_from_extraction(folder: str | Path, how: str = "mean", *, levels: Sequence[str] | None = None,
                          exclude_fractured: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """The table to model from an extraction folder, its levels combined ``how``
    (:func:`inference.cohort.table.combine_levels`); and notes on what was left out.

    Raises:
        ValueError: not an extraction folder (of this version), or nothing left to model.
    """
    folder = Path(folder)
    missing = [name for name in (LONG_TABLE, LEVEL_TABLE, STUDIES_TABLE) if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"{folder}: not an extraction folder of 'cohort extract' (no {', '.join(missing)}; "
                         "extract again with this version)")
    text = {"study_id": str, "patient_id": str}
    long = pd.read_csv(folder / LONG_TABLE, dtype={"study_id": str})
    return combine_levels(long, pd.read_csv(folder / LEVEL_TABLE, dtype=text),
                          pd.read_csv(folder / STUDIES_TABLE, dtype=text), how,
                          levels=levels, exclude_fractured=exclude_fractured)
