"""The voxel grid of a phantom: axial slices, identity direction, LPS millimetres."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk


@dataclass(frozen=True)
class Grid:
    """Voxel centres along each LPS axis (mm); arrays are indexed (z, y, x) like SimpleITK's numpy view."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray

    @classmethod
    def centred(cls, shape_xyz: tuple[int, int, int], spacing_xyz: tuple[float, float, float]) -> Grid:
        """A grid centred on the origin of LPS space, slices ascending from feet to head."""
        axes = [(np.arange(n) - (n - 1) / 2.0) * d for n, d in zip(shape_xyz, spacing_xyz)]
        return cls(*(a.astype(np.float64) for a in axes))

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return (len(self.z), len(self.y), len(self.x))

    @property
    def spacing_xyz(self) -> tuple[float, float, float]:
        return tuple(float(a[1] - a[0]) if len(a) > 1 else 1.0 for a in (self.x, self.y, self.z))

    def to_image(self, array: np.ndarray) -> sitk.Image:
        """Wrap a (z, y, x) array as a SimpleITK image on this grid."""
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(self.spacing_xyz)
        image.SetOrigin((float(self.x[0]), float(self.y[0]), float(self.z[0])))
        return image
