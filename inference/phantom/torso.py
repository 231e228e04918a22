"""Soft tissues around the spine, painted slice by slice: outline, fat, muscle, lungs, organs, vessels, pelvis.

Shapes are ellipses and ellipsoids placed relative to the spine and to the
vertebral levels (diaphragm dome near T10, kidneys T12-L3, aortic bifurcation
at L4, iliac wings below L5), sized for an average adult and scaled by
``PhantomSpec.body_scale``. They give every tissue class a realistic amount
of volume and context; the spine is the only part drawn with anatomical care.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.phantom.anatomy import SpineAxis
from inference.phantom.grid import Grid
from inference.phantom.physics import Tissue
from inference.phantom.texture import SmoothField

OUTLINE_MM: dict[str, tuple[float, float, float]] = {
    "C3": (58.0, 55.0, 45.0), "C7": (75.0, 65.0, 50.0), "T1": (150.0, 95.0, 55.0),
    "T5": (158.0, 105.0, 62.0), "T10": (160.0, 112.0, 68.0), "L2": (156.0, 114.0, 72.0),
    "L5": (165.0, 112.0, 74.0), "S": (175.0, 112.0, 76.0),
}
"""Level -> (left-right semi-axis, antero-posterior semi-axis, skin-to-body-centre depth at the back), mm."""


@dataclass(frozen=True)
class Torso:
    """Where things are along z, derived from the placed spine."""

    axis: SpineAxis
    level_z: dict[str, float]
    body_scale: float
    contrast: bool
    arms_down: bool = False
    sacralized_l5: bool = False

    @classmethod
    def of(cls, axis: SpineAxis, body_scale: float, contrast: bool, arms_down: bool = False,
           sacralized_l5: bool = False) -> Torso:
        return cls(axis, {p.name: float(axis.z_of_s(p.s)) for p in axis.levels}, body_scale, contrast, arms_down,
                   sacralized_l5)

    def z(self, level: str) -> float:
        return self.level_z[level]

    def outline(self, z: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(a, b, cy): semi-axes of the body outline and the y of its centre at height(s) z."""
        names = [n for n in OUTLINE_MM if n in self.level_z]
        zs = np.array([self.level_z[n] for n in names])[::-1]
        values = np.array([OUTLINE_MM[n] for n in names])[::-1]
        a, b, back = (np.interp(z, zs, values[:, i]) for i in range(3))
        a, b = a * self.body_scale, b * self.body_scale
        y_back = self.axis.y_of_z(z) + back * self.body_scale ** 0.5
        return a, b, y_back - b

    def level_width(self, z: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """(width, depth) of the vertebral bodies at height(s) z (interpolated between levels)."""
        zs = np.array([self.axis.z_of_s(p.s) for p in self.axis.levels])[::-1]
        widths = np.array([p.size.width for p in self.axis.levels])[::-1]
        depths = np.array([p.size.depth for p in self.axis.levels])[::-1]
        return np.interp(z, zs, widths), np.interp(z, zs, depths)


def _window(grid: Grid, cx: float, cy: float, ax: float, by: float) -> tuple[slice, slice]:
    xs = slice(int(np.searchsorted(grid.x, cx - ax)), int(np.searchsorted(grid.x, cx + ax, "right")))
    ys = slice(int(np.searchsorted(grid.y, cy - by)), int(np.searchsorted(grid.y, cy + by, "right")))
    return ys, xs


def _paint_ellipse(plane: np.ndarray, grid: Grid, tissue: Tissue, cx: float, cy: float, ax: float, by: float,
                   *, only: tuple[Tissue, ...] | None = None, where: np.ndarray | None = None) -> None:
    """Set ``tissue`` inside an ellipse, optionally only over some tissues or where a full-plane mask holds."""
    if ax <= 0 or by <= 0:
        return
    ys, xs = _window(grid, cx, cy, ax, by)
    region = plane[ys, xs]
    inside = ((grid.x[xs][None, :] - cx) / ax) ** 2 + ((grid.y[ys][:, None] - cy) / by) ** 2 < 1.0
    if only is not None:
        allowed = np.zeros(256, bool)
        allowed[list(only)] = True
        inside &= allowed[region]
    if where is not None:
        inside &= where[ys, xs]
    region[inside] = tissue


def _ellipsoid_scale(z: float, zc: float, half: float) -> float:
    t = (z - zc) / half
    return float(np.sqrt(1.0 - t * t)) if abs(t) < 1 else 0.0


def paint_torso(tissue: np.ndarray, grid: Grid, torso: Torso,
                rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """Paint the soft tissues into ``tissue`` (z, y, x) in place.

    Returns the body outline ``(a, b, cy)`` of every slice (what the
    beam-hardening model needs).
    """
    outlines = []
    # a smooth random field (about 25 mm grain) decides where bowel holds gas or fat
    bowel_field = SmoothField((max(2, int(np.ptp(grid.z) / 25) + 2), 18, 18), grid.shape_zyx, rng)
    z_dome = torso.z("T10") + 5.0
    lung_top = torso.z("T1") + 25.0
    x2d = grid.x[None, :]
    slices = zip(*torso.outline(grid.z), torso.axis.y_of_z(grid.z), *torso.level_width(grid.z))
    for k, (z, (a, b, cy, y_spine, width, depth)) in enumerate(zip(grid.z, slices)):
        plane = tissue[k]
        outlines.append((float(a), float(b), float(cy)))
        fat = (20.0 if z < torso.z("T1") else 8.0) * torso.body_scale ** 2
        wall = 10.0 if z < torso.z("T1") else 6.0
        ca, cb = a - fat - wall, b - fat - wall
        _paint_ellipse(plane, grid, Tissue.FAT, 0.0, cy, a, b)
        _paint_ellipse(plane, grid, Tissue.MUSCLE, 0.0, cy, a - fat, b - fat)
        below_dome = z < z_dome
        _paint_ellipse(plane, grid, Tissue.BOWEL if below_dome else Tissue.FAT, 0.0, cy, ca, cb)
        # diaphragm: domes near T10, posterior and lateral recesses reach T12-L1;
        # its height is a sum of a left-right and an antero-posterior profile
        dome_x = z_dome + np.where(grid.x < 0, 8.0, 0.0) - 30.0 * ((np.abs(grid.x) - 0.5 * ca) / (0.5 * ca)) ** 2
        recess_y = 40.0 * np.clip((grid.y - cy) / cb, 0.0, 1.0)
        above_dia = (z - dome_x)[None, :] > -recess_y[:, None]
        if z < lung_top:
            beside_spine = (np.abs(grid.x) < width / 2 + 18)[None, :] & (grid.y > y_spine - depth / 2 - 6)[:, None]
            lung = above_dia & ~beside_spine
            for side in (-1.0, 1.0):
                _paint_ellipse(plane, grid, Tissue.LUNG, side * 0.52 * ca, cy + 0.05 * cb, 0.4 * ca, 0.86 * cb,
                               only=(Tissue.FAT, Tissue.BOWEL), where=lung)
        if below_dome:
            liver_bottom = torso.z("L3")
            shrink = np.sqrt(np.clip((z - liver_bottom) / (z_dome - liver_bottom), 0.0, 1.0))
            _paint_ellipse(plane, grid, Tissue.LIVER, -0.42 * ca, cy - 0.05 * cb, 0.55 * ca * shrink,
                           0.8 * cb * shrink, only=(Tissue.BOWEL,), where=~above_dia & (x2d < 0.2 * ca))
            if torso.z("L1") < z:
                _paint_ellipse(plane, grid, Tissue.SPLEEN, 0.6 * ca, cy + 0.5 * cb, 0.22 * ca, 0.3 * cb,
                               only=(Tissue.BOWEL,), where=~above_dia)
        heart = _ellipsoid_scale(z, torso.z("T8"), 60.0)
        if heart:
            _paint_ellipse(plane, grid, Tissue.HEART, 0.12 * ca, cy - 0.3 * cb, 0.42 * ca * heart, 0.5 * cb * heart,
                           only=(Tissue.FAT, Tissue.LUNG))
        for side, shift in ((1.0, 5.0), (-1.0, -12.0)):
            kidney = _ellipsoid_scale(z, torso.z("L1") + shift, 55.0)
            if kidney:
                _paint_ellipse(plane, grid, Tissue.FAT, side * (width / 2 + 42.0), y_spine - 2.0,
                               34.0 * kidney, 38.0 * kidney, only=(Tissue.BOWEL, Tissue.LIVER, Tissue.SPLEEN))
                _paint_ellipse(plane, grid, Tissue.KIDNEY, side * (width / 2 + 42.0), y_spine - 2.0,
                               26.0 * kidney, 30.0 * kidney, only=(Tissue.FAT,))
        _paint_vessels(plane, grid, torso, z, z_dome, y_spine, width, depth)
        for side in (-1.0, 1.0):
            _paint_ellipse(plane, grid, Tissue.MUSCLE, side * (width * 0.25 + 22.0), y_spine + depth / 2 + 32.0,
                           14.0 + 0.2 * width, 20.0, only=(Tissue.FAT, Tissue.BOWEL, Tissue.LUNG, Tissue.MUSCLE))
        if torso.z("S") < z < torso.z("T12"):
            grow = np.clip((torso.z("T12") - z) / (torso.z("T12") - torso.z("L4")), 0.0, 1.0)
            radius = 5.0 + 17.0 * float(grow)
            for side in (-1.0, 1.0):
                _paint_ellipse(plane, grid, Tissue.MUSCLE, side * (width / 2 + radius), y_spine + 2.0,
                               radius, radius * 0.9, only=(Tissue.BOWEL, Tissue.FAT, Tissue.KIDNEY))
        if torso.z("T10") < z < torso.z("T3"):
            ys, xs = _window(grid, 0.0, cy - b + fat + 7.0, 14.0, 6.0)
            plane[ys, xs][plane[ys, xs] != Tissue.AIR] = Tissue.STERNUM
        if torso.z("T5") < z:
            _paint_ellipse(plane, grid, Tissue.AIR, 0.0, y_spine - depth / 2 - 18.0, 9.0, 8.0)
        pelvis_top = torso.z("L5") + (torso.axis.level("L5").size.height / 2 if torso.sacralized_l5 else 0.0)
        if z < pelvis_top:
            _paint_pelvis(plane, grid, torso, z, ca, cy, cb, y_spine, width / 2)
        if torso.arms_down and torso.z("L4") < z < torso.z("T1") + 20.0:
            _paint_arms(plane, grid, a, cy, b)
        if below_dome:
            field = bowel_field.plane(k)
            bowel = plane == Tissue.BOWEL
            plane[bowel & (field > 1.4)] = Tissue.BOWEL_GAS
            plane[bowel & (field < -0.1)] = Tissue.FAT  # mesenteric fat between the loops
    return outlines


ARM_RADIUS_MM = 42.0
HUMERUS_RADIUS_MM = 11.0


def _paint_arms(plane: np.ndarray, grid: Grid, a: float, cy: float, b: float) -> None:
    """Arms beside the trunk (skin, muscle, humerus with marrow), outside its outline only."""
    for side in (-1.0, 1.0):
        cx = side * (a + ARM_RADIUS_MM + 4.0)
        where = plane == Tissue.AIR
        _paint_ellipse(plane, grid, Tissue.FAT, cx, cy + 0.1 * b, ARM_RADIUS_MM, ARM_RADIUS_MM, where=where)
        _paint_ellipse(plane, grid, Tissue.MUSCLE, cx, cy + 0.1 * b, ARM_RADIUS_MM - 8.0, ARM_RADIUS_MM - 8.0,
                       where=where)
        _paint_ellipse(plane, grid, Tissue.RIB_CORTEX, cx, cy + 0.1 * b, HUMERUS_RADIUS_MM, HUMERUS_RADIUS_MM,
                       where=where)
        _paint_ellipse(plane, grid, Tissue.RIB_MARROW, cx, cy + 0.1 * b, HUMERUS_RADIUS_MM - 3.0,
                       HUMERUS_RADIUS_MM - 3.0, where=where)


def _paint_vessels(plane: np.ndarray, grid: Grid, torso: Torso, z: float, z_dome: float, y_spine: float,
                   width: float, depth: float) -> None:
    """Aorta (ascending, arch, descending, iliac arteries) and inferior vena cava."""
    soft = (Tissue.FAT, Tissue.BOWEL, Tissue.LUNG, Tissue.LIVER, Tissue.MUSCLE)
    bifurcation = torso.z("L4")
    arch = torso.z("T4")
    descending = (0.5 * width + 8.0, y_spine - 0.25 * depth)
    ascending = (-12.0, y_spine - depth / 2 - 55.0)
    if torso.z("T8") + 25.0 < z < arch + 8.0:
        _paint_ellipse(plane, grid, Tissue.AORTA, *ascending, 14.0, 14.0, only=soft + (Tissue.HEART,))
    if abs(z - arch) < 9.0:  # the arch joins the ascending and the descending aorta
        for t in np.linspace(0.0, 1.0, 12):
            x = (1 - t) * ascending[0] + t * descending[0]
            y = (1 - t) * ascending[1] + t * descending[1]
            _paint_ellipse(plane, grid, Tissue.AORTA, x, y, 12.0, 12.0, only=soft)
    if bifurcation < z < arch:
        # descending aorta: left of the spine in the chest, in front of it in the abdomen
        t = float(np.clip((torso.z("T10") - z) / (torso.z("T10") - torso.z("T12")), 0.0, 1.0))
        cx = (1 - t) * (0.5 * width + 8.0) + t * 12.0
        cy = (1 - t) * (y_spine - 0.25 * depth) + t * (y_spine - depth / 2 - 13.0)
        _paint_ellipse(plane, grid, Tissue.AORTA, cx, cy, 11.5, 11.5, only=soft)
    elif z > torso.z("S") - 40.0:
        spread = 10.0 + 0.45 * (bifurcation - z)
        for side in (-1.0, 1.0):
            _paint_ellipse(plane, grid, Tissue.AORTA, side * spread, y_spine - depth / 2 - 12.0, 6.5, 6.5, only=soft)
    if torso.z("L5") < z < z_dome:
        _paint_ellipse(plane, grid, Tissue.BLOOD, -22.0, y_spine - depth / 2 - 9.0, 13.0, 9.0, only=soft)


def _paint_pelvis(plane: np.ndarray, grid: Grid, torso: Torso, z: float, ca: float, cy: float, cb: float,
                  y_spine: float, sacrum_half_width: float) -> None:
    """Iliac wings: curved bony plates (marrow inside a cortex) growing below L5.

    Behind, each wing ends beside the sacrum (the sacroiliac joint), its posterior
    part reaching back past the sacral canal (posterior iliac crest and spines), as in
    real pelves.
    """
    grow = float(np.clip((torso.z("L5") - z) / 40.0, 0.25, 1.0))
    x2d, y2d = grid.x[None, :], grid.y[:, None]
    for side in (-1.0, 1.0):
        cx, cyy = side * 0.5 * ca, cy + 0.2 * cb
        ax, by = 0.33 * ca * grow + 10.0, 0.45 * cb * grow + 10.0
        radius = np.sqrt(((x2d - cx) / ax) ** 2 + ((y2d - cyy) / by) ** 2)
        thickness = 9.0 / min(ax, by)
        plate = (radius < 1.0) & (radius > 1.0 - thickness) & (y2d > cyy - 0.2 * by) & (side * (x2d - cx) > -0.2 * ax)
        marrow = plate & (radius < 1.0 - 0.2 * thickness) & (radius > 1.0 - 0.8 * thickness)
        posterior = (((x2d - side * (sacrum_half_width + 22.0)) / 18.0) ** 2
                     + ((y2d - (y_spine + 24.0)) / 24.0) ** 2)
        plate |= posterior < 1.0
        marrow |= posterior < 0.45
        keep = plane != Tissue.AIR
        plane[plate & keep] = Tissue.PELVIS_CORTEX
        plane[marrow & keep] = Tissue.PELVIS_MARROW
