"""Synthetic T2-weighted sagittal spine images for the MR research tests.

The same anatomy each time (soft tissue, a column of vertebral bodies with
textured marrow), seen through a different coil: a smooth multiplicative bias
field and an overall intensity scale that vary per case, as they do between
MR scanners and patients. The ROI is one vertebral body on the middle slice
(2D, as a reader draws it), with label value :data:`ROI_LABEL`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROI_LABEL = 3
SHAPE = (9, 128, 96)  # sagittal slices, superior-inferior, anterior-posterior
SPACING_XYZ = (1.0, 1.0, 4.0)


def t2_case(seed: int, *, marrow: float = 200.0) -> tuple[sitk.Image, sitk.Image]:
    """(image, ROI label image) of one case."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = SHAPE
    z, y, x = np.mgrid[0:nz, 0:ny, 0:nx].astype(float)
    image = np.abs(rng.normal(0, 4.0, SHAPE))  # background: magnitude noise
    body = ((y - ny / 2) / (0.48 * ny)) ** 2 + ((x - nx / 2) / (0.45 * nx)) ** 2 <= 1
    image[body] = 120 + rng.normal(0, 6, int(body.sum()))
    labels = np.zeros(SHAPE, dtype=np.uint8)
    for k, top in enumerate(range(10, ny - 20, 28)):
        vertebra = (y >= top) & (y < top + 22) & (x >= 30) & (x < 58) & (np.abs(z - nz // 2) <= 3)
        texture = 25 * np.sin(y / 2.0 + k) * np.cos(x / 3.0) + rng.normal(0, 10, SHAPE)
        image[vertebra] = (marrow + texture)[vertebra]
        if k == 2:
            labels[nz // 2][vertebra[nz // 2]] = ROI_LABEL
    a, b, c = rng.uniform(-0.5, 0.5, 3)
    bias = np.exp(a * (y - ny / 2) / ny + b * (x - nx / 2) / nx + c * ((y - ny / 2) / ny) ** 2 * 4)
    scale = float(np.exp(rng.uniform(np.log(0.4), np.log(2.5))))
    return _image(image * bias * scale, np.float32), _image(labels, np.uint8)


def write_cohort(folder: Path, n: int, *, seed: int = 0) -> Path:
    """``n`` cases as NIfTI files and a cohort CSV (half of them with brighter marrow, label 1)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["study_id,image,mask,label"]
    for i in range(n):
        label = i % 2
        image, roi = t2_case(seed + i, marrow=200.0 + 60.0 * label)
        sitk.WriteImage(image, str(folder / f"mr{i}.nii.gz"))
        sitk.WriteImage(roi, str(folder / f"mr{i}_roi.nii.gz"))
        lines.append(f"MR{i},mr{i}.nii.gz,mr{i}_roi.nii.gz,{label}")
    path = folder / "cohort.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _image(array: np.ndarray, dtype: type) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(dtype))
    image.SetSpacing(SPACING_XYZ)
    return image
