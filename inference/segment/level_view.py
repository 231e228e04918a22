"""The picture a person checks the vertebral levels on: every labelled vertebra in view.

Two panels share one vertical axis, head up, at the same scale (mm per pixel):

- a sagittal slab through the vertebral bodies (maximum intensity over a few
  millimetres, bone window) with each labelled vertebra tinted and named, the
  view a radiologist counts levels on;
- a coronal slab through the back of the bodies, the pedicles and the rib
  heads (maximum intensity, following the spine's curve), where the rib pairs
  and the lowest rib show, and with them T12.

Each pixel row maps linearly to the patient's superior coordinate (LPS z), so a
click on the picture names a height in the patient (:meth:`LevelView.z_at_row`)
and with it the vertebra there. Drawn with numpy and Pillow: the mapping from
rows to millimetres must be exact, which a plotting library's margins obscure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image, ImageDraw, ImageFont

from inference.levels import LEVEL_NAMES, TARGET_LEVELS
from inference.results import SegmentationResult

BONE_WINDOW = (-250.0, 1250.0)
"""(lowest, highest) HU shown."""
TARGET_HEIGHT_PX = 760
"""Height of the panels; the scale follows from the height of the field of view."""
SAGITTAL_HALF_SLAB_MM = 4.0
CORONAL_SLAB_MM = (-10.0, 60.0)
"""The coronal slab, from this far in front of the bodies' centre to this far behind it."""
SAGITTAL_MARGIN_MM = (60.0, 100.0)
"""Sagittal field shown in front of and behind the labelled vertebrae."""
CORONAL_HALF_WIDTH_MM = 150.0
"""Coronal field shown to either side of the spine: the ribs' posterior arcs."""
GAP_PX = 12
HEADER_PX = 28
PALETTE = ((230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (204, 121, 167), (213, 94, 0))
"""Okabe-Ito colours, told apart with the common colour-vision deficiencies."""
TINT = 0.35


@dataclass(frozen=True)
class LevelView:
    """The picture and how its rows map to the patient."""

    pixels: np.ndarray
    """RGB, (rows, columns, 3), uint8."""
    z_top_mm: float
    """Patient superior coordinate (LPS z, mm) of the centre of the first panel row."""
    mm_per_pixel: float
    top_row: int
    """The first row of the panels (rows above hold the titles)."""
    level_z_mm: dict[str, float]
    """Level name -> superior coordinate of its body's centroid."""

    def z_at_row(self, row: float) -> float:
        """The patient's superior coordinate (mm) shown at pixel row ``row``."""
        return self.z_top_mm - (row - self.top_row) * self.mm_per_pixel

    def level_at_row(self, row: float) -> str | None:
        """The labelled vertebra whose centre is nearest to row ``row`` (None where none is labelled)."""
        if not self.level_z_mm:
            return None
        z = self.z_at_row(row)
        return min(self.level_z_mm, key=lambda name: abs(self.level_z_mm[name] - z))

    def save(self, png: Path) -> None:
        """Write the picture to ``png`` and its row mapping next to it (same name, ``.json``)."""
        partial = png.with_suffix(".partial.png")
        Image.fromarray(self.pixels).save(partial)
        partial.replace(png)
        mapping = png.with_suffix(".json")
        mapping.with_suffix(".partial").write_text(json.dumps({
            "z_top_mm": self.z_top_mm, "mm_per_pixel": self.mm_per_pixel, "top_row": self.top_row,
            "width": int(self.pixels.shape[1]), "height": int(self.pixels.shape[0]),
            "level_z_mm": self.level_z_mm,
        }, indent=2))
        mapping.with_suffix(".partial").replace(mapping)

    @classmethod
    def load_mapping(cls, png: Path) -> "LevelView":
        """The row mapping saved with ``png`` (pixels left empty: the web UI serves the file itself).

        Raises:
            OSError, ValueError, KeyError: no readable mapping next to ``png``.
        """
        document = json.loads(png.with_suffix(".json").read_text())
        return cls(pixels=np.zeros((int(document["height"]), int(document["width"]), 3), dtype=np.uint8),
                   z_top_mm=float(document["z_top_mm"]), mm_per_pixel=float(document["mm_per_pixel"]),
                   top_row=int(document["top_row"]),
                   level_z_mm={str(k): float(v) for k, v in document["level_z_mm"].items()})


def render_level_view(image: sitk.Image, segmentation: SegmentationResult) -> LevelView:
    """Render the sagittal and coronal slabs of ``image`` with the labels of ``segmentation``.

    Raises:
        ValueError: the segmentation labels no vertebra.
    """
    oriented = sitk.DICOMOrient(image, "LPS")
    ct = sitk.GetArrayFromImage(oriented)  # (z: inferior -> superior, y: anterior -> posterior, x: right -> left)
    labels = sitk.GetArrayFromImage(sitk.DICOMOrient(segmentation.vertebrae, "LPS"))
    bodies = sitk.GetArrayFromImage(sitk.DICOMOrient(segmentation.bodies, "LPS"))
    if not labels.any():
        raise ValueError("no labelled vertebra to show")
    sx, sy, sz = oriented.GetSpacing()
    scale = max(ct.shape[0] * sz / TARGET_HEIGHT_PX, 0.4)
    height = int(round(ct.shape[0] * sz / scale))

    centre_y = _body_centre_per_slice(bodies if bodies.any() else labels)
    sagittal, sagittal_labels = _sagittal(ct, labels, sx, sy)
    coronal, coronal_labels = _coronal(ct, labels, centre_y, sy)
    x_centre = int(np.median(np.nonzero(labels)[2]))
    half_width = int(CORONAL_HALF_WIDTH_MM / sx)
    columns = slice(max(x_centre - half_width, 0), min(x_centre + half_width + 1, ct.shape[2]))
    coronal, coronal_labels = coronal[:, columns], coronal_labels[:, columns]
    panels = [
        ("Sagittal", _tinted(sagittal, sagittal_labels), sy),
        ("Coronal, rib heads (patient's right on the left)", _tinted(coronal, coronal_labels), sx),
    ]
    rendered = []
    for title, rgb, column_mm in panels:
        size = (max(int(round(rgb.shape[1] * column_mm / scale)), 1), height)
        rendered.append((title, np.asarray(Image.fromarray(rgb[::-1]).resize(size, Image.BILINEAR))))
    total_width = sum(panel.shape[1] for _, panel in rendered) + GAP_PX * (len(rendered) - 1)
    canvas = Image.new("RGB", (total_width, height + HEADER_PX), "black")
    draw = ImageDraw.Draw(canvas)
    title_font, label_font = ImageFont.load_default(size=16), ImageFont.load_default(size=15)
    origin = oriented.GetOrigin()[2]
    z_top = origin + (ct.shape[0] - 1) * sz
    level_z = {level.name: float(level.centroid_lps[2]) for level in segmentation.levels.values()}
    x = 0
    for title, panel in rendered:
        canvas.paste(Image.fromarray(panel), (x, HEADER_PX))
        draw.text((x + 6, 5), title, fill="white", font=title_font)
        for name, z in level_z.items():
            row = HEADER_PX + (z_top - z) / scale
            colour = "yellow" if name in TARGET_LEVELS else "white"
            draw.text((x + 6, row), name, fill=colour, font=label_font, anchor="lm", stroke_width=2,
                      stroke_fill="black")
        x += panel.shape[1] + GAP_PX
    return LevelView(pixels=np.asarray(canvas), z_top_mm=float(z_top), mm_per_pixel=float(scale),
                     top_row=HEADER_PX, level_z_mm=level_z)


def _body_centre_per_slice(labels: np.ndarray) -> np.ndarray:
    """Per axial slice, the anterior-posterior index of the labelled bone's centre, interpolated between."""
    rows = np.arange(labels.shape[0])
    present = labels.any(axis=(1, 2))
    centres = np.array([np.median(np.nonzero(labels[k])[0]) if present[k] else np.nan for k in rows])
    known = ~np.isnan(centres)
    return np.interp(rows, rows[known], centres[known])


def _sagittal(ct: np.ndarray, labels: np.ndarray, sx: float, sy: float) -> tuple[np.ndarray, np.ndarray]:
    """Slab MIP through the labelled vertebrae's middle (x), cropped around them in y."""
    xs = np.nonzero(labels.any(axis=(0, 1)))[0]
    x_centre = int(np.median(np.nonzero(labels)[2])) if xs.size else ct.shape[2] // 2
    half = max(int(round(SAGITTAL_HALF_SLAB_MM / sx)), 0)
    slab = slice(max(x_centre - half, 0), min(x_centre + half + 1, ct.shape[2]))
    ys = np.nonzero(labels.any(axis=(0, 2)))[0]
    y0 = max(int(ys.min() - SAGITTAL_MARGIN_MM[0] / sy), 0)
    y1 = min(int(ys.max() + SAGITTAL_MARGIN_MM[1] / sy) + 1, ct.shape[1])
    y_range = slice(y0, y1)
    plane = ct[:, y_range, slab].max(axis=2)
    # Labels over a wider slab: a scoliotic spine leaves the plane, its names should not.
    wide = slice(max(x_centre - 4 * half, 0), min(x_centre + 4 * half + 1, ct.shape[2]))
    return plane, labels[:, y_range, wide].max(axis=2)


def _coronal(ct: np.ndarray, labels: np.ndarray, centre_y: np.ndarray, sy: float) -> tuple[np.ndarray, np.ndarray]:
    """Slab MIP from just in front of the bodies' centre to behind the rib heads, following the curve."""
    front, back = (int(round(mm / sy)) for mm in CORONAL_SLAB_MM)
    plane = np.empty((ct.shape[0], ct.shape[2]), dtype=ct.dtype)
    plane_labels = np.zeros((ct.shape[0], ct.shape[2]), dtype=labels.dtype)
    for k in range(ct.shape[0]):
        centre = int(round(centre_y[k]))
        slab = slice(max(centre + front, 0), min(centre + back + 1, ct.shape[1]))
        if slab.start >= slab.stop:
            slab = slice(0, ct.shape[1])
        plane[k] = ct[k, slab].max(axis=0)
        plane_labels[k] = labels[k, slab].max(axis=0)
    # Columns run from the patient's right to left (LPS x): the patient's right shows on the left,
    # as a radiologist looks at a coronal view.
    return plane, plane_labels


def _tinted(plane: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The plane in the bone window, grey, with each labelled vertebra tinted in its palette colour."""
    low, high = BONE_WINDOW
    grey = np.clip((plane.astype(np.float32) - low) / (high - low), 0.0, 1.0) * 255.0
    rgb = np.repeat(grey[..., None], 3, axis=2)
    for value in np.unique(labels):
        if value == 0 or int(value) not in LEVEL_NAMES:
            continue
        colour = np.array(PALETTE[int(value) % len(PALETTE)], dtype=np.float32)
        mask = labels == value
        rgb[mask] = (1 - TINT) * rgb[mask] + TINT * colour
    return rgb.astype(np.uint8)

