"""``generate_phantom``: a :class:`PhantomSpec` -> image, labels and ground truth on one grid."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from inference.levels import Compartment, verse_id
from inference.phantom.anatomy import SpineAxis, layout_spine
from inference.phantom.deform import bend, lateral_curve
from inference.phantom.grid import Grid
from inference.phantom.physics import VBMD_MG_CM3_PER_HU, Tissue, acquire, cupping, hu_from_vbmd, tissue_hu
from inference.phantom.skeleton import (
    SpineVolumes,
    paint_ribs,
    paint_spine,
    ribbed_levels,
)
from inference.phantom.spec import PhantomSpec
from inference.phantom.spine import Fracture, body_heights
from inference.phantom.texture import SmoothField, trabecular_texture
from inference.phantom.torso import Torso, paint_torso

TRUTH_FORMAT = "scpnode-phantom-truth/1"
POSTERIOR_BONE_EXCESS_HU = 230.0
"""Neural arches are denser than the cancellous core of their body (more cortex)."""
SOFT_TISSUES = (Tissue.FAT, Tissue.MUSCLE, Tissue.SOFT_TISSUE, Tissue.LIVER, Tissue.SPLEEN, Tissue.KIDNEY,
                Tissue.BOWEL, Tissue.HEART, Tissue.BLOOD)
SOFT_TISSUE_VARIATION_HU = 15.0
SOFT_TISSUE_GRAIN_MM = 12.0
"""Soft tissue is not uniform (organ perfusion, fat stranding, muscle fibre fat): a smooth
variation of about 15 HU over about 12 mm widens the fat and soft-tissue peaks to what real CT shows."""
SPINE_CENTRE_Y_MM = 30.0
"""Antero-posterior position of the thoracolumbar bodies (posterior of the table centre)."""


@dataclass(frozen=True)
class Phantom:
    """A synthetic CT study: the image and its ground truth, all on the same grid (LPS, HU)."""

    spec: PhantomSpec
    image: sitk.Image
    vertebrae: sitk.Image
    bodies: sitk.Image
    compartments: sitk.Image
    truth: dict[str, Any]
    tissues: sitk.Image | None = None
    """Tissue class per voxel (:class:`inference.phantom.physics.Tissue`), for checks and figures."""


def _rng(spec: PhantomSpec, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([spec.seed, stream]))


def place_spine(spec: PhantomSpec, grid: Grid) -> SpineAxis:
    """Lay out the whole spine so that top_level..bottom_level is centred in the field of view."""
    names = spec.spine_levels()
    scale = spec.body_scale ** 0.25  # bigger people have somewhat bigger vertebrae
    probe = layout_spine(names, top_s=0.0, y_shift=SPINE_CENTRE_Y_MM, size_scale=scale, curvature=spec.kyphosis)
    upper, lower = probe.span(spec.top_level, spec.bottom_level)
    middle = float(probe.z_of_s((upper + lower) / 2))
    field_centre = float(grid.z[0] + grid.z[-1]) / 2
    return layout_spine(names, top_s=field_centre - middle, y_shift=SPINE_CENTRE_Y_MM, size_scale=scale,
                        curvature=spec.kyphosis)


def generate_phantom(spec: PhantomSpec) -> Phantom:
    """Generate a synthetic CT study with ground truth from ``spec`` (deterministic for a seed)."""
    grid = Grid.centred(spec.shape, spec.spacing_mm)
    axis = place_spine(spec, grid)
    torso = Torso.of(axis, spec.body_scale, spec.contrast, spec.arms_down, spec.transition == "sacralized-L5")
    tissue = np.zeros(grid.shape_zyx, np.uint8)
    outlines = paint_torso(tissue, grid, torso, _rng(spec, 1))
    spine = paint_spine(tissue, grid, axis, spec)
    ys, xs = spine.window
    vertebrae = np.zeros(grid.shape_zyx, np.uint8)
    vertebrae[:, ys, xs] = spine.vertebrae
    ribs = ribbed_levels(spec)
    paint_ribs(tissue, vertebrae, grid, torso, ribs)
    hu = _attenuation(tissue, spine, spec, grid)
    bodies = np.zeros(grid.shape_zyx, np.uint8)
    bodies[:, ys, xs] = spine.bodies
    compartments = np.zeros(grid.shape_zyx, np.uint8)
    compartments[:, ys, xs] = spine.compartments
    truth = _truth(spec, grid, axis, spine, ribs)
    if spec.scoliosis_deg > 0:
        hu, tissue, vertebrae, bodies, compartments = bend(
            [hu, tissue, vertebrae, bodies, compartments], [1, 0, 0, 0, 0], grid, axis, spec.scoliosis_deg)
        z_knots, offset = lateral_curve(axis, spec.scoliosis_deg)
        for level in truth["levels"].values():
            level["centre_lps"][0] = round(float(np.interp(level["centre_lps"][2], z_knots, offset)), 3)
    tissues = grid.to_image(tissue)
    del tissue
    bias = _cupping(grid, outlines, spec.beam_hardening_hu) if spec.beam_hardening_hu else None
    image = acquire(hu, grid.spacing_xyz, spec.slice_thickness_mm, spec.noise_hu, _rng(spec, 3), bias)
    del hu
    return Phantom(spec, grid.to_image(image), grid.to_image(vertebrae), grid.to_image(bodies),
                   grid.to_image(compartments), truth, tissues)


def _attenuation(tissue: np.ndarray, spine: SpineVolumes, spec: PhantomSpec, grid: Grid) -> np.ndarray:
    """Noise-free HU per voxel: the tissue table with a slow variation of soft tissue,
    then per-level bone values with trabecular texture."""
    lut = tissue_hu(spec.contrast, spec.contrast_phase)
    soft = np.zeros(lut.shape, np.float32)
    soft[list(SOFT_TISSUES)] = SOFT_TISSUE_VARIATION_HU
    extent = [len(axis) * spacing for axis, spacing in zip((grid.z, grid.y, grid.x), grid.spacing_xyz[::-1])]
    lattice = tuple(max(2, int(size / SOFT_TISSUE_GRAIN_MM) + 2) for size in extent)
    variation = SmoothField(lattice, tissue.shape, _rng(spec, 4))
    hu = np.empty(tissue.shape, np.float32)
    for k in range(tissue.shape[0]):  # slice by slice: the look-up stays in cache
        np.take(lut, tissue[k], out=hu[k])
        hu[k] += soft[tissue[k]] * variation.plane(k)
    crop = hu[:, spine.window[0], spine.window[1]]
    vbmd = spec.vbmd_by_level()
    cortical_hu = float(lut[Tissue.CORTICAL])
    # a shell thinner than a voxel shows only part of its density (partial volume)
    shell_fill = min(1.0, spec.cortical_thickness_mm / min(grid.spacing_xyz))
    arch_hu = np.zeros(256, np.float32)
    for name in spec.spine_levels():
        arch_hu[verse_id(name)] = hu_from_vbmd(vbmd[name]) + POSTERIOR_BONE_EXCESS_HU
    arches = spine.tissue == Tissue.POSTERIOR_BONE
    crop[arches] = arch_hu[spine.vertebrae[arches]]
    for name, box in spine.body_boxes.items():
        placed_label = verse_id(name)
        target = hu_from_vbmd(vbmd[name])
        part = crop[box]
        own = spine.bodies[box] == placed_label
        compartment = spine.compartments[box]
        core = own & (compartment == Compartment.CANCELLOUS)
        part[own & (compartment == Compartment.CORTICAL)] = target + (cortical_hu - target) * shell_fill
        if core.any():
            grain = trabecular_texture(part.shape, grid.spacing_xyz[::-1], spec.trabecular_heterogeneity,
                                       np.random.default_rng(np.random.SeedSequence([spec.seed, 2, placed_label])))
            part[core] = target + grain[core] - float(grain[core].mean())
    return hu


def _cupping(grid: Grid, outlines: list[tuple[float, float, float]], amplitude: float) -> Callable[[int], np.ndarray]:
    """Per-slice beam-hardening bias: darker towards the centre of the body outline."""
    x2d, y2d = grid.x[None, :], grid.y[:, None]

    def bias(k: int) -> np.ndarray:
        a, b, cy = outlines[k]
        return cupping((x2d / a) ** 2 + ((y2d - cy) / b) ** 2, amplitude)

    return bias


def _truth(spec: PhantomSpec, grid: Grid, axis: SpineAxis, spine: SpineVolumes,
           ribs: tuple[str, ...]) -> dict[str, Any]:
    vertebra_voxels = np.bincount(spine.vertebrae.ravel(), minlength=256)
    body_voxels = np.bincount(spine.bodies.ravel(), minlength=256)
    cortical_voxels = np.bincount(spine.bodies[spine.compartments == Compartment.CORTICAL], minlength=256)
    cancellous_voxels = np.bincount(spine.bodies[spine.compartments == Compartment.CANCELLOUS], minlength=256)
    on_edge = _labels_on_edge(spine, grid)
    vbmd = spec.vbmd_by_level()
    names = spec.spine_levels()
    wanted = set(names[names.index(spec.top_level): names.index(spec.bottom_level) + 1])
    levels: dict[str, Any] = {}
    for placed in axis.levels:
        label = verse_id(placed.name)
        if vertebra_voxels[label] == 0 and placed.name not in wanted:
            continue
        z = float(axis.z_of_s(placed.s))
        tilt = float(axis.tilt_of_z(np.array(z)))
        fracture = spec.fractures.get(placed.name)
        size = placed.size
        levels[placed.name] = {
            "id": label,
            "in_view": bool(vertebra_voxels[label] > 0),
            "complete_in_view": bool(vertebra_voxels[label] > 0 and label not in on_edge),
            "centre_lps": [0.0, round(float(axis.y_of_z(np.array(z))), 3), round(z, 3)],
            "superior_axis_lps": [0.0, round(np.sin(tilt), 5), round(np.cos(tilt), 5)],
            "heights_mm": body_heights(size, Fracture(*fracture) if fracture else None),
            "body_size_mm": {"height": round(size.height, 2), "depth": round(size.depth, 2),
                             "width": round(size.width, 2)},
            "vbmd_mg_cm3": vbmd[placed.name],
            "expected_cancellous_hu": round(hu_from_vbmd(vbmd[placed.name]), 2),
            "fracture": {"grade": fracture[0], "type": fracture[1]} if fracture else {"grade": 0, "type": None},
            "ribs": placed.name in ribs,
            "voxels": {"vertebra": int(vertebra_voxels[label]), "body": int(body_voxels[label]),
                       "cortical": int(cortical_voxels[label]), "cancellous": int(cancellous_voxels[label])},
        }
    return {
        "format": TRUTH_FORMAT,
        "spec": spec.to_dict(),
        "grid": {"size": list(spec.shape), "spacing_mm": list(grid.spacing_xyz),
                 "origin_lps": [float(grid.x[0]), float(grid.y[0]), float(grid.z[0])],
                 "direction": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]},
        "hu_calibration": {"model": "cancellous HU = vBMD / vbmd_mg_cm3_per_hu",
                           "vbmd_mg_cm3_per_hu": VBMD_MG_CM3_PER_HU},
        "rib_pairs": spec.rib_pairs,
        "lumbar_rib": spec.lumbar_rib,
        "ribbed_levels": list(ribs),
        "levels": levels,
    }


def _labels_on_edge(spine: SpineVolumes, grid: Grid) -> set[int]:
    """Labels that touch a face of the field of view (cut by it)."""
    labels = spine.vertebrae
    faces = [labels[0], labels[-1]]
    ys, xs = spine.window
    if ys.start == 0:
        faces.append(labels[:, 0])
    if ys.stop >= len(grid.y):
        faces.append(labels[:, -1])
    if xs.start == 0:
        faces.append(labels[:, :, 0])
    if xs.stop >= len(grid.x):
        faces.append(labels[:, :, -1])
    return {int(v) for face in faces for v in np.unique(face) if v}
