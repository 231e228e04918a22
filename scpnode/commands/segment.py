"""``scpnode segment``: segment the vertebrae of a CT (DICOM folder or NIfTI) into DIR.

Writes the DESIGN.md contract files (``vertebrae.nii.gz``, ``compartments.nii.gz``,
``segmentation.json``, plus ``bodies.nii.gz``) and prints a summary. A CT that
does not reach T11-L2 is a valid result, not an error: the JSON lists the levels
not in view and the command exits 0.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from inference.levels import TARGET_LEVELS
from inference.results import SegmentationResult
from inference.segment import available_backends
from inference.segment.anchors import SPINE_SEQUENCE
from inference.segment.io import JSON_FILE, write_segmentation
from inference.segment.second_opinion import segment_with_second_opinion
from inference.volume import VolumeError, load_volume
from scpnode.errors import UsageError
from scpnode.logs import log_event

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment", help="segment the vertebrae of a CT (DICOM folder or NIfTI) into DIR",
        description="Segment the vertebrae of a CT (DICOM folder or NIfTI) into DIR: vertebrae.nii.gz, "
                    "bodies.nii.gz, compartments.nii.gz (1 cortical, 2 cancellous) and segmentation.json.")
    parser.add_argument("input", help="DICOM series folder or NIfTI file")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--backend", help="segmentation backend (default: [pipeline] segmentation_backend)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"),
                        help="device for network backends (default: [pipeline] device)")
    parser.add_argument("--model-dir", type=Path, metavar="DIR",
                        help="model folder for the unet or nnunet backend (default: [pipeline] segmentation_model_dir)")
    parser.add_argument("--check-backend", metavar="NAME",
                        help="second backend that checks the first; disagreeing levels flag the study for review "
                             "(default: [pipeline] segmentation_check_backend)")
    parser.add_argument("--check-model-dir", type=Path, metavar="DIR",
                        help="model folder of the check backend (default: [pipeline] segmentation_check_model_dir)")
    add_lowest_level_argument(parser)
    parser.set_defaults(run=run)


def add_lowest_level_argument(parser: argparse.ArgumentParser) -> None:
    """``--lowest-level``: for crops that show neither ribs nor sacrum (shared with ``analyze``)."""
    parser.add_argument("--lowest-level", metavar="LEVEL", choices=SPINE_SEQUENCE,
                        help="the most caudal vertebra in view, where the image cannot show it (a spine crop "
                             "without ribs or sacrum), e.g. L3; other anchors in view are still checked against it")


def run(args: argparse.Namespace) -> int:
    pipeline = args.settings.pipeline
    backend = args.backend or pipeline.segmentation_backend
    check_backend = args.check_backend or pipeline.segmentation_check_backend
    for name in (backend, check_backend):
        if name is not None and name not in available_backends():
            raise UsageError(f"unknown backend {name!r}; available: {', '.join(available_backends())}")
    model_dir = args.model_dir or pipeline.segmentation_model_dir
    check_model_dir = args.check_model_dir or pipeline.segmentation_check_model_dir
    for folder in (model_dir, check_model_dir):
        if folder is not None and not Path(folder).is_dir():
            raise UsageError(f"model folder not found: {folder}")
    try:
        image = load_volume(args.input)
    except VolumeError as exc:
        raise UsageError(str(exc)) from None

    started = time.monotonic()
    try:
        result = segment_with_second_opinion(image, backend, check_backend, device=args.device or pipeline.device,
                                             model_dir=model_dir, check_model_dir=check_model_dir,
                                             lowest_level=args.lowest_level)
    except ValueError as exc:  # VolumeError, or a model folder the backend cannot use
        logger.debug("segmentation refused its input", exc_info=True)
        raise UsageError(str(exc)) from None
    out = write_segmentation(result, Path(args.out))
    seconds = round(time.monotonic() - started, 1)
    log_event(logger, "segment_done", backend=backend, seconds=seconds,
              complete=",".join(result.complete_levels(TARGET_LEVELS)) or "none",
              needs_review=result.needs_review)
    print(_summary(result, out, seconds))
    return 0


def _summary(result: SegmentationResult, out: Path, seconds: float) -> str:
    """A few lines a person reads: what was found, what is missing, what to check."""
    lines = [f"wrote {out / JSON_FILE} and the label images ({result.backend}, {seconds} s)"]
    for name in TARGET_LEVELS:
        level = result.levels.get(name)
        if level is None:
            lines.append(f"  {name}: not in view")
        elif level.complete:
            lines.append(f"  {name}: complete ({level.voxels} voxels, confidence {level.confidence:.2f})")
        else:
            lines.append(f"  {name}: incomplete - {level.reason}")
    others = [name for name in result.levels if name not in TARGET_LEVELS]
    if others:
        lines.append(f"  also labelled: {', '.join(others)}")
    if len(result.levels_not_in_view) == len(TARGET_LEVELS):
        lines.append("  levels not in view: this series does not show T11-L2")
    agreeing = [f"{a.kind} ({a.level})" for a in result.anchors if a.agrees]
    disagreeing = [f"{a.kind} ({a.level})" for a in result.anchors if not a.agrees]
    if agreeing:
        lines.append(f"  levels counted from: {', '.join(agreeing)}")
    if disagreeing:
        lines.append(f"  disagreeing: {', '.join(disagreeing)}")
    if result.needs_review:
        lines.append("  NEEDS REVIEW: level labels rest on conflicting or missing evidence")
    lines.extend(f"  warning: {w}" for w in result.warnings)
    return "\n".join(lines)
