"""Per-level description of a labelling: which levels are in view, complete, and on what they rest.

A level is *complete* when its vertebral body lies wholly inside the field of
view: a body whose labels reach a face of the volume is cut by the scan edge and
its density or height would be wrong, so it is reported incomplete with the side
it is cut on (e.g. "vertebral body cut by the superior edge of the field of view").
Which vertebra is which is decided before, by the backend
(:mod:`inference.segment.anchors` for the anatomical one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from inference.levels import LEVEL_NAMES, TARGET_LEVELS
from inference.results import LevelSegmentation

_LPS_SIDES = (("right", "left"), ("anterior", "posterior"), ("inferior", "superior"))
"""Names of the low and high end of each LPS axis."""


@dataclass
class LevelDescription:
    """Per-level description of a labelling."""

    levels: dict[str, LevelSegmentation]
    """Every labelled level, in cranio-caudal (VerSe id) order."""
    not_in_view: list[str] = field(default_factory=list)
    """Target levels (T11-L2) not found at all."""
    warnings: list[str] = field(default_factory=list)


def describe_levels(
    vertebrae: sitk.Image,
    bodies: sitk.Image,
    *,
    level_confidence: Mapping[int, float] | None = None,
    default_confidence: float = 1.0,
    level_anchors: Mapping[int, tuple[str, ...]] | None = None,
    image: sitk.Image | None = None,
) -> LevelDescription:
    """Describe every level labelled in ``vertebrae`` (VerSe ids) with its body in ``bodies``.

    Args:
        vertebrae: whole-vertebra labels on the input grid.
        bodies: vertebral-body labels (same ids) on the input grid.
        level_confidence: per VerSe id labelling confidence from the backend.
        default_confidence: confidence of ids not in ``level_confidence``.
        level_anchors: per VerSe id, the kinds of anchors its label rests on.
        image: the CT, when at hand: a body whose endplate lies against air (padding
            outside the scanned field of view, an oblique crop) is cut too
            (:func:`faces_against_air`).
    """
    level_confidence = level_confidence or {}
    level_anchors = level_anchors or {}
    against_air: dict[int, list[str]] = {}
    if image is not None:
        canonical_bodies = sitk.DICOMOrient(bodies, "LPS")
        spacing = tuple(reversed(canonical_bodies.GetSpacing()))
        labels = sitk.GetArrayFromImage(canonical_bodies)
        canonical_image = sitk.DICOMOrient(image, "LPS")  # kept alive: the view below borrows its buffer
        canonical_hu = sitk.GetArrayViewFromImage(canonical_image)
        against_air = {int(k): faces_against_air(labels, canonical_hu, int(k), spacing) for k in np.unique(labels) if k}
    vertebra_stats = sitk.LabelShapeStatisticsImageFilter()
    vertebra_stats.Execute(sitk.Cast(vertebrae, sitk.sitkUInt8))
    body_stats = sitk.LabelShapeStatisticsImageFilter()
    body_stats.Execute(sitk.Cast(bodies, sitk.sitkUInt8))
    body_ids = set(body_stats.GetLabels())

    levels: dict[str, LevelSegmentation] = {}
    for label in sorted(vertebra_stats.GetLabels()):
        name = LEVEL_NAMES.get(int(label))
        if name is None:
            continue
        if label in body_ids:
            centroid = body_stats.GetCentroid(label)
            cut_sides = _cut_sides(bodies, body_stats.GetBoundingBox(label))
            cut_sides += [side for side in against_air.get(int(label), []) if side not in cut_sides]
            reason = f"vertebral body cut by the {' and '.join(cut_sides)} edge of the field of view" if cut_sides else ""
        else:
            centroid = vertebra_stats.GetCentroid(label)
            cut_sides = ["unknown"]
            reason = "no vertebral body found for this vertebra"
        levels[name] = LevelSegmentation(
            name=name,
            verse_id=int(label),
            complete=not cut_sides,
            voxels=int(vertebra_stats.GetNumberOfPixels(label)),
            centroid_lps=tuple(round(float(c), 2) for c in centroid),
            confidence=round(float(level_confidence.get(int(label), default_confidence)), 3),
            reason=reason,
            anchors=tuple(level_anchors.get(int(label), ())),
        )

    not_in_view = [name for name in TARGET_LEVELS if name not in levels]
    warnings = []
    if len(not_in_view) == len(TARGET_LEVELS):
        warnings.append("levels not in view: none of T11-L2 is in the field of view")
    elif not_in_view:
        warnings.append(f"levels not in view: {', '.join(not_in_view)}")
    return LevelDescription(levels=levels, not_in_view=not_in_view, warnings=warnings)


AIR_HU = -500.0
AIR_FACE_FRACTION = 0.15
FACE_CROP_MM = 10.0
"""A vertebral body borders disc and soft tissue, never outside air: where 15 % of its
superior or inferior face lies against air that reaches beyond the body's surroundings (not gas
enclosed in a degenerated disc), the scanned field of view ends there (padding beyond an oblique
crop or a converter's border). -500 HU: partial volume with air on a coarse grid, still far from fat."""


def faces_against_air(bodies: np.ndarray, hu: np.ndarray, label: int,
                      spacing_zyx: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> list[str]:
    """``"inferior"``/``"superior"`` where the body ``label`` in canonical (z inferior -> superior)
    arrays ends against outside air over :data:`AIR_FACE_FRACTION` of its face."""
    where = np.nonzero(bodies == label)
    if where[0].size == 0:
        return []
    margin = [max(1, int(round(FACE_CROP_MM / s))) for s in spacing_zyx]
    box = tuple(slice(max(int(c.min()) - m, 0), int(c.max()) + m + 1) for c, m in zip(where, margin, strict=True))
    mask = bodies[box] == label
    air, _ = ndi.label(hu[box] < AIR_HU)
    touching = np.unique(np.concatenate([air[0].ravel(), air[-1].ravel(), air[:, 0].ravel(), air[:, -1].ravel(),
                                         air[:, :, 0].ravel(), air[:, :, -1].ravel()]))
    outside = np.isin(air, touching[touching > 0])
    columns = mask.any(axis=0)
    z = np.arange(mask.shape[0])[:, None, None]
    lowest = np.where(mask, z, mask.shape[0]).min(axis=0)[columns]
    highest = np.where(mask, z, -1).max(axis=0)[columns]
    ys, xs = np.nonzero(columns)
    sides = []
    for name, beyond in (("inferior", lowest - 1), ("superior", highest + 1)):
        inside = (beyond >= 0) & (beyond < mask.shape[0])
        if inside.any() and outside[beyond[inside], ys[inside], xs[inside]].sum() >= AIR_FACE_FRACTION * len(beyond):
            sides.append(name)
    return sides


def _cut_sides(image: sitk.Image, bounding_box: tuple[int, ...]) -> list[str]:
    """Anatomical sides (LPS names) on which a bounding box reaches the edge of the image."""
    size = image.GetSize()
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    sides = []
    for axis in range(3):
        start, extent = bounding_box[axis], bounding_box[axis + 3]
        column = direction[:, axis]
        lps_axis = int(np.argmax(np.abs(column)))
        low_name, high_name = _LPS_SIDES[lps_axis]
        if column[lps_axis] < 0:
            low_name, high_name = high_name, low_name
        if start == 0:
            sides.append(low_name)
        if start + extent >= size[axis]:
            sides.append(high_name)
    return sides
