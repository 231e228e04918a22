"""``scpnode segment-validate``: check a segmentation backend on a site's own labelled cases.

Before a node goes live, and whenever its backend changes, a site runs the
backend over CT it has reference labels for (``CASES.csv``: ``image``,
``reference`` - whole vertebrae in VerSe ids on the image grid; blank for a case
without labels, which is still run, pictured and summarised - and optionally
``reference_bodies`` with ``body_values``, ``lowest_level`` and ``note``; paths
relative to the CSV), and/or over the phantom matrix (``--phantom-matrix``).
Per case, backend and reference level it writes whether the label is right,
whole-vertebra and body Dice, the anchors the label rests on, whether the study
was flagged for review and how long it took (``validation.csv``), one sagittal
picture per case with the backend's labels beside the reference, and a summary
(``summary.json``: over all runs, and under ``backends`` one per backend, so a
site compares backends - e.g. its configured backend and its check backend,
the default when ``segmentation_check_backend`` is set - on the same cases).
The exit code is 1 when a level wholly in the reference was
labelled wrong in a study that was *not* flagged for review (a confident wrong
answer, the error that matters) or a case could not be run.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from inference.levels import TARGET_LEVELS
from inference.phantom import generate_phantom
from inference.phantom.matrix import phantom_matrix
from inference.segment import available_backends, segment_volume
from inference.segment.anchors import SPINE_SEQUENCE
from inference.segment.validate import compare_levels, render_comparison
from inference.volume import VolumeError, load_volume
from scpnode.config import PipelineSettings
from scpnode.errors import UsageError
from scpnode.logs import log_event

logger = logging.getLogger(__name__)

COLUMNS = ("case", "backend", "level", "target", "reference_complete", "found_as", "right", "vertebra_dice",
           "body_dice", "complete", "anchors", "needs_review", "seconds", "note")


@dataclass
class Case:
    """One labelled study: the CT, its references, and what the user says of it."""

    name: str
    image: sitk.Image
    reference: sitk.Image | None
    reference_bodies: sitk.Image | None = None
    lowest_level: str | None = None
    note: str = ""
    expect: str = ""
    """For phantom cases: ``labels`` or ``review`` (what a correct answer does)."""
    reason: str = ""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment-validate", help="check a segmentation backend on labelled cases (and the phantom matrix)",
        description="Run segmentation backends over labelled cases (CASES.csv: image, reference[, reference_bodies, "
                    "body_values, lowest_level, note]) and/or the phantom matrix; write per-level results, "
                    "pictures and a summary into DIR.")
    parser.add_argument("cases", nargs="?", type=Path, help="CSV of labelled cases")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    parser.add_argument("--backend", action="append", metavar="NAME",
                        help="backend to check (repeat to compare several; default: [pipeline] segmentation_backend "
                             "and segmentation_check_backend)")
    parser.add_argument("--model-dir", action="append", metavar="[BACKEND=]DIR",
                        help="model folder of a network backend: BACKEND=DIR for one backend (repeat for several), "
                             "a plain DIR for every backend not named (default: the [pipeline] model folders)")
    parser.add_argument("--phantom-matrix", action="store_true",
                        help="also run the synthetic failure-class matrix (inference/phantom/matrix.py)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    pipeline = args.settings.pipeline
    configured = [pipeline.segmentation_backend, pipeline.segmentation_check_backend]
    backends = args.backend or [backend for backend in configured if backend is not None]
    unknown = [b for b in backends if b not in available_backends()]
    if unknown:
        raise UsageError(f"unknown backend {', '.join(unknown)}; available: {', '.join(available_backends())}")
    if args.cases is None and not args.phantom_matrix:
        raise UsageError("give CASES.csv, --phantom-matrix, or both")
    model_dirs = backend_model_dirs(args.model_dir or [], backends, pipeline)
    args.out.mkdir(parents=True, exist_ok=True)
    cases: list[Iterator[Case]] = []
    if args.cases is not None:
        cases.append(read_cases(args.cases))
    if args.phantom_matrix:
        cases.append(_matrix_cases())

    rows: list[dict[str, object]] = []
    studies: list[dict[str, object]] = []
    failures: list[str] = []
    for source in cases:
        for case in _safely(source, failures):
            for backend in backends:
                try:
                    rows_of_case, study = _run_case(case, backend, pipeline.device, model_dirs[backend], args.out)
                except (ValueError, RuntimeError) as exc:
                    failures.append(f"{case.name} ({backend}): {exc}")
                    print(f"{case.name} [{backend}]: FAILED - {exc}")
                    continue
                rows.extend(rows_of_case)
                studies.append(study)
                print(_case_line(study, rows_of_case))

    _write_csv(args.out / "validation.csv", rows)
    summary = _summary(rows, studies, failures)
    summary["backends"] = {backend: _summary([r for r in rows if r["backend"] == backend],
                                             [s for s in studies if s["backend"] == backend],
                                             [f for f in failures if f"({backend}):" in f])
                           for backend in backends}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if len(backends) > 1:
        for backend, figures in summary["backends"].items():
            print(f"[{backend}] " + _summary_text(figures).replace("\n", f"\n[{backend}] "))
    print(_summary_text(summary))
    log_event(logger, "segment_validate_done", cases=summary["studies"], confident_wrong=summary["confident_wrong"],
              failed=len(failures))
    return 1 if summary["confident_wrong"] or failures else 0


def backend_model_dirs(options: list[str], backends: list[str], pipeline: PipelineSettings) -> dict[str, Path | None]:
    """The model folder of each backend: ``--model-dir BACKEND=DIR``, else a plain ``--model-dir DIR``, else
    the configured folder of that backend (segmentation or check), else None.

    Raises:
        UsageError: ``BACKEND=`` names a backend that is not being validated, or a folder is missing.
    """
    named: dict[str, Path] = {}
    plain: Path | None = None
    for option in options:
        backend, separator, folder = option.partition("=")
        if separator and backend in available_backends():
            if backend not in backends:
                raise UsageError(f"--model-dir {option}: backend {backend!r} is not among those validated")
            named[backend] = Path(folder)
        else:
            plain = Path(option)
    configured = {pipeline.segmentation_backend: pipeline.segmentation_model_dir}
    if pipeline.segmentation_check_backend is not None:
        configured.setdefault(pipeline.segmentation_check_backend, pipeline.segmentation_check_model_dir)
    folders = {backend: named.get(backend, plain or configured.get(backend)) for backend in backends}
    missing = [str(folder) for folder in folders.values() if folder is not None and not folder.is_dir()]
    if missing:
        raise UsageError(f"model folder not found: {', '.join(missing)}")
    return folders


def read_cases(path: Path) -> Iterator[Case]:
    """The cases of ``CASES.csv`` (paths relative to it), loaded one at a time.

    Raises:
        UsageError: the file is missing, has no ``image``/``reference`` columns,
            or names an unknown ``lowest_level``.
    """
    if not path.is_file():
        raise UsageError(f"cases file not found: {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"image", "reference"} - set(reader.fieldnames or ())
        if missing:
            raise UsageError(f"{path}: missing column(s) {', '.join(sorted(missing))} (need image, reference)")
        entries = list(reader)
    for number, entry in enumerate(entries, start=2):
        lowest = (entry.get("lowest_level") or "").strip() or None
        if lowest is not None and lowest not in SPINE_SEQUENCE:
            raise UsageError(f"{path}, line {number}: unknown lowest_level {lowest!r}")
        yield _load_case(path.parent, entry, lowest, f"{path}, line {number}")


def _load_case(base: Path, entry: dict[str, str], lowest: str | None, where: str) -> Case:
    image_path = base / entry["image"].strip()
    try:
        image = load_volume(image_path)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", (entry.get("name") or image_path.name).strip()).strip("_")
        if not entry["reference"].strip():
            return Case(name, image, None, None, lowest, (entry.get("note") or "").strip())
        reference = sitk.ReadImage(str(base / entry["reference"].strip()), sitk.sitkUInt8)
        bodies = None
        if (entry.get("reference_bodies") or "").strip():
            values = [int(v) for v in (entry.get("body_values") or "1").replace(";", ",").split(",") if v.strip()]
            raw = sitk.GetArrayFromImage(sitk.ReadImage(str(base / entry["reference_bodies"].strip())))
            bodies = sitk.GetImageFromArray(np.isin(raw, values).astype(np.uint8))
            bodies.CopyInformation(reference)
    except (VolumeError, RuntimeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None
    if reference.GetSize() != image.GetSize():
        raise ValueError(f"{where}: reference grid {reference.GetSize()} differs from the image {image.GetSize()}")
    reference.CopyInformation(image)  # NIfTI round-trips float header fields with tiny differences
    return Case(name, image, reference, bodies, lowest, (entry.get("note") or "").strip())


def _matrix_cases() -> Iterator[Case]:
    for matrix_case in phantom_matrix():
        phantom = generate_phantom(matrix_case.spec)
        yield Case(matrix_case.name, phantom.image, phantom.vertebrae, phantom.bodies, None,
                   f"phantom, expect {matrix_case.expect}", matrix_case.expect, matrix_case.reason)


def _safely(source: Iterator[Case], failures: list[str]) -> Iterator[Case]:
    """Cases from ``source``; one that cannot be loaded is recorded and skipped, not fatal."""
    while True:
        try:
            case = next(source)
        except StopIteration:
            return
        except ValueError as exc:
            failures.append(str(exc))
            print(f"FAILED - {exc}")
            continue
        yield case


def _run_case(case: Case, backend: str, device: str, model_dir: Path | None, out: Path
              ) -> tuple[list[dict[str, object]], dict[str, object]]:
    started = time.monotonic()
    result = segment_volume(case.image, backend, device=device, model_dir=model_dir, lowest_level=case.lowest_level)
    seconds = round(time.monotonic() - started, 1)
    comparison = compare_levels(result, case.reference, case.reference_bodies) if case.reference is not None else []
    picture = render_comparison(case.image, result, case.reference, out / f"{case.name}-{backend}.png",
                                title=f"{case.name} - {backend}{' - NEEDS REVIEW' if result.needs_review else ''}")
    rows = [{"case": case.name, "backend": backend, **c.to_row(), "target": c.level in TARGET_LEVELS,
             "needs_review": result.needs_review, "seconds": seconds, "note": case.note} for c in comparison]
    expected_met = None
    if case.expect:
        wanted_review = case.expect == "review"
        reason_seen = not case.reason or any(case.reason in w for w in result.warnings)
        targets_right = all(c.right for c in comparison if c.level in TARGET_LEVELS)
        expected_met = (result.needs_review and reason_seen) if wanted_review else (
            targets_right and not result.needs_review)
    study = {"case": case.name, "backend": backend, "needs_review": result.needs_review, "seconds": seconds,
             "anchors": [a.to_json() for a in result.anchors], "warnings": list(result.warnings),
             "picture": picture.name, "expected": case.expect or None, "expected_met": expected_met,
             "labelled": {name: level.complete for name, level in result.levels.items()}}
    return rows, study


def _case_line(study: dict[str, object], rows: list[dict[str, object]]) -> str:
    cells = []
    for row in rows:
        if not row["target"]:
            continue
        mark = "" if row["right"] else f"={row['found_as']}"
        body = f"/{row['body_dice']:.2f}" if row["body_dice"] is not None else ""
        cells.append(f"{row['level']}{mark} {row['vertebra_dice']:.2f}{body}")
    if not rows:  # no reference: what the backend said
        labelled = study["labelled"]  # type: ignore[assignment]
        cells = [f"{name}{'' if complete else ' (incomplete)'}" for name, complete in labelled.items()]  # type: ignore[union-attr]
    flag = "REVIEW" if study["needs_review"] else "ok"
    met = {True: " (as expected)", False: " (NOT as expected)"}.get(study["expected_met"], "")  # type: ignore[arg-type]
    return f"{study['case']} [{study['backend']}] {flag}{met} {study['seconds']} s: " + ", ".join(cells)


def _write_csv(path: Path, rows: list[dict[str, object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row.get(key) for key in COLUMNS})


def _summary(rows: list[dict[str, object]], studies: list[dict[str, object]], failures: list[str]) -> dict[str, object]:
    targets = [r for r in rows if r["target"]]
    reviewed = {(s["case"], s["backend"]) for s in studies if s["needs_review"]}
    confident_wrong = [r for r in targets if not r["right"] and r["reference_complete"]
                       and (r["case"], r["backend"]) not in reviewed]
    body = [float(r["body_dice"]) for r in targets if r["right"] and r["body_dice"] is not None]  # type: ignore[arg-type]
    vertebra = [float(r["vertebra_dice"]) for r in targets if r["right"]]  # type: ignore[arg-type]
    return {
        "studies": len(studies),
        "flagged_for_review": len(reviewed),
        "target_levels": len(targets),
        "target_levels_right": sum(1 for r in targets if r["right"]),
        "confident_wrong": len(confident_wrong),
        "confident_wrong_levels": [f"{r['case']} [{r['backend']}] {r['level']} labelled {r['found_as']}"
                                   for r in confident_wrong],
        "median_vertebra_dice": round(float(np.median(vertebra)), 3) if vertebra else None,
        "median_body_dice": round(float(np.median(body)), 3) if body else None,
        "min_body_dice": round(float(np.min(body)), 3) if body else None,
        "expected_not_met": [s["case"] for s in studies if s["expected_met"] is False],
        "failed": failures,
    }


def _summary_text(summary: dict[str, object]) -> str:
    lines = [
        f"{summary['studies']} studies, {summary['flagged_for_review']} flagged for review; target levels right "
        f"{summary['target_levels_right']}/{summary['target_levels']}; confidently wrong: {summary['confident_wrong']}",
        f"Dice of right target levels: vertebra median {summary['median_vertebra_dice']}, body median "
        f"{summary['median_body_dice']} (min {summary['min_body_dice']})",
    ]
    lines.extend(f"  confidently wrong: {line}" for line in summary["confident_wrong_levels"])  # type: ignore[union-attr]
    if summary["expected_not_met"]:
        lines.append(f"  phantom cases not answered as expected: {', '.join(summary['expected_not_met'])}")  # type: ignore[arg-type]
    lines.extend(f"  failed: {line}" for line in summary["failed"])  # type: ignore[union-attr]
    return "\n".join(lines)
