"""Scoliosis: bending a generated study into a coronal curve.

A straight phantom is bent about its spine: every axial slice is shifted
sideways by the curve's offset at that height, and the neighbourhood of the
curve is turned by the curve's local angle (first order), so that vertebral
endplates tilt with the curve as they do in a scoliotic spine, and the trunk,
ribs and organs follow. The curve is one smooth arc over the thoracolumbar
spine (a single thoracolumbar curve, apex at :data:`APEX`), convex to the
patient's left; its Cobb angle is the angle between the end vertebrae's
endplates, twice the steepest angle of the arc.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from inference.phantom.anatomy import SpineAxis
from inference.phantom.grid import Grid

APEX = "L1"
UPPER_END, LOWER_END = "T7", "L4"
"""Apex and end vertebrae of the curve."""


def lateral_curve(axis: SpineAxis, cobb_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """(z knots, lateral offset in mm) of a thoracolumbar curve of ``cobb_deg`` (0 beyond its ends).

    The arc is half a sine wave between the end vertebrae: its steepest slope,
    at the ends, is tan(Cobb / 2).
    """
    z_top = float(axis.z_of_s(axis.level(UPPER_END).s))
    z_bottom = float(axis.z_of_s(axis.level(LOWER_END).s))
    length = z_top - z_bottom
    amplitude = length / np.pi * np.tan(np.deg2rad(cobb_deg) / 2.0)
    z = np.linspace(z_bottom - 200.0, z_top + 200.0, 2000)
    t = np.clip((z - z_bottom) / length, 0.0, 1.0)
    return z, amplitude * np.sin(np.pi * t)


def bend(arrays: list[np.ndarray], orders: list[int], grid: Grid, axis: SpineAxis, cobb_deg: float) -> list[np.ndarray]:
    """The (z, y, x) ``arrays`` on ``grid`` bent into the curve (interpolation order per array:
    1 for attenuation, 0 for labels)."""
    if cobb_deg <= 0:
        return arrays
    z_knots, offset = lateral_curve(axis, cobb_deg)
    slope = np.gradient(offset, z_knots)
    zz = grid.z[:, None]
    shift = np.interp(grid.z, z_knots, offset)[:, None]
    angle = np.arctan(np.interp(grid.z, z_knots, slope))[:, None]
    dx = grid.x[None, :] - shift  # lateral distance from the curve, per slice (z, x)
    # output (z, x) samples the straight study at (z + dx sin a, shift-free x = dx cos a)
    source_z = zz + dx * np.sin(angle)
    source_x = dx * np.cos(angle)
    dz, dxv = grid.spacing_xyz[2], grid.spacing_xyz[0]
    iz = (source_z - grid.z[0]) / dz
    ix = (source_x - grid.x[0]) / dxv
    ny = len(grid.y)
    out = []
    for array, order in zip(arrays, orders, strict=True):
        bent = np.empty_like(array)
        for k in range(ny):  # one coronal plane at a time keeps the coordinate arrays small
            bent[:, k, :] = ndimage.map_coordinates(array[:, k, :], [iz, ix], order=order, mode="nearest")
        out.append(bent)
    return out
