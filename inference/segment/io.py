"""The ``scpnode segment`` output folder (DESIGN.md contract), written and read back.

Files, all on the input grid:

- ``vertebrae.nii.gz``: whole-vertebra VerSe ids;
- ``bodies.nii.gz``: the same ids restricted to the vertebral bodies;
- ``compartments.nii.gz``: 1 cortical, 2 cancellous, inside the bodies only;
- ``segmentation.json``: :meth:`inference.results.SegmentationResult.to_json`.

:func:`read_segmentation` rebuilds the :class:`~inference.results.SegmentationResult`
so that ``scpnode analyze --seg DIR`` measures exactly what was segmented.
"""

from __future__ import annotations

import json
from pathlib import Path

import SimpleITK as sitk

from inference.results import LevelAnchor, LevelSegmentation, SecondOpinion, SegmentationResult

VERTEBRAE_FILE = "vertebrae.nii.gz"
BODIES_FILE = "bodies.nii.gz"
COMPARTMENTS_FILE = "compartments.nii.gz"
JSON_FILE = "segmentation.json"


class SegmentationFolderError(ValueError):
    """A segmentation folder that is missing files or holds inconsistent ones."""


def write_segmentation(result: SegmentationResult, out_dir: str | Path) -> Path:
    """Write ``result`` into ``out_dir`` (created if needed); returns the folder."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for image, name in (
        (result.vertebrae, VERTEBRAE_FILE),
        (result.bodies, BODIES_FILE),
        (result.compartments, COMPARTMENTS_FILE),
    ):
        sitk.WriteImage(sitk.Cast(image, sitk.sitkUInt8), str(out_dir / name), useCompression=True)
    (out_dir / JSON_FILE).write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    return out_dir


def read_segmentation(out_dir: str | Path) -> SegmentationResult:
    """Read a folder written by :func:`write_segmentation`.

    Raises:
        SegmentationFolderError: a file is missing or unreadable, the JSON is
            malformed, or the images do not share one grid.
    """
    out_dir = Path(out_dir)
    missing = [name for name in (VERTEBRAE_FILE, BODIES_FILE, COMPARTMENTS_FILE, JSON_FILE) if not (out_dir / name).is_file()]
    if missing:
        raise SegmentationFolderError(f"{out_dir}: not a segmentation folder (missing {', '.join(missing)})")
    try:
        document = json.loads((out_dir / JSON_FILE).read_text(encoding="utf-8"))
        levels = {
            name: LevelSegmentation(
                name=name,
                verse_id=int(entry["id"]),
                complete=bool(entry["complete"]),
                voxels=int(entry["voxels"]),
                centroid_lps=tuple(float(c) for c in entry["centroid_lps"]),
                confidence=float(entry.get("confidence", 1.0)),
                reason=str(entry.get("reason", "")),
                anchors=tuple(str(kind) for kind in entry.get("anchors", [])),
            )
            for name, entry in document["levels"].items()
        }
        backend = str(document["backend"])
        anchors = [
            LevelAnchor(str(a["kind"]), str(a["level"]), bool(a.get("agrees", True)), str(a.get("detail", "")))
            for a in document.get("anchors", [])
        ]
        second_opinion = SecondOpinion.from_json(document["second_opinion"]) if "second_opinion" in document else None
    except (ValueError, KeyError, TypeError) as exc:
        raise SegmentationFolderError(f"{out_dir / JSON_FILE}: malformed segmentation document ({exc})") from None

    images = []
    for name in (VERTEBRAE_FILE, BODIES_FILE, COMPARTMENTS_FILE):
        try:
            images.append(sitk.ReadImage(str(out_dir / name), sitk.sitkUInt8))
        except RuntimeError:
            raise SegmentationFolderError(f"{out_dir / name}: unreadable image") from None
    vertebrae, bodies, compartments = images
    for image, name in ((bodies, BODIES_FILE), (compartments, COMPARTMENTS_FILE)):
        if image.GetSize() != vertebrae.GetSize():
            raise SegmentationFolderError(f"{out_dir / name}: grid {image.GetSize()} differs from {VERTEBRAE_FILE} {vertebrae.GetSize()}")
        image.CopyInformation(vertebrae)  # NIfTI round-trips float header fields with tiny differences

    return SegmentationResult(
        vertebrae=vertebrae,
        bodies=bodies,
        compartments=compartments,
        levels=levels,
        backend=backend,
        backend_version=str(document.get("backend_version", "")),
        labelling_confidence=float(document.get("labelling_confidence", 1.0)),
        needs_review=bool(document.get("needs_review", False)),
        warnings=[str(w) for w in document.get("warnings", [])],
        levels_not_in_view=[str(n) for n in document.get("levels_not_in_view", [])],
        anchors=anchors,
        confirmed_by=str(document.get("confirmed_by", "")),
        second_opinion=second_opinion,
    )
