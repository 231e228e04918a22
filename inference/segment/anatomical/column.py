"""Find the spinal column: vertebral-body centre line and spinal canal, slice by slice.

Works on the working-grid array (z inferior -> superior, y anterior -> posterior,
x right -> left). Three steps:

1. near the patient's midline, the lateral position where bone (HU above
   :data:`BONE_HU`) piles up most in the antero-posterior direction gives a
   first track of the spine - body and spinous process line up there, ribs,
   pelvis and vessels do not;
2. in every slice, walking anteriorly from the most posterior bone on that
   track (spinous process or lamina) must cross the spinal canal (a run of
   soft-tissue attenuation 6-28 mm long) and then the vertebral body; slices
   that do not show this sequence (disc levels, gaps) are not used;
3. the centre line is smoothed along z and interpolated across slices where
   the column is missing (discs, fractures), so that it follows a curved spine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

BONE_HU = 180.0
"""Threshold for cortical and dense trabecular bone on the smoothed working image."""

CANAL_HU = 75.0
"""The canal (CSF, cord, epidural fat) stays below this; cancellous bone, even of an
osteoporotic body, and the disc lie above it."""

MIDLINE_HALF_WIDTH_MM = 35.0
"""Half width of the strip around the patient's midline where the column is searched."""

MIN_COLUMN_MM = 15.0
"""A column followed over less than this is not usable (a few slices, or not a spine)."""

MAX_GAP_MM = 30.0
"""The column is followed across at most this many mm without seeing it (a disc and a bit)."""

TRACK_HALF_WIDTH_MM = 12.0
"""Half width of the strip around the column's track where the spinous process/lamina is looked for."""

MARROW_HU = 60.0
"""Inside the body, attenuation stays above this (fatty osteoporotic marrow included)."""

CANAL_MM = (6.0, 28.0)
"""Plausible antero-posterior diameter of the spinal canal along the midline."""

BODY_MIN_MM = 14.0
BODY_MAX_MM = 40.0
"""Antero-posterior depth of a vertebral body: shallower is not a body, deeper is clipped."""


class ColumnNotFound(ValueError):
    """No vertebral column can be found in the image."""


@dataclass
class SpineColumn:
    """Per working slice (index z): body centre, canal centre, and where the column was seen."""

    body_center_yx: np.ndarray
    """(n_slices, 2) smoothed body centre, voxel units of the working grid."""
    canal_center_yx: np.ndarray
    """(n_slices, 2) smoothed spinal canal centre."""
    canal_front_y: np.ndarray
    """(n_slices,) y of the anterior edge of the canal (posterior wall of the body)."""
    observed: np.ndarray
    """(n_slices,) bool, the column was seen in this slice (not interpolated)."""
    z_range: tuple[int, int]
    """First and last slice (inclusive) between which the column is followed."""

    def extended_range(self, margin_mm: float, slice_mm: float) -> range:
        """Slices of the column plus ``margin_mm`` beyond both ends (a body cut by the scan edge
        or the last body before the column track ends is still segmented)."""
        margin = int(round(margin_mm / slice_mm))
        return range(max(self.z_range[0] - margin, 0), min(self.z_range[1] + margin, len(self.observed) - 1) + 1)


def find_column(hu: np.ndarray, smoothed: np.ndarray, spacing_zyx: tuple[float, float, float]) -> SpineColumn:
    """Locate the spinal column in a working-grid HU array.

    Args:
        hu: working-grid CT (z, y, x), HU.
        smoothed: the same, smoothed in-plane.
        spacing_zyx: its voxel spacing in mm.

    Raises:
        ColumnNotFound: no bone, or no lamina-canal-body sequence followed over
            :data:`MIN_COLUMN_MM`.
    """
    sz, sy, sx = spacing_zyx
    patient = _patient_mask(hu)
    midline_x = _midline_x(patient)

    bone = (smoothed > BONE_HU) & patient
    if not bone.any():
        raise ColumnNotFound("no bone found")
    xs = np.arange(hu.shape[2])
    central = np.abs(xs[None, :] - midline_x[:, None]) <= MIDLINE_HALF_WIDTH_MM / sx  # (z, x)
    seed_x = _seed_track_x(bone, central, sx, sz)

    n = hu.shape[0]
    body = np.full((n, 2), np.nan)
    canal = np.full((n, 2), np.nan)
    canal_front = np.full(n, np.nan)
    narrow = np.abs(xs[None, :] - seed_x[:, None]) <= TRACK_HALF_WIDTH_MM / sx
    for z in range(n):
        in_strip = bone[z] & narrow[z][None, :]
        if not in_strip.any():
            continue
        ys, xs_z = np.nonzero(in_strip)
        posterior = int(ys.max())
        start_x = float(np.median(xs_z[ys >= posterior - 10.0 / sy]))
        found = _walk_to_body(smoothed[z], posterior, start_x, sy, sx)
        if found is not None:
            canal_y, body_y, front_y = found
            body[z] = (body_y, start_x)  # bodies sit on the midline of their arch
            canal[z] = (canal_y, start_x)
            canal_front[z] = front_y

    observed = _longest_track(~np.isnan(body[:, 0]), int(round(MAX_GAP_MM / sz)))
    if observed.sum() < 3:
        raise ColumnNotFound("vertebral column seen in fewer than 3 slices")
    if (np.ptp(np.nonzero(observed)[0]) + 1) * sz < MIN_COLUMN_MM:
        raise ColumnNotFound(f"vertebral column followed over less than {MIN_COLUMN_MM:g} mm")
    body[~observed] = np.nan
    canal[~observed] = np.nan
    z_first, z_last = int(np.argmax(observed)), int(n - 1 - np.argmax(observed[::-1]))
    body_s = _smooth_track(body, observed, sz)
    canal_s = _smooth_track(canal, observed, sz)
    front_s = _smooth_track(canal_front[:, None], observed, sz)[:, 0]
    return SpineColumn(body_s, canal_s, front_s, observed, (z_first, z_last))


def _longest_track(observed: np.ndarray, max_gap: int) -> np.ndarray:
    """Keep the longest run of observed slices, bridging gaps up to ``max_gap`` slices."""
    bridged = ndi.binary_closing(observed, structure=np.ones(max_gap + 1, bool)) | observed if max_gap > 0 else observed
    runs, count = ndi.label(bridged)
    if count == 0:
        return observed
    lengths = np.bincount(runs)[1:]
    return observed & (runs == 1 + int(np.argmax(lengths)))


def _seed_track_x(bone: np.ndarray, central: np.ndarray, sx: float, sz: float) -> np.ndarray:
    """Lateral position of the column per slice: where bone piles up most along y in the
    midline strip (body and spinous process line up there; ribs and pelvis do not)."""
    n = bone.shape[0]
    counts = (bone & central[:, None, :]).sum(axis=1).astype(float)  # (z, x)
    counts = ndi.uniform_filter1d(counts, size=max(3, int(round(10.0 / sx))), axis=1)
    track = np.where(counts.max(axis=1) > 0, counts.argmax(axis=1).astype(float), np.nan)
    valid = ~np.isnan(track)
    if not valid.any():
        return np.full(n, bone.shape[2] / 2.0)
    track = np.interp(np.arange(n), np.nonzero(valid)[0], track[valid])
    return ndi.median_filter(track, size=max(3, int(round(30.0 / sz)) | 1), mode="nearest")


def _patient_mask(hu: np.ndarray) -> np.ndarray:
    """Largest connected body of tissue denser than fat/air (excludes table and air)."""
    tissue = hu > -300
    components, count = ndi.label(tissue)
    if count == 0:
        return tissue
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == int(np.argmax(sizes))


def _midline_x(patient: np.ndarray) -> np.ndarray:
    """Per slice, x of the patient's centre (centre of the body outline), smoothed along z."""
    n, _, nx = patient.shape
    columns = patient.sum(axis=1)  # (z, x)
    weights = columns.sum(axis=1)
    centre = np.where(weights > 0, (columns * np.arange(nx)).sum(axis=1) / np.maximum(weights, 1), np.nan)
    valid = ~np.isnan(centre)
    if not valid.any():
        return np.full(n, nx / 2.0)
    centre = np.interp(np.arange(n), np.nonzero(valid)[0], centre[valid])
    return ndi.median_filter(centre, size=5, mode="nearest")


def _walk_to_body(slice_hu: np.ndarray, start_y: int, x: float, sy: float, sx: float) -> tuple[float, float, float] | None:
    """Walk anteriorly along the midline from the posterior elements: lamina, canal, vertebral body.

    Returns (canal centre y, body centre y, canal anterior edge y) or None when
    the slice does not show that sequence (disc level, no canal).
    """
    half = max(1, int(round(3.0 / sx)))
    xi = int(round(x))
    profile = slice_hu[: start_y + 1, max(xi - half, 0): xi + half + 1].mean(axis=1)[::-1]  # posterior -> anterior
    soft = profile < CANAL_HU
    runs = _runs(soft)
    for first, last in runs:
        length_mm = (last - first + 1) * sy
        if first == 0 or not CANAL_MM[0] <= length_mm <= CANAL_MM[1]:
            continue
        # bone must follow: the vertebral body, at least BODY_MIN_MM deep
        body_first = last + 1
        body_last = body_first
        while body_last + 1 < len(profile) and profile[body_last + 1] > MARROW_HU:
            body_last += 1
        if body_first >= len(profile) or (body_last - body_first + 1) * sy < BODY_MIN_MM:
            continue
        body_last = min(body_last, body_first + int(round(BODY_MAX_MM / sy)))
        to_y = lambda k: float(start_y - k)  # noqa: E731 - index in the reversed profile -> y
        return 0.5 * (to_y(first) + to_y(last)), 0.5 * (to_y(body_first) + to_y(body_last)), to_y(last) - 0.5
    return None


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of every run of True values."""
    padded = np.concatenate(([False], flags, [False])).astype(np.int8)
    edges = np.diff(padded)
    return list(zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0] - 1, strict=True))


def _smooth_track(track: np.ndarray, valid: np.ndarray, sz: float) -> np.ndarray:
    """Robustly smooth a per-slice track and fill gaps by linear interpolation."""
    n = track.shape[0]
    z = np.arange(n)
    out = np.empty_like(track, dtype=float)
    window = max(3, int(round(30.0 / sz)) | 1)  # ~ a vertebra
    for k in range(track.shape[1]):
        values = track[valid, k]
        filtered = ndi.median_filter(values, size=min(window, len(values) | 1), mode="nearest")
        dense = np.interp(z, z[valid], filtered)
        out[:, k] = ndi.uniform_filter1d(dense, size=max(3, window // 2 | 1), mode="nearest")
    return out
