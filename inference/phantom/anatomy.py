"""Sizes and positions of the spine: per-level dimensions and the curved axis.

Vertebral body dimensions follow the morphometry of Panjabi et al.
(Spine 1991 "Thoracic human vertebrae", Spine 1992 "Human lumbar vertebrae")
and Gilad & Nissan (Spine 1986): body height, depth (antero-posterior) and
width (left-right) grow caudally from about 14 x 16 x 20 mm in the neck to
27 x 35 x 50 mm at L4-L5. Disc heights are about 4 mm cervical, 5 mm upper
thoracic, 7 mm at the thoracolumbar junction and 10 mm lumbar. The sagittal
curve (cervical lordosis, thoracic kyphosis, lumbar lordosis) is a cubic
spline through typical offsets (Roussouly et al., Spine 2005).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline


@dataclass(frozen=True)
class LevelSize:
    """Dimensions in mm of one vertebra and the disc below it."""

    height: float
    depth: float
    width: float
    disc_below: float
    canal_width: float
    canal_depth: float
    spinous_length: float


_PANJABI_SIZES: dict[str, LevelSize] = {
    "C1": LevelSize(10.0, 10.0, 16.0, 3.5, 25.0, 17.0, 10.0),
    "C2": LevelSize(14.0, 15.0, 18.0, 4.0, 23.0, 16.0, 20.0),
    "C3": LevelSize(14.0, 15.5, 19.0, 4.5, 22.0, 15.0, 18.0),
    "C4": LevelSize(14.0, 16.0, 20.0, 4.5, 22.0, 15.0, 20.0),
    "C5": LevelSize(14.0, 16.0, 21.0, 4.5, 22.0, 15.0, 22.0),
    "C6": LevelSize(14.0, 16.5, 22.0, 4.5, 22.0, 15.0, 25.0),
    "C7": LevelSize(15.0, 17.0, 24.0, 4.5, 21.0, 15.0, 35.0),
    "T1": LevelSize(16.0, 17.0, 26.0, 4.5, 19.0, 15.0, 38.0),
    "T2": LevelSize(17.0, 18.0, 27.0, 4.5, 17.0, 15.0, 38.0),
    "T3": LevelSize(17.5, 19.0, 27.5, 4.5, 16.0, 15.0, 38.0),
    "T4": LevelSize(18.0, 21.0, 28.0, 4.5, 15.5, 15.0, 38.0),
    "T5": LevelSize(18.5, 23.0, 29.0, 5.0, 15.5, 15.0, 38.0),
    "T6": LevelSize(19.0, 25.0, 30.0, 5.0, 15.5, 15.0, 38.0),
    "T7": LevelSize(19.5, 26.0, 31.0, 5.0, 15.5, 15.0, 38.0),
    "T8": LevelSize(20.0, 27.0, 33.0, 5.5, 16.0, 15.0, 38.0),
    "T9": LevelSize(21.0, 28.0, 35.0, 6.0, 16.0, 15.0, 36.0),
    "T10": LevelSize(22.0, 29.0, 37.0, 6.5, 16.5, 15.5, 34.0),
    "T11": LevelSize(23.0, 30.0, 39.0, 7.0, 17.5, 16.0, 32.0),
    "T12": LevelSize(24.0, 31.0, 41.0, 7.5, 19.0, 16.5, 32.0),
    "T13": LevelSize(24.5, 31.5, 42.0, 8.0, 20.0, 16.5, 32.0),
    "L1": LevelSize(25.0, 32.0, 43.0, 9.0, 21.0, 17.0, 32.0),
    "L2": LevelSize(26.0, 33.0, 45.0, 10.0, 21.5, 17.0, 33.0),
    "L3": LevelSize(26.5, 34.0, 47.0, 10.5, 22.0, 17.0, 33.0),
    "L4": LevelSize(26.5, 34.5, 49.0, 11.0, 23.0, 17.0, 32.0),
    "L5": LevelSize(26.0, 35.0, 50.0, 11.0, 24.0, 17.0, 28.0),
    "S": LevelSize(28.0, 36.0, 50.0, 0.0, 24.0, 14.0, 15.0),
}
"""Per-level vertebral body height, depth (AP), width (LR), disc below, canal and spinous process, mm."""

CT_DEPTH_FACTOR, CT_WIDTH_FACTOR = 1.2, 1.05
"""Endplate-based morphometry underestimates the body as CT labels it (mid-body
bulge, osteophytes, label partial volume); these factors bring depth and width
to the sizes of TotalSegmentator labels of a real abdominal CT at 3 mm."""

LEVEL_SIZES: dict[str, LevelSize] = {
    name: LevelSize(s.height, s.depth * CT_DEPTH_FACTOR, s.width * CT_WIDTH_FACTOR, s.disc_below, s.canal_width,
                    s.canal_depth, s.spinous_length)
    for name, s in _PANJABI_SIZES.items()
}
"""Sizes used by the phantom."""

SAGITTAL_OFFSET_MM: dict[str, float] = {
    "C2": -6.0, "C5": -14.0, "T1": 0.0, "T4": 18.0, "T7": 26.0, "T10": 18.0,
    "T12": 6.0, "L1": 0.0, "L3": -14.0, "L5": -6.0, "S": 18.0,
}
"""Antero-posterior offset (posterior positive) of the body centre at some levels; a spline joins them."""


@dataclass(frozen=True)
class PlacedLevel:
    """One vertebra placed on the spine axis: ``s`` is the arc length of its centre (mm, superior positive)."""

    name: str
    s: float
    size: LevelSize


@dataclass(frozen=True)
class SpineAxis:
    """The curved spine axis in the mid-sagittal plane.

    The axis runs through the centres of the vertebral bodies. Knots sample it
    finely: arc length ``s`` (mm, growing superiorly), height ``z`` and
    antero-posterior position ``y`` (LPS, posterior positive).
    """

    s_knots: np.ndarray
    z_knots: np.ndarray
    y_knots: np.ndarray
    levels: tuple[PlacedLevel, ...]

    def y_of_z(self, z: np.ndarray) -> np.ndarray:
        return np.interp(z, self.z_knots, self.y_knots)

    def tilt_of_z(self, z: np.ndarray) -> np.ndarray:
        """Angle (radians) of the axis from the z axis; positive when it leans posterior going up."""
        slope = np.gradient(self.y_knots, self.z_knots)
        return np.arctan(np.interp(z, self.z_knots, slope))

    def s_of_z(self, z: np.ndarray) -> np.ndarray:
        return np.interp(z, self.z_knots, self.s_knots)

    def z_of_s(self, s: np.ndarray | float) -> np.ndarray:
        return np.interp(s, self.s_knots, self.z_knots)

    def level(self, name: str) -> PlacedLevel:
        for placed in self.levels:
            if placed.name == name:
                return placed
        raise KeyError(name)

    def span(self, top: str, bottom: str) -> tuple[float, float]:
        """Arc lengths of the superior endplate of ``top`` and the inferior endplate of ``bottom``."""
        upper, lower = self.level(top), self.level(bottom)
        return upper.s + upper.size.height / 2, lower.s - lower.size.height / 2


def layout_spine(names: tuple[str, ...], *, top_s: float, y_shift: float, size_scale: float,
                 curvature: float = 1.0) -> SpineAxis:
    """Place the vertebrae ``names`` (head to sacrum) on a curved axis.

    The superior endplate of the first lies at arc length ``top_s`` (mm);
    ``y_shift`` moves the curve antero-posteriorly and ``size_scale`` scales
    every dimension (patient build), ``curvature`` the sagittal curve (kyphosis and
    lordosis). Arc length and z coincide at ``top_s``.
    """
    placed: list[PlacedLevel] = []
    s = top_s
    for name in names:
        base = LEVEL_SIZES[name]
        size = LevelSize(*(value * size_scale for value in (
            base.height, base.depth, base.width, base.disc_below, base.canal_width,
            base.canal_depth, base.spinous_length)))
        placed.append(PlacedLevel(name, s - size.height / 2, size))
        s -= size.height + size.disc_below
    table_index = {name: i for i, name in enumerate(LEVEL_SIZES)}
    curve = CubicSpline([table_index[n] for n in SAGITTAL_OFFSET_MM], list(SAGITTAL_OFFSET_MM.values()))
    centres = np.array([p.s for p in placed])[::-1]
    offsets = curve([table_index[p.name] for p in placed])[::-1] * size_scale * curvature + y_shift
    s_knots = np.linspace(centres[0] - 120.0, centres[-1] + 120.0, 1200)
    y_knots = CubicSpline(centres, offsets, bc_type="natural")(np.clip(s_knots, centres[0], centres[-1]))  # flat beyond the ends
    # z advances by the component of each arc step along z
    dz = np.sqrt(np.maximum(np.diff(s_knots) ** 2 - np.diff(y_knots) ** 2, 1e-9))
    z_knots = np.concatenate([[0.0], np.cumsum(dz)])
    z_knots += top_s - np.interp(top_s, s_knots, z_knots)
    return SpineAxis(s_knots=s_knots, z_knots=z_knots, y_knots=y_knots, levels=tuple(placed))
