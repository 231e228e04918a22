"""Painting the bones: vertebrae (with labels and compartments) and ribs.

Vertebrae are evaluated in a crop around the spine, in the local frame of the
curved axis (see :mod:`inference.phantom.spine`). Ribs are thin curved tubes;
they are painted as short runs of slices under each pixel of their in-plane
footprint, which costs a few hundred thousand voxels instead of a full pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from inference.levels import Compartment, verse_id
from inference.phantom.anatomy import SpineAxis
from inference.phantom.grid import Grid
from inference.phantom.physics import Tissue
from inference.phantom.spec import PhantomSpec
from inference.phantom.spine import (
    Fracture,
    Part,
    PosteriorShape,
    arch_parts,
    body_part,
    canal_part,
    disc_part,
)
from inference.phantom.torso import Torso

RIB_REACH_RAD: dict[int, float] = {1: 2.6, 2: 2.75, 3: 2.85, 4: 2.9, 5: 2.9, 6: 2.9, 7: 2.85, 8: 2.7,
                                   9: 2.55, 10: 2.4, 11: 1.9, 12: 1.35, 13: 1.1}
"""How far round the chest each rib reaches, as the angle from the back (pi = front midline)."""
RIB_DROP_MM: dict[int, float] = {1: 25.0, 2: 45.0, 11: 50.0, 12: 30.0, 13: 25.0}
"""How far a rib descends from its head to its anterior end (75 mm when not listed)."""
RIB_HEAD_HEIGHT: dict[int, float] = {1: 0.25, 10: 0.3, 11: 0.15, 12: 0.05, 13: 0.0}
"""Height of a rib's head above the centre of its vertebral body, in body heights (0.45 when
not listed): ribs 2-9 articulate across the disc above their vertebra (demifacets), ribs
1 and 10-12 with their own body only, the lowest ones at mid-body (Gray's Anatomy)."""
STEEP_RIBS = frozenset({11, 12, 13})
"""The floating ribs run steeply down from their heads; the others leave the spine nearly level."""
RIB_HALF_WIDTH_MM = 3.5
RIB_HALF_HEIGHT_MM = 6.0


Box = tuple[slice, slice, slice]


@dataclass
class SpineVolumes:
    """Label arrays of the spine crop (z, y, x), where the crop lies in the full grid, and each body's box."""

    window: tuple[slice, slice]
    vertebrae: np.ndarray
    bodies: np.ndarray
    compartments: np.ndarray
    tissue: np.ndarray
    body_boxes: dict[str, Box]


class _LocalFrame:
    """Local axis coordinates over the spine crop: ``u`` and ``v`` per (z, y) row, ``w`` per column."""

    def __init__(self, axis: SpineAxis, grid: Grid, window: tuple[slice, slice]) -> None:
        ys, xs = window
        offset = grid.y[ys][None, :] - axis.y_of_z(grid.z)[:, None]
        tilt = axis.tilt_of_z(grid.z)[:, None]
        self.u = (axis.s_of_z(grid.z)[:, None] + offset * np.sin(tilt)).astype(np.float32)
        self.v = (offset * np.cos(tilt)).astype(np.float32)
        self.w = grid.x[xs].astype(np.float32)

    def evaluate(self, part: Part, centre_s: float) -> tuple[Box, np.ndarray] | None:
        """The box of ``part`` of the vertebra centred at arc length ``centre_s`` and its mask there."""
        u = self.u - centre_s
        rows, cols = np.nonzero((u > part.u_range[0]) & (u < part.u_range[1])
                                & (self.v > part.v_range[0]) & (self.v < part.v_range[1]))
        xs = slice(int(np.searchsorted(self.w, -part.w_half)), int(np.searchsorted(self.w, part.w_half, "right")))
        if rows.size == 0 or xs.stop <= xs.start:
            return None
        zr, yr = slice(int(rows.min()), int(rows.max()) + 1), slice(int(cols.min()), int(cols.max()) + 1)
        mask = part.mask(u[zr, yr][:, :, None], self.v[zr, yr][:, :, None], self.w[xs][None, None, :])
        shape = (zr.stop - zr.start, yr.stop - yr.start, xs.stop - xs.start)
        return (zr, yr, xs), np.broadcast_to(mask, shape)


def _spine_window(axis: SpineAxis, grid: Grid) -> tuple[slice, slice]:
    reach_x = max(max(p.size.width / 2, PosteriorShape.of(p.name, p.size).process_length
                      + p.size.canal_width / 2 + p.size.width * 0.11) for p in axis.levels) + 6.0
    y_axis = axis.y_of_z(grid.z)
    front = float(y_axis.min()) - max(p.size.depth for p in axis.levels) / 2 - 10.0
    back = float(y_axis.max()) + max(PosteriorShape.of(p.name, p.size).canal_centre + p.size.canal_depth / 2
                                     + p.size.spinous_length for p in axis.levels) + 10.0
    xs = slice(int(np.searchsorted(grid.x, -reach_x)), int(np.searchsorted(grid.x, reach_x, "right")))
    ys = slice(int(np.searchsorted(grid.y, front)), int(np.searchsorted(grid.y, back, "right")))
    return ys, xs


def paint_spine(tissue: np.ndarray, grid: Grid, axis: SpineAxis, spec: PhantomSpec) -> SpineVolumes:
    """Paint discs, canal, neural arches and bodies; return labels of the spine crop."""
    window = _spine_window(axis, grid)
    crop = tissue[:, window[0], window[1]]
    frame = _LocalFrame(axis, grid, window)
    vertebrae = np.zeros(crop.shape, np.uint8)
    bodies = np.zeros(crop.shape, np.uint8)
    compartments = np.zeros(crop.shape, np.uint8)
    fractures = {name: Fracture(grade, kind) for name, (grade, kind) in spec.fractures.items()}
    # soft parts first: bone painted later wins where they meet
    for upper, lower in zip(axis.levels, axis.levels[1:]):
        if (found := frame.evaluate(disc_part(upper.size, lower.size), lower.s)) is not None:
            box, mask = found
            fused = spec.transition == "sacralized-L5" and (upper.name, lower.name) == ("L5", "S")
            crop[box][mask] = Tissue.CANCELLOUS if fused else Tissue.DISC  # a sacralised L5 has bone for a disc
    for placed in axis.levels:
        if (found := frame.evaluate(canal_part(placed.size, PosteriorShape.of(placed.name, placed.size)),
                                    placed.s)) is not None:
            box, mask = found
            crop[box][mask] = Tissue.CSF
    for placed in axis.levels:
        label = verse_id(placed.name)
        for part in arch_parts(placed.name, placed.size, PosteriorShape.of(placed.name, placed.size)):
            if (found := frame.evaluate(part, placed.s)) is not None:
                box, mask = found
                crop[box][mask] = Tissue.POSTERIOR_BONE
                vertebrae[box][mask] = label
    body_boxes: dict[str, Box] = {}
    for placed in axis.levels:
        fracture = fractures.get(placed.name)
        found = frame.evaluate(body_part(placed.size, fracture), placed.s)
        if found is None:
            continue
        box, body = found
        core = frame.evaluate(body_part(placed.size, fracture, spec.cortical_thickness_mm), placed.s)
        label = verse_id(placed.name)
        crop[box][body] = Tissue.CORTICAL
        vertebrae[box][body] = label
        bodies[box][body] = label
        compartments[box][body] = Compartment.CORTICAL
        if core is not None:
            core_box, core_mask = core
            crop[core_box][core_mask] = Tissue.CANCELLOUS
            compartments[core_box][core_mask] = Compartment.CANCELLOUS
        body_boxes[placed.name] = box
    # a body voxel that touches another label (disc, canal, another body) is shell:
    # this closes the shell on the voxel grid whatever the slice thickness
    for box in body_boxes.values():
        grown = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(box, crop.shape))
        boundary = _label_boundary(bodies[grown])
        compartments[grown][boundary] = Compartment.CORTICAL
        crop[grown][boundary] = Tissue.CORTICAL
    if spec.transition == "sacralized-L5":
        _fuse(crop, compartments, bodies, frame, axis)
    return SpineVolumes(window, vertebrae, bodies, compartments, crop, body_boxes)


def _fuse(crop: np.ndarray, compartments: np.ndarray, bodies: np.ndarray, frame: _LocalFrame, axis: SpineAxis) -> None:
    """A sacralised L5: the bone that replaces the L5/S1 disc joins the two bodies without endplates."""
    l5, sacrum = axis.level("L5"), axis.level("S")
    found = frame.evaluate(disc_part(l5.size, sacrum.size), sacrum.s)
    if found is None:
        return
    box, mask = found
    near = np.zeros(crop.shape, bool)
    near[box] = mask
    near = ndimage.binary_dilation(near, iterations=2)
    endplates = near & np.isin(bodies, (verse_id("L5"), verse_id("S"))) & (crop == Tissue.CORTICAL)
    crop[endplates] = Tissue.CANCELLOUS
    compartments[endplates] = Compartment.CANCELLOUS


def _label_boundary(labels: np.ndarray) -> np.ndarray:
    """Labelled voxels with a 6-neighbour of another value; the array edge does not count as a neighbour."""
    padded = np.pad(labels, 1, mode="edge")
    centre = padded[1:-1, 1:-1, 1:-1]
    boundary = np.zeros(labels.shape, bool)
    for axis in range(3):
        for shift in (-1, 1):
            neighbour = np.roll(padded, shift, axis=axis)[1:-1, 1:-1, 1:-1]
            boundary |= neighbour != centre
    return boundary & (labels > 0)


def ribbed_levels(spec: PhantomSpec) -> tuple[str, ...]:
    """Levels that carry a pair of ribs."""
    thoracic = [f"T{i}" for i in range(1, 13)]
    if spec.rib_pairs == 11:
        thoracic = thoracic[:11]
    elif spec.rib_pairs == 13:
        thoracic.append("T13")
    return tuple(thoracic + (["L1"] if spec.lumbar_rib else []))


def paint_ribs(tissue: np.ndarray, vertebrae: np.ndarray, grid: Grid, torso: Torso, levels: tuple[str, ...]) -> None:
    """Paint a pair of ribs for each level in ``levels`` (curved tubes from the transverse processes)."""
    x2d, y2d = grid.x[None, :], grid.y[:, None]
    z0, dz = float(grid.z[0]), float(grid.z[1] - grid.z[0])
    for name in levels:
        placed = torso.axis.level(name)
        number = 13 if name in ("T13", "L1") else int(name[1:])
        shape = PosteriorShape.of(name, placed.size)
        # the head sits on its vertebra, behind the body centre: in the vertebra's own frame,
        # so a tilted (kyphotic, lordotic) vertebra carries its ribs up or down with it
        behind = shape.canal_centre + 3.0 + 0.3 * shape.process_length
        u_head = placed.s + RIB_HEAD_HEIGHT.get(number, 0.45) * placed.size.height
        tilt = float(torso.axis.tilt_of_z(np.array(torso.axis.z_of_s(u_head))))
        z_head = float(torso.axis.z_of_s(u_head - behind * np.sin(tilt)))
        drop = RIB_DROP_MM.get(number, 75.0)
        if z_head < grid.z[0] - 10 or z_head - drop > grid.z[-1] + 10:
            continue
        y_axis = float(torso.axis.y_of_z(np.array(z_head)))
        x_tip = placed.size.canal_width / 2 + shape.pedicle_width / 2 + shape.process_length
        y_tip = y_axis + shape.canal_centre + 3.0 + 0.3 * shape.process_length
        a, b, cy = (float(value) for value in torso.outline(z_head))
        rx = a - 14.0
        c = np.sqrt(max(1.0 - (x_tip / rx) ** 2, 0.05))
        ry = (y_tip - cy + b - 14.0) / (1.0 + c)  # anterior end at the inner chest wall
        cy_e = cy - b + 14.0 + ry
        start = float(np.arcsin(min(x_tip / rx, 0.99)))
        reach = start + 0.45 if name == "L1" else RIB_REACH_RAD[number]
        for side in (-1.0, 1.0):
            xs = side * x2d
            angle = np.arctan2(xs / rx, (y2d - cy_e) / ry)
            rho = np.sqrt((xs / rx) ** 2 + ((y2d - cy_e) / ry) ** 2)
            radius = 1.0 / np.sqrt((np.sin(angle) / rx) ** 2 + (np.cos(angle) / ry) ** 2)
            radial = (rho - 1.0) * radius
            iy, ix = np.nonzero((np.abs(radial) < RIB_HALF_WIDTH_MM) & (angle >= start) & (angle <= reach) & (xs > 0))
            if iy.size == 0:
                continue
            along = (angle[iy, ix] - start) / (np.pi - start)
            z_centre = z_head - drop * along ** (0.7 if number in STEEP_RIBS else 1.2)
            across = radial[iy, ix] / RIB_HALF_WIDTH_MM
            half = RIB_HALF_HEIGHT_MM * np.sqrt(1.0 - across ** 2)
            _paint_runs(tissue, vertebrae, iy, ix, z_centre, half, across, z0, dz)


def _paint_runs(tissue: np.ndarray, vertebrae: np.ndarray, iy: np.ndarray, ix: np.ndarray, z_centre: np.ndarray,
                half: np.ndarray, across: np.ndarray, z0: float, dz: float) -> None:
    """Paint, under each footprint pixel, the slices within ``half`` of ``z_centre`` (cortex, marrow inside)."""
    nz = tissue.shape[0]
    low = np.clip(np.ceil((z_centre - half - z0) / dz), 0, nz).astype(np.int64)
    high = np.clip(np.floor((z_centre + half - z0) / dz), -1, nz - 1).astype(np.int64)
    counts = np.maximum(high - low + 1, 0)
    total = int(counts.sum())
    if total == 0:
        return
    owner = np.repeat(np.arange(counts.size), counts)
    iz = low[owner] + (np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts))
    py, px = iy[owner], ix[owner]
    free = (vertebrae[iz, py, px] == 0) & (tissue[iz, py, px] != Tissue.AIR)
    depth = np.abs(z0 + iz * dz - z_centre[owner]) / np.maximum(half[owner], 1e-3)
    marrow = (np.abs(across[owner]) < 0.55) & (depth < 0.55)
    tissue[iz[free], py[free], px[free]] = np.where(marrow[free], Tissue.RIB_MARROW, Tissue.RIB_CORTEX)
