"""Phantomless (internal) calibration: HU -> estimated vBMD from reference tissues in the same scan.

Quantitative CT converts trabecular attenuation to bone mineral density with
a calibration line HU = intercept + slope x density (K2HPO4 equivalent,
mg/cm3). Without a phantom scanned with the patient, the line is fitted to
tissues of known composition found in the scan itself (internal or
"asynchronous" calibration; Boden et al., Radiology 1989;173:857-861;
Mueller et al., Eur J Radiol 2011;79:375-381; Brown et al., J Clin Densitom
2017;20:216-225):

- air outside the body: -1000 HU by definition of the Hounsfield scale;
- subcutaneous fat: about -100 HU at 120 kVp (adipose window -190..-30 HU;
  Kvist et al., Am J Clin Nutr 1988;48:1351-1361);
- paraspinal skeletal muscle: about +50 HU (muscle window -29..150 HU;
  Mitsiopoulos et al., J Appl Physiol 1998;85:115-122).

Each reference's K2HPO4-equivalent density is its nominal HU times
:data:`MG_CM3_PER_HU`, the water-intercept calibration slope of K2HPO4 at
120 kVp (about 0.8 mg/cm3 per HU; Brown et al. 2017). Fitting measured
against nominal corrects the scanner's own offset and gain (and part of the
beam hardening near the spine, through the paraspinal muscle).

The result is an **estimate**: it is not a calibrated QCT measurement, and it
is reported as "estimated vBMD" with the reference values it used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

MG_CM3_PER_HU = 0.8
"""K2HPO4-equivalent density per HU of a water-based tissue at 120 kVp (Brown et al. 2017)."""


@dataclass(frozen=True)
class ReferenceTissue:
    name: str
    nominal_hu: float
    window_hu: tuple[float, float]

    @property
    def density_mg_cm3(self) -> float:
        """K2HPO4-equivalent density of the tissue."""
        return self.nominal_hu * MG_CM3_PER_HU


AIR = ReferenceTissue("air", -1000.0, (-1100.0, -900.0))
FAT = ReferenceTissue("fat", -100.0, (-190.0, -30.0))
MUSCLE = ReferenceTissue("muscle", 50.0, (-29.0, 150.0))
REFERENCES: tuple[ReferenceTissue, ...] = (AIR, FAT, MUSCLE)

MAX_SLICES = 12
"""Axial slices (evenly spread over the measured levels) that reference regions are taken from."""
MIN_REFERENCE_VOXELS = 200
SKIN_MARGIN_MM = 3.0
SUBCUTANEOUS_DEPTH_MM = 40.0
AIR_MARGIN_MM = 5.0
PARASPINAL_BOX_MM = {"posterior_from": 30.0, "posterior_to": 75.0, "lateral_from": 10.0, "lateral_to": 60.0}
"""Where the erector spinae lie relative to the vertebral body centre in an axial slice: behind
the transverse processes, either side of the spinous process (posterior and lateral distances)."""
BONE_MARGIN_MM = 4.0
MUSCLE_MIN_DEPTH_MM = 5.0
"""Paraspinal muscle is read at least this deep under the skin (no subcutaneous partial volume)."""
SLOPE_PLAUSIBLE = (0.7, 1.8)
"""Fitted HU per (mg/cm3 / MG_CM3_PER_HU): outside this the references are not trusted."""


class CalibrationError(ValueError):
    """The scan does not hold enough reference tissue for an internal calibration."""


@dataclass(frozen=True)
class InternalCalibration:
    """The fitted line ``HU = intercept_hu + slope_hu_per_mg_cm3 * density``."""

    intercept_hu: float
    slope_hu_per_mg_cm3: float
    references_hu: dict[str, float]
    """Median HU measured in each reference region."""
    reference_voxels: dict[str, int]

    def vbmd(self, hu: float) -> float:
        """Estimated vBMD (mg/cm3 K2HPO4 equivalent) of a trabecular HU."""
        return (hu - self.intercept_hu) / self.slope_hu_per_mg_cm3

    def as_dict(self) -> dict[str, float]:
        """Flat figures for ``StudyMeasurements.calibration``."""
        out = {"intercept_hu": self.intercept_hu, "slope_hu_per_mg_cm3": self.slope_hu_per_mg_cm3}
        out.update({f"{name}_hu": value for name, value in self.references_hu.items()})
        out.update({f"{name}_voxels": float(n) for name, n in self.reference_voxels.items()})
        return out


def internal_calibration(hu: np.ndarray, bone: np.ndarray, bodies: np.ndarray,
                         spacing_zyx: tuple[float, float, float],
                         direction_sign_yx: tuple[float, float] = (1.0, 1.0)) -> InternalCalibration:
    """Find air, fat and muscle near the measured vertebrae and fit the calibration line.

    Args:
        hu: CT (numpy z, y, x) in HU; slices are assumed axial.
        bone: every vertebra voxel (whole-vertebra labels > 0), excluded from muscle.
        bodies: vertebral bodies of the levels measured (> 0); sets the slices and the spine centre.
        spacing_zyx: voxel spacing in numpy order.
        direction_sign_yx: +1 where the array's y (row) / x (column) index grows
            towards LPS +y (posterior) / +x (patient left), -1 otherwise.

    Raises:
        CalibrationError: fewer than two references found, or an implausible line.
    """
    slices = np.flatnonzero(bodies.any(axis=(1, 2)))
    if slices.size == 0:
        raise CalibrationError("no vertebral body to calibrate near")
    chosen = slices[np.linspace(0, slices.size - 1, min(MAX_SLICES, slices.size)).round().astype(int)]
    samples: dict[str, list[np.ndarray]] = {r.name: [] for r in REFERENCES}
    for z in np.unique(chosen):
        for name, values in _slice_references(hu[z], bone[z], bodies[z], spacing_zyx[1:], direction_sign_yx).items():
            samples[name].append(values)
    measured: dict[str, float] = {}
    counts: dict[str, int] = {}
    for tissue in REFERENCES:
        values = np.concatenate(samples[tissue.name]) if samples[tissue.name] else np.empty(0)
        if values.size >= MIN_REFERENCE_VOXELS:
            measured[tissue.name] = float(np.median(values))
            counts[tissue.name] = int(values.size)
    if len(measured) < 2:
        raise CalibrationError(f"only {', '.join(measured) or 'no'} reference tissue found; need two of "
                               f"{', '.join(r.name for r in REFERENCES)}")
    density = np.array([t.density_mg_cm3 for t in REFERENCES if t.name in measured])
    observed = np.array([measured[t.name] for t in REFERENCES if t.name in measured])
    slope, intercept = np.polyfit(density, observed, 1)
    relative = slope * MG_CM3_PER_HU
    if not SLOPE_PLAUSIBLE[0] <= relative <= SLOPE_PLAUSIBLE[1]:
        raise CalibrationError(f"implausible calibration (gain {relative:.2f} of nominal from "
                               + ", ".join(f"{k} {v:.0f} HU" for k, v in measured.items()) + ")")
    return InternalCalibration(float(intercept), float(slope), measured, counts)


def _slice_references(hu: np.ndarray, bone: np.ndarray, bodies: np.ndarray, spacing_yx: tuple[float, float],
                      sign_yx: tuple[float, float]) -> dict[str, np.ndarray]:
    """HU samples of each reference tissue in one axial slice."""
    outline = ndimage.binary_fill_holes(_largest_component(hu > -500))
    if not outline.any():
        return {}
    depth = ndimage.distance_transform_edt(outline, sampling=spacing_yx)
    outside = ndimage.distance_transform_edt(~outline, sampling=spacing_yx)
    found = {
        "air": _pure(hu, (outside > AIR_MARGIN_MM), AIR),
        "fat": _pure(hu, (depth > SKIN_MARGIN_MM) & (depth <= SUBCUTANEOUS_DEPTH_MM), FAT),
    }
    rows, cols = np.nonzero(bodies)
    if rows.size:
        y = (np.arange(hu.shape[0])[:, None] - rows.mean()) * spacing_yx[0] * sign_yx[0]
        x = (np.arange(hu.shape[1])[None, :] - cols.mean()) * spacing_yx[1] * sign_yx[1]
        box = ((y >= PARASPINAL_BOX_MM["posterior_from"]) & (y <= PARASPINAL_BOX_MM["posterior_to"])
               & (np.abs(x) >= PARASPINAL_BOX_MM["lateral_from"]) & (np.abs(x) <= PARASPINAL_BOX_MM["lateral_to"]))
        near_bone = ndimage.distance_transform_edt(~bone, sampling=spacing_yx) <= BONE_MARGIN_MM
        found["muscle"] = _pure(hu, box & ~near_bone & (depth > MUSCLE_MIN_DEPTH_MM), MUSCLE)
    return found


def _pure(hu: np.ndarray, region: np.ndarray, tissue: ReferenceTissue) -> np.ndarray:
    """Voxels of ``region`` inside the tissue's window whose neighbours are too (no partial volume)."""
    low, high = tissue.window_hu
    inside = region & (hu >= low) & (hu <= high)
    return hu[ndimage.binary_erosion(inside, iterations=1)]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(sizes.argmax())
