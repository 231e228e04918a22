"""Match a SimpleITK image grid to the CT instances it was read from.

The pipeline's images (:class:`inference.results.SegmentationResult`) are on
the source series grid, but the source instances arrive in any order. Each
instance is placed on the grid by its Image Position (Patient) (PS3.3
C.7.6.2.1.1): the continuous grid index of that point must be a whole slice
index with zero in-plane offset, and the image orientation must match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset

from dicom_sr.errors import EncodeError

REQUIRED_ATTRIBUTES = (
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns",
)
"""Attributes of a source instance that the SEG, SR and report derive from (Type 1 in the CT Image IOD)."""

POSITION_TOLERANCE_VOXELS = 0.05
"""How far (in voxels) an instance may lie from a grid slice and still match it."""

ORIENTATION_TOLERANCE = 1e-3
"""Largest difference between direction cosines treated as the same orientation."""


@dataclass(frozen=True)
class SliceMap:
    """Source instances in grid order.

    Attributes:
        instances: one dataset per grid slice, ``instances[k]`` lies on slice ``k``.
    """

    instances: tuple[Dataset, ...]


def map_slices(image: sitk.Image, source_images: Sequence[Dataset]) -> SliceMap:
    """Put each source instance on the slice of ``image`` it was read into.

    Raises:
        EncodeError: the instances do not form ``image``'s grid (other size,
            orientation, position; a slice missing or present twice).
    """
    if not source_images:
        raise EncodeError("no source images given")
    size = image.GetSize()
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    by_slice: dict[int, Dataset] = {}
    for ds in source_images:
        _check_attributes(ds)
        uid = ds.SOPInstanceUID
        if (int(ds.Columns), int(ds.Rows)) != (size[0], size[1]):
            raise EncodeError(
                f"source instance {uid} is {ds.Columns}x{ds.Rows}, the segmentation grid {size[0]}x{size[1]}"
            )
        orientation = np.asarray(ds.ImageOrientationPatient, dtype=float)
        if not (np.allclose(orientation[:3], direction[:, 0], atol=ORIENTATION_TOLERANCE)
                and np.allclose(orientation[3:], direction[:, 1], atol=ORIENTATION_TOLERANCE)):
            raise EncodeError(f"source instance {uid} has another orientation than the segmentation grid")
        index = np.asarray(image.TransformPhysicalPointToContinuousIndex(
            [float(v) for v in ds.ImagePositionPatient]))
        k = int(round(index[2]))
        if np.abs(index[:2]).max() > POSITION_TOLERANCE_VOXELS or abs(index[2] - k) > POSITION_TOLERANCE_VOXELS:
            raise EncodeError(f"source instance {uid} does not lie on a slice of the segmentation grid")
        if not 0 <= k < size[2]:
            raise EncodeError(f"source instance {uid} lies outside the segmentation grid (slice {k})")
        if k in by_slice:
            raise EncodeError(f"source instances {by_slice[k].SOPInstanceUID} and {uid} share slice {k}")
        by_slice[k] = ds
    missing = [k for k in range(size[2]) if k not in by_slice]
    if missing:
        raise EncodeError(f"{len(missing)} of {size[2]} grid slices have no source instance (first: {missing[0]})")
    return SliceMap(instances=tuple(by_slice[k] for k in range(size[2])))


def _check_attributes(ds: Dataset) -> None:
    missing = [keyword for keyword in REQUIRED_ATTRIBUTES if ds.get(keyword) in (None, "", [])]
    if missing:
        meta = getattr(ds, "file_meta", None) or Dataset()
        where = ds.get("SOPInstanceUID") or meta.get("MediaStorageSOPInstanceUID") or "?"
        raise EncodeError(f"source instance {where} lacks {', '.join(missing)} (missing or empty)")
