"""Backend registry and :func:`segment_volume`, the one entry point to segmentation.

A backend is a function ``(image, *, device, model_dir, lowest_level) -> BackendOutput``
that labels whole vertebrae and vertebral bodies with VerSe ids on the input grid
and says how sure its level labelling is and on which anatomical anchors it rests. Everything after that is shared, so every
backend gives the same kind of result: the cortical/cancellous split
(:func:`inference.segment.compartments.split_compartments`) and the per-level
description, completeness included (:func:`inference.segment.levels.describe_levels`).

Backends are registered by name. Built-in ones are named by import path and
imported only when used, so the default backend never imports torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import SimpleITK as sitk

from inference.results import LevelAnchor, SegmentationResult
from inference.segment.compartments import split_compartments
from inference.segment.levels import describe_levels
from inference.volume import check_volume


@dataclass
class BackendOutput:
    """What a backend returns; all images on the input grid (same size, spacing, origin, direction)."""

    vertebrae: sitk.Image
    """Whole-vertebra labels, VerSe ids (0 background), ``sitkUInt8``."""
    bodies: sitk.Image
    """The same ids restricted to the vertebral bodies, ``sitkUInt8``."""
    version: str = ""
    """Backend or model version, recorded in ``segmentation.json``."""
    labelling_confidence: float = 1.0
    """0..1, how sure the backend is of the level labels as a whole."""
    level_confidence: dict[int, float] = field(default_factory=dict)
    """Per VerSe id, 0..1; ids not listed get ``labelling_confidence``."""
    needs_review: bool = False
    """True when the evidence for the labels conflicts and a person should check them."""
    warnings: list[str] = field(default_factory=list)
    """Plain-language remarks for the reader (conflicting evidence, unusual anatomy)."""
    anchors: list[LevelAnchor] = field(default_factory=list)
    """The anatomical anchors the labels were counted from (agreeing or not)."""
    level_anchors: dict[int, tuple[str, ...]] = field(default_factory=dict)
    """Per VerSe id, the kinds of the agreeing anchors its label rests on."""


class SegmentationBackend(Protocol):
    """The call signature every backend implements.

    ``lowest_level``, when given, is the level of the most caudal vertebra in
    view as the user states it (a crop that shows neither ribs nor sacrum).
    """

    def __call__(
        self, image: sitk.Image, *, device: str, model_dir: Path | None, lowest_level: str | None = None
    ) -> BackendOutput: ...


_BUILTIN_BACKENDS: dict[str, str] = {
    "anatomical": "inference.segment.anatomical:segment_anatomical",
    "unet": "inference.segment.unet:segment_unet",
    "nnunet": "inference.segment.nnunet:segment_nnunet",
}
"""Name -> ``module:function`` of the backends shipped with the node."""


_registered: dict[str, SegmentationBackend] = {}


def register_backend(name: str, backend: SegmentationBackend) -> None:
    """Make ``backend`` available to :func:`segment_volume` under ``name`` (replacing any previous one)."""
    _registered[name] = backend


def available_backends() -> list[str]:
    """Names accepted by :func:`segment_volume`."""
    return sorted(set(_BUILTIN_BACKENDS) | set(_registered))


def get_backend(name: str) -> SegmentationBackend:
    """Return the backend registered as ``name``.

    Raises:
        ValueError: no backend has that name (the message lists the known ones).
    """
    if name in _registered:
        return _registered[name]
    if name not in _BUILTIN_BACKENDS:
        raise ValueError(f"unknown segmentation backend {name!r}; available: {', '.join(available_backends())}")
    module_name, function_name = _BUILTIN_BACKENDS[name].split(":")
    backend: SegmentationBackend = getattr(importlib.import_module(module_name), function_name)
    _registered[name] = backend
    return backend


def segment_volume(
    image: sitk.Image,
    backend: str = "anatomical",
    *,
    device: str = "auto",
    model_dir: Path | None = None,
    lowest_level: str | None = None,
) -> SegmentationResult:
    """Segment the vertebrae of a CT and split T11-L2 bodies into cortical shell and cancellous core.

    Args:
        image: CT volume in HU, LPS (as returned by :func:`inference.volume.load_volume`).
        backend: name of a registered backend (:func:`available_backends`).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``; used by backends that run a network.
        model_dir: model folder for backends that load weights.
        lowest_level: the level of the most caudal vertebra in view, where the user
            states it (e.g. ``"L3"`` for a spine crop without ribs or sacrum).

    Returns:
        A :class:`~inference.results.SegmentationResult` on the input grid. A CT
        that does not show T11-L2 is a valid result: the missing levels are
        listed in ``levels_not_in_view`` and the levels dict holds what was found.

    Raises:
        inference.volume.VolumeError: the image is not a usable CT volume.
        ValueError: unknown backend or level.
    """
    check_volume(image)
    run_backend = get_backend(backend)
    # only when given: backends registered without the keyword keep working
    hint = {"lowest_level": lowest_level} if lowest_level is not None else {}
    output = run_backend(image, device=device, model_dir=model_dir, **hint)
    _check_same_grid(image, output.vertebrae, "vertebrae")
    _check_same_grid(image, output.bodies, "bodies")
    compartments = split_compartments(image, output.bodies)
    description = describe_levels(
        output.vertebrae,
        output.bodies,
        level_confidence=output.level_confidence,
        default_confidence=output.labelling_confidence,
        level_anchors=output.level_anchors,
        image=image,
    )
    return SegmentationResult(
        vertebrae=output.vertebrae,
        bodies=output.bodies,
        compartments=compartments,
        levels=description.levels,
        backend=backend,
        backend_version=output.version,
        labelling_confidence=output.labelling_confidence,
        needs_review=output.needs_review,
        warnings=[*output.warnings, *description.warnings],
        levels_not_in_view=description.not_in_view,
        anchors=list(output.anchors),
    )


def _check_same_grid(reference: sitk.Image, labels: sitk.Image, what: str) -> None:
    """A backend bug, not a user error: outputs must lie on the input grid."""
    same = (
        labels.GetSize() == reference.GetSize()
        and all(abs(a - b) < 1e-4 for a, b in zip(labels.GetSpacing(), reference.GetSpacing(), strict=True))
        and all(abs(a - b) < 1e-3 for a, b in zip(labels.GetOrigin(), reference.GetOrigin(), strict=True))
        and all(abs(a - b) < 1e-5 for a, b in zip(labels.GetDirection(), reference.GetDirection(), strict=True))
    )
    if not same:
        raise RuntimeError(f"segmentation backend returned {what} that are not on the input grid")
