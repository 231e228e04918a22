"""Vertebrae as implicit shapes in the local frame of the curved spine axis.

Every vertebra is drawn in coordinates attached to the axis: ``u`` along the
axis (mm from the body centre, superior positive), ``v`` antero-posterior
(posterior positive) and ``w`` left-right (LPS x). For a voxel at height z and
antero-posterior position y, with the axis at ``y_axis(z)`` leaning by
``theta(z)``, ``u = s(z) + (y - y_axis) sin(theta)`` and
``v = (y - y_axis) cos(theta)``: a first-order frame, exact on the axis and
accurate for the gentle curvature of a spine.

The body is a superellipse in cross-section with a concave posterior wall and
a slight waist, closed by gently concave endplates (Panjabi et al., Spine
1991/1992). Fractures lower the endplates following the Genant
semi-quantitative types: wedge (anterior), biconcave (central) and crush
(whole body).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.phantom.anatomy import LevelSize
from inference.phantom.spec import GENANT_HEIGHT_LOSS

SUPERELLIPSE_POWER = 2.3
ENDPLATE_CONCAVITY_MM = 1.0
WAIST = 0.06
"""Relative narrowing of the body at mid-height."""


@dataclass(frozen=True)
class Fracture:
    grade: int
    kind: str

    @property
    def loss(self) -> float:
        return GENANT_HEIGHT_LOSS[self.grade]


def cross_section_radius(size: LevelSize, u: np.ndarray, v: np.ndarray, w: np.ndarray,
                         shrink_mm: float = 0.0) -> np.ndarray:
    """Normalised superellipse radius of (v, w) in the body cross-section (< 1 inside)."""
    waist = 1.0 - WAIST * np.clip(1.0 - (2.0 * u / size.height) ** 2, 0.0, 1.0)
    half_w = (size.width / 2 - shrink_mm) * waist
    half_d = (size.depth / 2 - shrink_mm) * waist
    p = SUPERELLIPSE_POWER
    return ((np.abs(w) / half_w) ** p + (np.abs(v) / half_d) ** p) ** (1.0 / p)


def half_height(size: LevelSize, v: np.ndarray, radius: np.ndarray, fracture: Fracture | None) -> np.ndarray:
    """Distance from the body centre to each endplate before endplate concavity, per (v, radius)."""
    half = size.height / 2
    if fracture is None:
        return np.full(np.broadcast(v, radius).shape, half, dtype=np.float32)
    loss = fracture.loss
    rel_v = np.clip(v / (size.depth / 2), -1.0, 1.0)
    if fracture.kind == "wedge":
        factor = 1.0 - loss * (1.0 - rel_v) / 2.0
    elif fracture.kind == "biconcave":
        factor = 1.0 - loss * np.clip(1.0 - radius ** 2, 0.0, 1.0)
    else:  # crush: the whole body collapses, the anterior wall slightly more
        factor = 1.0 - loss * (0.92 - 0.08 * rel_v)
    return (half * factor * np.ones_like(radius)).astype(np.float32)


def endplates(size: LevelSize, v: np.ndarray, radius: np.ndarray,
              fracture: Fracture | None) -> tuple[np.ndarray, np.ndarray]:
    """Inferior and superior endplate positions ``u`` (mm) over the cross-section."""
    concavity = ENDPLATE_CONCAVITY_MM * np.clip(1.0 - radius ** 2, 0.0, 1.0)
    half = half_height(size, v, radius, fracture)
    return -half + concavity, half - concavity


def posterior_wall(size: LevelSize, w: np.ndarray) -> np.ndarray:
    """Posterior limit of the body in ``v``: the wall is concave towards the canal."""
    return size.depth / 2 - 0.06 * size.depth * np.clip(1.0 - (2.0 * w / size.width) ** 2, 0.0, 1.0)


def body_mask(size: LevelSize, u: np.ndarray, v: np.ndarray, w: np.ndarray, fracture: Fracture | None,
              shrink_mm: float = 0.0) -> np.ndarray:
    """Voxels inside the vertebral body (optionally shrunk inwards by ``shrink_mm``)."""
    radius = cross_section_radius(size, u, v, w, shrink_mm)
    outer_radius = radius if shrink_mm == 0 else cross_section_radius(size, u, v, w)
    lower, upper = endplates(size, v, outer_radius, fracture)
    return ((radius < 1.0) & (v < posterior_wall(size, w) - shrink_mm)
            & (u > lower + shrink_mm) & (u < upper - shrink_mm))


def body_heights(size: LevelSize, fracture: Fracture | None) -> dict[str, float]:
    """Anterior, middle and posterior body heights (mm) in the mid-sagittal plane.

    Measured as in morphometry: at 10 % of the depth inside the anterior and
    posterior walls, and at the centre.
    """
    heights = {}
    posterior_v = float(posterior_wall(size, np.zeros(1))[0]) - 0.1 * size.depth
    for name, v_mm in (("anterior", -size.depth / 2 + 0.1 * size.depth), ("middle", 0.0),
                       ("posterior", posterior_v)):
        v = np.array([v_mm])
        radius = cross_section_radius(size, np.zeros(1), v, np.zeros(1))
        lower, upper = endplates(size, v, radius, fracture)
        heights[name] = round(float(upper[0] - lower[0]), 2)
    return heights


@dataclass(frozen=True)
class PosteriorShape:
    """Sizes of the neural arch derived from the level size, mm."""

    canal_centre: float
    pedicle_width: float
    process_length: float
    spinous_slope: float

    @classmethod
    def of(cls, name: str, size: LevelSize) -> PosteriorShape:
        canal_centre = size.depth / 2 - 0.06 * size.depth + size.canal_depth / 2
        if name.startswith("L") or name == "S":
            process, slope = 0.42 * size.width, 0.25
        elif name.startswith("T"):
            number = 13 if name == "T13" else int(name[1:])
            process = 0.62 * size.width if number < 11 else 0.38 * size.width
            slope = 1.3 if 5 <= number <= 9 else 0.8
        else:
            process, slope = 0.3 * size.width, 0.35
        return cls(canal_centre, max(0.22 * size.width, 5.0), process, slope)


def canal_mask(size: LevelSize, shape: PosteriorShape, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The spinal canal (elliptic in cross-section), independent of ``u``."""
    return (w / (size.canal_width / 2)) ** 2 + ((v - shape.canal_centre) / (size.canal_depth / 2)) ** 2 < 1.0


def arch_mask(name: str, size: LevelSize, shape: PosteriorShape, u: np.ndarray, v: np.ndarray,
              w: np.ndarray) -> np.ndarray:
    """Pedicles, laminae, spinous, transverse and articular processes of one vertebra."""
    h, vc = size.height, shape.canal_centre
    half_cw, half_cd, pw = size.canal_width / 2, size.canal_depth / 2, shape.pedicle_width
    aw = np.abs(w)
    pedicle_w = half_cw + pw / 2
    pedicles = ((((aw - pedicle_w) / (pw / 2)) ** 2 + ((u - 0.12 * h) / (0.3 * h)) ** 2 < 1.0)
                & (v > size.depth / 2 - 0.2 * size.depth) & (v < vc + 0.3 * size.canal_depth))
    ring = ((w / (half_cw + 6.0)) ** 2 + ((v - vc) / (half_cd + 6.0)) ** 2 < 1.0) & (v > vc - 2.0)
    laminae = ring & (u > -0.5 * h - 0.3 * size.disc_below) & (u < 0.3 * h)
    tip = vc + half_cd + size.spinous_length
    spinous_u = -0.1 * h - (v - vc - half_cd) * shape.spinous_slope
    spinous = ((aw < 3.0 + 0.04 * size.width) & (v > vc + half_cd) & (v < tip)
               & (np.abs(u - spinous_u) < 0.22 * h))
    transverse_v = vc + (3.0 + 0.3 * (aw - pedicle_w) if name.startswith("T") else -2.0)
    transverse = ((np.abs(u - 0.12 * h) < 0.16 * h + 1.5) & (aw > pedicle_w)
                  & (aw < pedicle_w + shape.process_length) & (np.abs(v - transverse_v) < 4.5))
    facet_v = vc + half_cd - 1.0
    superior = (((aw - pedicle_w - 2.0) ** 2 + (v - facet_v) ** 2 < 3.5 ** 2)
                & (u > 0.2 * h) & (u < h / 2 + 0.55 * size.disc_below))
    inferior = (((aw - pedicle_w + 3.5) ** 2 + (v - facet_v - 3.0) ** 2 < 3.0 ** 2)
                & (u < -0.2 * h) & (u > -h / 2 - 0.55 * size.disc_below))
    return pedicles | laminae | spinous | transverse | superior | inferior


def disc_mask(upper: LevelSize, lower: LevelSize, u_from_lower: np.ndarray, v: np.ndarray,
              w: np.ndarray) -> np.ndarray:
    """The intervertebral disc between two bodies, in the frame of the lower body (slightly bulging)."""
    mean = LevelSize(*((a + b) / 2 for a, b in zip(
        (upper.height, upper.depth, upper.width, upper.disc_below, upper.canal_width, upper.canal_depth,
         upper.spinous_length),
        (lower.height, lower.depth, lower.width, lower.disc_below, lower.canal_width, lower.canal_depth,
         lower.spinous_length))))
    radius = cross_section_radius(mean, np.full(1, mean.height / 2), v, w)
    return ((radius < 1.03) & (v < posterior_wall(mean, w) + 0.5)
            & (u_from_lower > lower.height / 2 - 2.0)
            & (u_from_lower < lower.height / 2 + upper.disc_below + 2.0))
