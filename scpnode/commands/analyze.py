"""``scpnode analyze``: segment (or reuse ``--seg DIR``), measure and score a CT; writes DIR/measurements.json.

``measurements.json`` is :meth:`inference.results.StudyMeasurements.to_json`
plus a ``provenance`` object (node and library versions, segmentation
backend, model id/version/calibration, radiomics profile, time taken).
Non-finite numbers are written as ``null`` so the file is strict JSON.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import radiomics
import SimpleITK as sitk

from inference.levels import RESEARCH_LEVELS, TARGET_LEVELS
from inference.measure import measure_study
from inference.models import ModelError, load_model
from inference.radiomics import PROFILES
from inference.results import SegmentationResult
from inference.segment.io import SegmentationFolderError, read_segmentation
from inference.segment.second_opinion import segment_with_second_opinion
from inference.volume import VolumeError, load_volume
from scpnode import __version__, strict_json
from scpnode.commands.segment import add_lowest_level_argument
from scpnode.config import Settings
from scpnode.errors import UsageError
from scpnode.logs import log_event

MEASUREMENTS_FILE = "measurements.json"
logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze", help="segment, measure and score a CT; writes measurements.json into DIR",
        description="Segment (or reuse --seg), measure and score a CT; writes measurements.json into DIR.")
    parser.add_argument("input", help="DICOM series folder or NIfTI file")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--seg", metavar="DIR", help="reuse the output folder of 'scpnode segment'")
    parser.add_argument("--model", metavar="ID_OR_PATH",
                        help="radscore model id or .json file (default: [pipeline] model_id)")
    parser.add_argument("--profile", choices=sorted(PROFILES),
                        help="also extract every feature of this radiomics profile (research use)")
    parser.add_argument("--levels", nargs="+", default=None, metavar="LEVEL",
                        help="vertebrae to measure (research use; default T11 T12 L1 L2, the levels the node "
                             "scores), any of " + " ".join(RESEARCH_LEVELS))
    add_lowest_level_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings: Settings = args.settings
    started = time.monotonic()
    try:
        image = load_volume(args.input)
    except VolumeError as exc:
        raise UsageError(str(exc)) from None
    try:
        model = load_model(args.model or settings.pipeline.model_id, settings.pipeline.model_dir)
    except ModelError as exc:
        raise UsageError(str(exc)) from None
    levels = tuple(args.levels) if args.levels else TARGET_LEVELS
    unknown = [name for name in levels if name not in RESEARCH_LEVELS]
    if unknown:
        raise UsageError(f"--levels: {', '.join(unknown)} not among {', '.join(RESEARCH_LEVELS)}")
    seg = _segmentation(args, image, settings)
    measurements = measure_study(image, seg, model, extract_all=args.profile, levels=levels)
    document = measurements.to_json()
    document["provenance"] = {
        "scpnode_version": __version__,
        "pyradiomics_version": radiomics.__version__,
        "simpleitk_version": sitk.Version.VersionString(),
        "python_version": platform.python_version(),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "segmentation": {"backend": seg.backend, "backend_version": seg.backend_version,
                         "reused_from": str(args.seg) if args.seg else None,
                         "needs_review": seg.needs_review, "warnings": list(seg.warnings)},
        "model": {"id": model.id, "version": model.version, "calibrated": model.calibrated,
                  "profile": model.profile},
        "extract_all_profile": args.profile,
        "seconds": round(time.monotonic() - started, 2),
    }
    out = _write_json(Path(args.out), document)
    score = measurements.score
    log_event(logger, "analyze_done", model=model.id, calibrated=model.calibrated,
              levels=",".join(lv.name for lv in measurements.levels.values() if lv.complete),
              seconds=document["provenance"]["seconds"])
    print(f"wrote {out}")
    print(f"  levels measured: {', '.join(n for n, lv in measurements.levels.items() if lv.complete) or 'none'}")
    if measurements.l1_attenuation_hu is not None:
        print(f"  L1 trabecular attenuation: {measurements.l1_attenuation_hu:.0f} HU "
              f"({measurements.l1_attenuation_category})")
    if measurements.vbmd_mg_cm3 is not None:
        print(f"  estimated vBMD: {measurements.vbmd_mg_cm3:.0f} mg/cm3 ({measurements.vbmd_category})")
    if score is not None and score.class_probabilities:
        print(f"  classes ({model.id} {model.version}, RESEARCH USE ONLY): "
              + ", ".join(f"{k} {v:.2f}" for k, v in score.class_probabilities.items()))
    elif score is not None:
        status = "calibrated" if score.calibrated else "UNCALIBRATED, no risk probability"
        print(f"  radscores ({model.id} {model.version}, {status}): "
              + ", ".join(f"{k} {v:.3f}" for k, v in score.radscores.items()))
        if score.probability is not None:
            print(f"  fracture risk: {score.probability:.2f} ({score.category})")
    return 0


def _segmentation(args: argparse.Namespace, image: sitk.Image, settings: Settings) -> SegmentationResult:
    if args.seg is None:
        pipeline = settings.pipeline
        return segment_with_second_opinion(
            image, pipeline.segmentation_backend, pipeline.segmentation_check_backend, device=pipeline.device,
            model_dir=pipeline.segmentation_model_dir, check_model_dir=pipeline.segmentation_check_model_dir,
            lowest_level=args.lowest_level)
    if args.lowest_level is not None:
        raise UsageError("--lowest-level applies when segmenting; give it to 'scpnode segment' instead of --seg")
    try:
        seg = read_segmentation(args.seg)
    except SegmentationFolderError as exc:
        raise UsageError(str(exc)) from None
    same_grid = (seg.bodies.GetSize() == image.GetSize()
                 and all(math.isclose(a, b, abs_tol=1e-3) for a, b in zip(seg.bodies.GetSpacing(), image.GetSpacing()))
                 and all(math.isclose(a, b, abs_tol=1e-2) for a, b in zip(seg.bodies.GetOrigin(), image.GetOrigin()))
                 and all(math.isclose(a, b, abs_tol=1e-4)
                         for a, b in zip(seg.bodies.GetDirection(), image.GetDirection())))
    if not same_grid:
        raise UsageError(f"{args.seg}: segmentation grid {seg.bodies.GetSize()} does not match the input "
                         f"{image.GetSize()} (segment this input again)")
    return seg


def _write_json(out_dir: Path, document: dict[str, Any]) -> Path:
    """Write measurements.json atomically (a reader never sees half a file)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / MEASUREMENTS_FILE
    partial = path.with_suffix(".json.partial")
    partial.write_text(strict_json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return path
