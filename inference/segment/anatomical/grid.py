"""Grids of the anatomical backend: canonical orientation and the coarse working resolution.

The backend reasons in a canonical LPS-oriented array (index z runs inferior ->
superior, y anterior -> posterior, x right -> left), reached from any input
orientation by an exact permutation/flip of axes (``sitk.DICOMOrient``; no
interpolation), and detects the spine on a coarser *working* grid because the
anatomy it looks for (bodies, discs, canal, ribs) is several millimetres large.
Final masks are refined on the canonical grid and returned on the input grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

CANONICAL_ORIENTATION = "LPS"

WORKING_SPACING_MM = 2.0
"""Coarsest in-plane and through-plane spacing the detection stage works at."""


@dataclass
class CanonicalGrid:
    """An input image, its canonical (LPS) copy and the way back."""

    input_image: sitk.Image
    canonical: sitk.Image
    input_orientation: str

    @classmethod
    def of(cls, image: sitk.Image) -> CanonicalGrid:
        orientation = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())
        return cls(image, sitk.DICOMOrient(image, CANONICAL_ORIENTATION), orientation)

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        return tuple(reversed(self.canonical.GetSpacing()))  # type: ignore[return-value]

    def to_input(self, labels: np.ndarray) -> sitk.Image:
        """A canonical-grid label array (z, y, x) as a ``sitkUInt8`` image on the input grid."""
        canonical_labels = sitk.GetImageFromArray(labels.astype(np.uint8))
        canonical_labels.CopyInformation(self.canonical)
        result = sitk.DICOMOrient(canonical_labels, self.input_orientation)
        if result.GetSize() != self.input_image.GetSize():
            raise RuntimeError("reorientation back to the input grid changed the image size")
        result.CopyInformation(self.input_image)  # removes round-off in origin/direction
        return result


def working_image(canonical: sitk.Image, spacing_mm: float = WORKING_SPACING_MM) -> sitk.Image:
    """Resample ``canonical`` so that no spacing is finer than ``spacing_mm`` (linear interpolation)."""
    old_spacing = np.asarray(canonical.GetSpacing())
    new_spacing = np.maximum(old_spacing, spacing_mm)
    if np.allclose(new_spacing, old_spacing):
        return canonical
    new_size = np.maximum(np.round(np.asarray(canonical.GetSize()) * old_spacing / new_spacing), 1).astype(int)
    # Anti-aliasing before decimation: block averaging over whole voxels (BinShrink is
    # a single pass, far cheaper than a Gaussian on a 512 x 512 x 300 study).
    factors = [max(1, int(n // o)) for n, o in zip(new_spacing, old_spacing, strict=True)]
    smoothed = sitk.BinShrink(canonical, factors) if max(factors) > 1 else canonical
    # Align the first voxel corners of both grids so physical extents match.
    origin = np.asarray(canonical.TransformContinuousIndexToPhysicalPoint(
        tuple(0.5 * (n / o) - 0.5 for n, o in zip(new_spacing, old_spacing, strict=True))))
    return sitk.Resample(
        smoothed, [int(s) for s in new_size], sitk.Transform(), sitk.sitkLinear,
        tuple(origin), tuple(float(s) for s in new_spacing), canonical.GetDirection(), -1024.0, sitk.sitkFloat32,
    )


def labels_to_grid(labels: np.ndarray, source: sitk.Image, target: sitk.Image) -> np.ndarray:
    """Nearest-neighbour resampling of a label array on ``source``'s grid onto ``target``'s grid."""
    label_image = sitk.GetImageFromArray(labels.astype(np.uint8))
    label_image.CopyInformation(source)
    return sitk.GetArrayFromImage(sitk.Resample(label_image, target, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
