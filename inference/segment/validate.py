"""Checking a segmentation backend against reference labels: per level, right or wrong, and how well.

:func:`compare_levels` sets a :class:`~inference.results.SegmentationResult`
beside a reference whole-vertebra label image (VerSe ids, on the same grid)
and, where given, a reference body mask. For every vertebra in the reference it
reports which label the backend gave the voxels of that vertebra (the level is
*right* when the backend's label there is the reference's), the whole-vertebra
Dice and the body Dice of the backend's label of that name, and the anchors the
label rests on. :func:`render_comparison` draws the backend's labels beside the
reference on a sagittal reformat. ``scpnode segment-validate`` runs both over a
site's labelled cases.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from inference.levels import LEVEL_NAMES  # noqa: E402
from inference.results import SegmentationResult  # noqa: E402


@dataclass(frozen=True)
class LevelComparison:
    """One reference vertebra against the backend's labels."""

    level: str
    """The reference's level name."""
    reference_complete: bool
    """The reference vertebra does not touch the edge of the image (a fragment at the edge can be
    merged with its neighbour without harm: nothing is measured on it)."""
    found_as: str
    """The backend's label over most of the reference vertebra (``"-"``: none)."""
    right: bool
    vertebra_dice: float
    """Dice of the backend's label ``level`` against the reference vertebra."""
    body_dice: float | None
    """Dice of the backend's body ``level`` against the reference body (None without a body reference)."""
    complete: bool | None
    """The backend's completeness of ``level`` (None where it did not label it)."""
    anchors: str
    """The anchors the backend's label ``level`` rests on, joined by ``+``."""

    def to_row(self) -> dict[str, object]:
        return asdict(self)


def compare_levels(result: SegmentationResult, reference: sitk.Image,
                   reference_bodies: sitk.Image | None = None) -> list[LevelComparison]:
    """Per reference vertebra, what the backend made of it (see the module notes).

    Raises:
        ValueError: the reference is not on the result's grid.
    """
    ours = _on_grid(result.vertebrae, reference, "reference labels")
    our_bodies = sitk.GetArrayFromImage(result.bodies)
    truth = sitk.GetArrayFromImage(reference)
    truth_bodies = None
    if reference_bodies is not None:
        truth_bodies = np.where(_on_grid(reference_bodies, reference, "reference bodies") > 0, truth, 0)
    rows = []
    for value in np.unique(truth):
        name = LEVEL_NAMES.get(int(value))
        if name is None:
            continue
        in_truth = truth == value
        labels, counts = np.unique(ours[in_truth], return_counts=True)
        found = [(int(v), int(c)) for v, c in zip(labels, counts, strict=True) if v]
        found_as = LEVEL_NAMES.get(max(found, key=lambda pair: pair[1])[0], "?") if found else "-"
        level = result.levels.get(name)
        rows.append(LevelComparison(
            level=name,
            reference_complete=not _touches_edge(in_truth),
            found_as=found_as,
            right=found_as == name,
            vertebra_dice=round(_dice(ours == value, in_truth), 3),
            body_dice=None if truth_bodies is None else round(_dice(our_bodies == value, truth_bodies == value), 3),
            complete=None if level is None else level.complete,
            anchors="+".join(level.anchors) if level is not None else "",
        ))
    return rows


def render_comparison(image: sitk.Image, result: SegmentationResult, reference: sitk.Image | None,
                      path: Path, title: str = "") -> Path:
    """A sagittal reformat through the spine: the backend's labels (left) beside the reference (right)."""
    ct = sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS"))
    ours = sitk.GetArrayFromImage(sitk.DICOMOrient(result.vertebrae, "LPS"))
    panels = [("backend: " + result.backend, ours)]
    if reference is not None:
        panels.append(("reference", sitk.GetArrayFromImage(sitk.DICOMOrient(reference, "LPS"))))
    spacing = sitk.DICOMOrient(image, "LPS").GetSpacing()
    labelled = ours if ours.any() else panels[-1][1]
    x = int(np.median(np.nonzero(labelled)[2])) if labelled.any() else ct.shape[2] // 2
    extent = (0.0, ct.shape[1] * spacing[1], 0.0, ct.shape[0] * spacing[2])
    figure, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels), 8.0), squeeze=False)
    for axis, (name, labels) in zip(axes[0], panels, strict=True):
        axis.imshow(ct[::-1, :, x], cmap="gray", vmin=-250, vmax=1000, extent=extent)
        plane = labels[::-1, :, x].astype(float)
        axis.imshow(np.ma.masked_where(plane == 0, plane), cmap="tab20", vmin=0, vmax=28, alpha=0.45,
                    extent=extent, interpolation="nearest")
        for value in np.unique(labels[:, :, x]):
            if value and int(value) in LEVEL_NAMES:
                zz, yy = np.nonzero(labels[:, :, x] == value)
                axis.text(yy.min() * spacing[1] - 4.0, (zz.mean() + 0.5) * spacing[2], LEVEL_NAMES[int(value)],
                          color="yellow", fontsize=9, ha="right", va="center")
        if labelled.any():  # the spine and what lies around it, not the whole field of view
            ys = np.nonzero(labelled.any(axis=(0, 2)))[0]
            axis.set_xlim(max(ys.min() * spacing[1] - 60.0, 0.0), min(ys.max() * spacing[1] + 40.0, extent[1]))
        axis.set_title(name, fontsize=10)
        axis.set_xlabel("posterior (mm)")
    axes[0][0].set_ylabel("superior (mm)")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def _touches_edge(mask: np.ndarray) -> bool:
    return any(mask.take(index, axis=axis).any() for axis in range(mask.ndim) for index in (0, -1))


def _on_grid(labels: sitk.Image, reference: sitk.Image, what: str) -> np.ndarray:
    if labels.GetSize() != reference.GetSize():
        raise ValueError(f"{what}: grid {labels.GetSize()} differs from the image {reference.GetSize()}")
    return sitk.GetArrayFromImage(labels)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2.0 * (a & b).sum() / max(int(a.sum() + b.sum()), 1))
