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

from collections.abc import Callable
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


def measurement_points(size: LevelSize) -> dict[str, float]:
    """Where morphometry measures heights in the mid-sagittal plane: ``v`` of the anterior,
    middle and posterior heights, 10 % of the depth inside the anterior and posterior walls."""
    posterior = float(posterior_wall(size, np.zeros(1))[0]) - 0.1 * size.depth
    return {"anterior": -size.depth / 2 + 0.1 * size.depth, "middle": 0.0, "posterior": posterior}


BICONCAVE_RADIUS = 0.7
"""A biconcave fracture depresses the endplates inside this normalised radius (the rim holds)."""


def half_height(size: LevelSize, v: np.ndarray, radius: np.ndarray, fracture: Fracture | None) -> np.ndarray:
    """Distance from the body centre to each endplate before endplate concavity, per (v, radius).

    Fractures are shaped so that the heights measured at :func:`measurement_points`
    show exactly the Genant reduction of their grade.
    """
    half = size.height / 2
    shape = np.broadcast(v, radius).shape
    if fracture is None:
        return np.full(shape, half, dtype=np.float32)
    loss = fracture.loss
    if fracture.kind == "wedge":
        points = measurement_points(size)
        along = (points["posterior"] - v) / (points["posterior"] - points["anterior"])
        factor = 1.0 - loss * np.clip(along, 0.0, 1.15)
    elif fracture.kind == "biconcave":
        factor = 1.0 - loss * np.clip(1.0 - (radius / BICONCAVE_RADIUS) ** 2, 0.0, 1.0)
    else:  # crush: the whole body loses height
        factor = np.full(shape, 1.0 - loss)
    return np.broadcast_to(half * factor, shape).astype(np.float32)


def endplates(size: LevelSize, v: np.ndarray, radius: np.ndarray,
              fracture: Fracture | None) -> tuple[np.ndarray, np.ndarray]:
    """Inferior and superior endplate positions ``u`` (mm) over the cross-section.

    Normal endplates are gently concave (about 1 mm); a biconcave fracture
    replaces that concavity with its own.
    """
    concavity = 0.0 if fracture is not None and fracture.kind == "biconcave" else (
        ENDPLATE_CONCAVITY_MM * np.clip(1.0 - radius ** 2, 0.0, 1.0))
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
    """Anterior, middle and posterior body heights (mm) at :func:`measurement_points`."""
    heights = {}
    for name, v_mm in measurement_points(size).items():
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


Mask = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Part:
    """A piece of a vertebra: a box in the local frame (u, v ranges, w half-width) and its mask there."""

    u_range: tuple[float, float]
    v_range: tuple[float, float]
    w_half: float
    mask: Mask


def arch_parts(name: str, size: LevelSize, shape: PosteriorShape) -> list[Part]:
    """The neural arch: pedicles with laminae and articular processes, spinous process, transverse processes.

    Each part comes with its own small box so that only voxels near it are evaluated.
    """
    h, vc = size.height, shape.canal_centre
    half_cw, half_cd, pw = size.canal_width / 2, size.canal_depth / 2, shape.pedicle_width
    pedicle_w = half_cw + pw / 2
    reach_u = h / 2 + 0.6 * size.disc_below

    def ring(u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        aw = np.abs(w)
        pedicles = ((((aw - pedicle_w) / (pw / 2)) ** 2 + ((u - 0.12 * h) / (0.3 * h)) ** 2 < 1.0)
                    & (v > size.depth / 2 - 0.2 * size.depth) & (v < vc + 0.3 * size.canal_depth))
        laminae = (((w / (half_cw + 6.0)) ** 2 + ((v - vc) / (half_cd + 6.0)) ** 2 < 1.0) & (v > vc - 2.0)
                   & (u > -0.5 * h - 0.3 * size.disc_below) & (u < 0.3 * h))
        facet_v = vc + half_cd - 1.0
        superior = (((aw - pedicle_w - 2.0) ** 2 + (v - facet_v) ** 2 < 3.5 ** 2)
                    & (u > 0.2 * h) & (u < h / 2 + 0.55 * size.disc_below))
        inferior = (((aw - pedicle_w + 3.5) ** 2 + (v - facet_v - 3.0) ** 2 < 3.0 ** 2)
                    & (u < -0.2 * h) & (u > -h / 2 - 0.55 * size.disc_below))
        return (pedicles | laminae | superior | inferior) & ~canal_mask(size, shape, v, w)

    spinous_top = -0.1 * h + 0.22 * h
    spinous_drop = shape.spinous_slope * size.spinous_length

    def spinous(u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        centre = -0.1 * h - (v - vc - half_cd) * shape.spinous_slope
        return (v > vc + half_cd) & (v < vc + half_cd + size.spinous_length) & (np.abs(u - centre) < 0.22 * h)

    thoracic = name.startswith("T")

    def transverse(u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        aw = np.abs(w)
        centre_v = vc + (3.0 + 0.3 * (aw - pedicle_w) if thoracic else -2.0)
        return (np.abs(u - 0.12 * h) < 0.16 * h + 1.5) & (aw > pedicle_w) & (np.abs(v - centre_v) < 4.5)

    process_end = pedicle_w + shape.process_length
    process_v = (vc - 7.0, vc + 8.0 + 0.3 * shape.process_length) if thoracic else (vc - 7.0, vc + 3.0)
    return [
        Part((-reach_u, reach_u), (size.depth / 2 - 0.2 * size.depth, vc + half_cd + 6.0), pedicle_w + pw / 2 + 1.0,
             ring),
        Part((spinous_top - 0.44 * h - spinous_drop, spinous_top), (vc + half_cd, vc + half_cd + size.spinous_length),
             3.0 + 0.04 * size.width, spinous),
        Part((-0.04 * h - 1.5, 0.28 * h + 1.5), process_v, process_end, transverse),
    ]


def body_part(size: LevelSize, fracture: Fracture | None, shrink_mm: float = 0.0) -> Part:
    """The vertebral body (optionally shrunk inwards by ``shrink_mm``) as a :class:`Part`."""
    margin = 0.5
    return Part((-size.height / 2 - margin, size.height / 2 + margin), (-size.depth / 2 - margin, size.depth / 2 + margin),
                size.width / 2 + margin, lambda u, v, w: body_mask(size, u, v, w, fracture, shrink_mm))


def canal_part(size: LevelSize, shape: PosteriorShape) -> Part:
    """The spinal canal from the disc below up to the superior endplate."""
    def mask(u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        return (u > -size.height / 2 - size.disc_below) & (u <= size.height / 2) & canal_mask(size, shape, v, w)

    return Part((-size.height / 2 - size.disc_below, size.height / 2),
                (shape.canal_centre - size.canal_depth / 2, shape.canal_centre + size.canal_depth / 2),
                size.canal_width / 2, mask)


def disc_part(upper: LevelSize, lower: LevelSize) -> Part:
    """The disc between two bodies, in the frame of the lower body."""
    depth, width = max(upper.depth, lower.depth), max(upper.width, lower.width)
    return Part((lower.height / 2 - 2.0, lower.height / 2 + upper.disc_below + 2.0), (-depth / 2 - 1, depth / 2 + 1),
                width / 2 + 1, lambda u, v, w: disc_mask(upper, lower, u, v, w))


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
