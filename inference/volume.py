"""Loading CT volumes: a DICOM series folder or a NIfTI file -> SimpleITK image.

Images in memory are SimpleITK images in LPS physical space with intensities
in Hounsfield units (DESIGN.md contract). SimpleITK does the reading (GDCM for
DICOM, including JPEG 2000/JPEG-LS/RLE; ITK's NIfTI IO applies the qform/sform
and converts RAS to LPS); this module adds the checks a clinical input needs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

MIN_SLICES = 3
"""Fewer slices than this is not a volume anyone can measure a vertebra in."""


class VolumeError(ValueError):
    """An input that cannot be used as a CT volume; the message says why."""


def load_volume(path: str | Path, series_uid: str | None = None, *, modality: str = "CT") -> sitk.Image:
    """Load a CT volume (or, for research extraction, an image of another modality) from a DICOM
    series folder or a NIfTI file.

    Args:
        path: a folder holding one DICOM series (or several: pass
            ``series_uid``, otherwise the series with most slices is used),
            or a ``.nii``/``.nii.gz`` file in HU.
        series_uid: Series Instance UID to pick in a folder with several series.
        modality: ``CT`` (intensities checked to be HU) or another modality
            (``MR``: intensities have no absolute scale and are not checked).

    Returns:
        A 3D ``sitkFloat32`` image (in HU for CT), LPS physical space.

    Raises:
        VolumeError: the path does not exist, holds no readable volume, or the
            volume fails :func:`check_volume`.
    """
    path = Path(path)
    if not path.exists():
        raise VolumeError(f"input not found: {path}")
    if path.is_dir():
        image = _read_dicom_series(path, series_uid)
    elif path.name.endswith((".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")):
        image = _read_image_file(path)
    else:
        raise VolumeError(f"{path}: expected a DICOM series folder or a NIfTI file (.nii/.nii.gz)")
    image = sitk.Cast(image, sitk.sitkFloat32)
    check_volume(image, source=str(path), modality=modality)
    return image


def _read_image_file(path: Path) -> sitk.Image:
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:  # ITK reports broken affines, truncation, etc. this way
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise VolumeError(f"{path}: cannot read image ({reason})") from None


def _read_dicom_series(folder: Path, series_uid: str | None) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    series_ids = list(reader.GetGDCMSeriesIDs(str(folder)))
    if not series_ids:
        raise VolumeError(f"{folder}: no DICOM image series found")
    if series_uid is not None:
        if series_uid not in series_ids:
            raise VolumeError(f"{folder}: series {series_uid} not found")
        chosen = series_uid
    else:
        chosen = max(series_ids, key=lambda uid: len(reader.GetGDCMSeriesFileNames(str(folder), uid)))
    files = reader.GetGDCMSeriesFileNames(str(folder), chosen)
    if len(files) < MIN_SLICES:
        raise VolumeError(f"{folder}: series has {len(files)} slice(s); at least {MIN_SLICES} are needed")
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError as exc:
        raise VolumeError(f"{folder}: cannot read DICOM series ({str(exc).strip().splitlines()[-1]})") from None


def check_volume(image: sitk.Image, source: str = "volume", *, modality: str = "CT") -> None:
    """Check that an image is a usable volume: for CT, in HU.

    Raises:
        VolumeError: not 3D, too few slices, degenerate spacing or direction,
            empty, or (CT) intensities that are not Hounsfield units.
    """
    if image.GetDimension() != 3:
        raise VolumeError(f"{source}: expected a 3D volume, got {image.GetDimension()}D")
    size = image.GetSize()
    if min(size) < MIN_SLICES:
        raise VolumeError(f"{source}: volume of size {size} is too small (fewer than {MIN_SLICES} slices)")
    spacing = np.asarray(image.GetSpacing())
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0) or np.any(spacing > 20):
        raise VolumeError(f"{source}: implausible voxel spacing {tuple(spacing)} mm")
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    if not np.all(np.isfinite(direction)) or not np.allclose(direction @ direction.T, np.eye(3), atol=1e-3):
        raise VolumeError(f"{source}: orientation matrix is not orthonormal (broken affine)")
    if not np.all(np.isfinite(image.GetOrigin())):
        raise VolumeError(f"{source}: origin is not finite (broken affine)")
    array = sitk.GetArrayViewFromImage(image)
    low, high = float(array.min()), float(array.max())
    if high - low < 1:
        raise VolumeError(f"{source}: volume is empty (all voxels {low:g})")
    if modality == "CT" and (low < -3000 or high > 40000 or high < 300):
        raise VolumeError(
            f"{source}: intensities {low:g}..{high:g} do not look like CT in HU "
            "(expected air near -1000 and bone above 300)"
        )
