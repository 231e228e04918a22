"""Find the spinal column: spinal canal track and vertebral-body centre line, slice by slice.

Works on the working-grid array (z inferior -> superior, y anterior -> posterior,
x right -> left). The column is found from the one structure that every CT
shows the same way, whatever the contrast phase, the patient's build or the
curve of the spine: the **spinal canal**, a tube of soft tissue (cord, CSF,
epidural fat) walled in by bone - the vertebral body in front, pedicles at the
sides, laminae behind. Intensity alone is not enough: an enhanced aorta or
heart (250-600 HU in an arterial phase) is brighter than the vertebral bodies
and as large, but nothing in it is soft tissue walled in by bone.

1. *Enclosure*: for every soft-tissue voxel, the share of in-plane
   directions in which bone lies within :data:`ENCLOSURE_REACH_MM`
   (:func:`enclosure`). Inside the canal nearly every direction meets bone;
   the kidneys' medulla inside an enhancing cortex, a papillary muscle in
   contrast-filled blood or a calcified aortic ring meet it too, so these are
   only candidates.
2. *Candidates* per slice: regions of high enclosure, of a canal's size, with
   bone-like tissue (a body or a disc) right in front of them.
3. *Track*: the canal runs the whole length of the field of view, shifting
   little from slice to slice even in kyphosis or scoliosis; the chain of
   candidates that is longest under that continuity constraint is the canal
   (:func:`_longest_chain`, dynamic programming). Kidneys, heart and vessels
   give shorter or broken chains.
4. *Body*: in each slice with the canal, walking anteriorly from it along the
   midline of the arch crosses the canal's anterior wall and then the
   vertebral body (or disc), whose centre is the body centre line; both lines
   are smoothed along z and interpolated across slices where they were not seen.
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

CANAL_SOFT_HU = (-150.0, 100.0)
"""Smoothed attenuation of canal contents: epidural fat to cord, with partial volume of the wall."""

ENCLOSURE_REACH_MM = 22.0
"""A ray from inside the canal meets bone within this distance (the widest lumbar canal
is about 25 mm across, so from any point inside a wall is at most ~20 mm away)."""

ENCLOSURE_DIRECTIONS = 16

MIN_ENCLOSURE = 0.75
"""Share of directions that meet bone for a voxel to be a canal candidate: pedicle and
lamina levels close the ring (1.0); the canal at a disc level is still open only
through the intervertebral foramina."""

CANAL_AREA_MM2 = (15.0, 900.0)
"""Cross-section of a candidate region (the enclosed part of the canal can be small on
thick slices and at disc levels); a body cavity is larger."""

MIDLINE_REACH = 0.35
"""The canal lies within this share of the trunk's half width from the trunk's midline
(scoliosis moves an apical vertebra some 3-5 cm off the midline; the kidneys, the iliac
wings and the scapulae lie farther out)."""

FRONT_BONE_MM = 8.0
"""In front of the canal, tissue denser than :data:`MARROW_HU` over at least this length (the body or a disc)."""

FRONT_SEARCH_MM = 20.0
"""... starting within this distance of the candidate's centre."""

MIN_COLUMN_MM = 15.0
"""A column followed over less than this is not usable (a few slices, or not a spine)."""

MAX_GAP_MM = 30.0
"""The canal is followed across at most this many mm without seeing it (a disc and a bit)."""

TRACK_SHIFT_MM = 5.0
TRACK_SLOPE = 0.7
"""Between slices dz mm apart the canal moves in plane by at most 5 mm + 0.7 dz: about
35 degrees from the craniocaudal axis, the steepest a lordotic, kyphotic or
scoliotic segment presents (plus the canal's own width changes)."""

PARTLY_ENCLOSED = 0.5
"""Where the canal is expected (between and beyond the slices of the chain), half the
directions meeting bone is enough: disc levels, thick slices, the flat sacral canal."""

FOLLOW_TOLERANCE_MM = 6.0
"""Where the canal was expected, a candidate this close to the expected position (plus the
track slope times the distance to the last slice seen) is taken."""

GAP_PENALTY = 0.3
"""Score lost per slice a chain skips (a chain through an empty slice is still better than a break)."""

MARROW_HU = 60.0
"""Inside the body, attenuation stays above this (fatty osteoporotic marrow included)."""

BODY_MIN_MM = 14.0
BODY_MAX_MM = 40.0
"""Antero-posterior depth of a vertebral body: shallower is not a body, deeper is clipped."""

CANAL_MM = (6.0, 28.0)
"""Plausible antero-posterior diameter of the spinal canal along the midline."""

STRIP_HALF_WIDTH_MM = 3.0
"""Half width of the strip along which the walk from the canal to the body samples."""


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


@dataclass(frozen=True)
class _Observation:
    """The column in one slice: canal centre, body centre and the canal's anterior edge (voxel units)."""

    canal_y: float
    x: float
    body_y: float
    front_y: float


@dataclass(frozen=True)
class _Candidate:
    z: int
    y: float
    x: float
    score: float


def find_column(hu: np.ndarray, smoothed: np.ndarray, spacing_zyx: tuple[float, float, float]) -> SpineColumn:
    """Locate the spinal column in a working-grid HU array.

    Args:
        hu: working-grid CT (z, y, x), HU.
        smoothed: the same, smoothed in-plane.
        spacing_zyx: its voxel spacing in mm.

    Raises:
        ColumnNotFound: no bone, or no canal followed over :data:`MIN_COLUMN_MM`.
    """
    sz, sy, sx = spacing_zyx
    trunk = trunk_mask(hu)
    bone = (smoothed > BONE_HU) & trunk
    if not bone.any():
        raise ColumnNotFound("no bone found")
    soft = (smoothed > CANAL_SOFT_HU[0]) & (smoothed < CANAL_SOFT_HU[1]) & _where_canal_can_be(trunk)
    enclosed = enclosure(bone, (sy, sx))
    candidates = [c for z in range(hu.shape[0])
                  for c in _canal_candidates(z, soft[z] & (enclosed[z] >= MIN_ENCLOSURE), smoothed[z], (sy, sx))]
    chain = _longest_chain(candidates, spacing_zyx)
    if len(chain) < 3:
        raise ColumnNotFound("spinal canal seen in fewer than 3 slices")
    seen = {}
    for candidate in chain:
        found = _observe(smoothed[candidate.z], candidate.y, candidate.x, sy, sx)
        if found is not None:
            seen[candidate.z] = found
    if not seen:
        raise ColumnNotFound("no vertebral body seen in front of the spinal canal")
    partly_enclosed = soft & (enclosed >= PARTLY_ENCLOSED)
    _follow(seen, partly_enclosed, smoothed, spacing_zyx)

    n = hu.shape[0]
    canal = np.full((n, 2), np.nan)
    body = np.full((n, 2), np.nan)
    canal_front = np.full(n, np.nan)
    for z, found in seen.items():
        canal[z] = (found.canal_y, found.x)
        body[z] = (found.body_y, found.x)  # bodies sit on the midline of their arch
        canal_front[z] = found.front_y
    observed = ~np.isnan(body[:, 0])
    if observed.sum() < 3:
        raise ColumnNotFound("vertebral bodies seen in front of the canal in fewer than 3 slices")
    z_first, z_last = int(np.argmax(observed)), int(n - 1 - np.argmax(observed[::-1]))
    if (z_last - z_first + 1) * sz < MIN_COLUMN_MM:
        raise ColumnNotFound(f"vertebral column followed over less than {MIN_COLUMN_MM:g} mm")
    body_s = _smooth_track(body, observed, sz)
    canal_s = _smooth_track(canal, observed, sz)
    front_s = _smooth_track(canal_front[:, None], observed, sz)[:, 0]
    return SpineColumn(body_s, canal_s, front_s, observed, (z_first, z_last))


def trunk_mask(hu: np.ndarray) -> np.ndarray:
    """The patient's trunk: the largest connected body of tissue denser than fat/air
    (the table, cushions and anything not touching the patient are left out)."""
    tissue = hu > -300
    components, count = ndi.label(tissue)
    if count == 0:
        return tissue
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == int(np.argmax(sizes))


def _where_canal_can_be(trunk: np.ndarray) -> np.ndarray:
    """Per slice, the posterior half of the trunk within :data:`MIDLINE_REACH` of its midline.

    In LPS the back is at high y whatever the patient position (supine or prone);
    the heart, the great vessels and the bowel lie in the anterior half.
    """
    allowed = np.zeros(trunk.shape, bool)
    ys = np.arange(trunk.shape[1])
    xs = np.arange(trunk.shape[2])
    for z in range(trunk.shape[0]):
        rows = np.nonzero(trunk[z].any(axis=1))[0]
        columns = np.nonzero(trunk[z].any(axis=0))[0]
        if rows.size == 0:
            continue
        centre_y = 0.5 * (rows[0] + rows[-1])
        weights = trunk[z].sum(axis=0)
        centre_x = float((weights * xs).sum() / weights.sum())
        half_width = 0.5 * (columns[-1] - columns[0] + 1)
        allowed[z] = (ys[:, None] >= centre_y) & (np.abs(xs - centre_x) <= MIDLINE_REACH * half_width)[None, :]
    return allowed


def enclosure(bone: np.ndarray, spacing_yx: tuple[float, float]) -> np.ndarray:
    """Per voxel, the share (0..1) of :data:`ENCLOSURE_DIRECTIONS` in-plane directions in which
    ``bone`` lies within 2 mm to :data:`ENCLOSURE_REACH_MM` (each slice on its own).

    A ray is a union of shifted copies of the bone mask: a few hundred whole-array
    operations instead of a loop over voxels.
    """
    sy, sx = spacing_yx
    steps_mm = np.arange(2.0, ENCLOSURE_REACH_MM + 1e-6, min(sy, sx) * 0.75)
    count = np.zeros(bone.shape, np.uint8)
    for k in range(ENCLOSURE_DIRECTIONS):
        angle = 2.0 * np.pi * k / ENCLOSURE_DIRECTIONS
        offsets = {(int(round(r * np.sin(angle) / sy)), int(round(r * np.cos(angle) / sx))) for r in steps_mm}
        hit = np.zeros(bone.shape, bool)
        for dy, dx in offsets:
            hit |= _shifted(bone, dy, dx)
        count += hit
    return count / ENCLOSURE_DIRECTIONS


def _shifted(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``out[:, y, x] = mask[:, y + dy, x + dx]`` (False beyond the edges)."""
    out = np.zeros_like(mask)
    _, ny, nx = mask.shape
    if abs(dy) >= ny or abs(dx) >= nx:
        return out
    out[:, max(-dy, 0): ny - max(dy, 0), max(-dx, 0): nx - max(dx, 0)] = \
        mask[:, max(dy, 0): ny - max(-dy, 0), max(dx, 0): nx - max(-dx, 0)]
    return out


def _canal_candidates(z: int, enclosed: np.ndarray, slice_hu: np.ndarray,
                      spacing_yx: tuple[float, float]) -> list[_Candidate]:
    """Regions of one slice that could be the canal: enclosed by bone, of a canal's size,
    with a body or disc in front of them."""
    sy, sx = spacing_yx
    regions, count = ndi.label(enclosed)
    candidates = []
    for label, box in enumerate(ndi.find_objects(regions), start=1):
        if box is None:
            continue
        mask = regions[box] == label
        area = float(mask.sum()) * sy * sx
        if not CANAL_AREA_MM2[0] <= area <= CANAL_AREA_MM2[1]:
            continue
        cy, cx = ndi.center_of_mass(mask)
        cy, cx = cy + box[0].start, cx + box[1].start
        if not _tissue_in_front(slice_hu, cy, cx, sy, sx):
            continue
        candidates.append(_Candidate(z, float(cy), float(cx), 1.0))
    return candidates


def _tissue_in_front(slice_hu: np.ndarray, cy: float, cx: float, sy: float, sx: float) -> bool:
    """Anterior of a canal lies a vertebral body or a disc: tissue above :data:`MARROW_HU`
    over :data:`FRONT_BONE_MM`, starting within :data:`FRONT_SEARCH_MM`."""
    profile = _anterior_profile(slice_hu, cy, cx, sy, sx)
    dense = profile[: int(round((FRONT_SEARCH_MM + FRONT_BONE_MM) / sy)) + 1] > MARROW_HU
    need = max(1, int(round(FRONT_BONE_MM / sy)))
    return any(last - first + 1 >= need and first * sy <= FRONT_SEARCH_MM for first, last in _runs(dense))


def _anterior_profile(slice_hu: np.ndarray, y: float, x: float, sy: float, sx: float) -> np.ndarray:
    """Mean HU of a :data:`STRIP_HALF_WIDTH_MM` strip from (y, x) anteriorly; index 0 at y."""
    half = max(1, int(round(STRIP_HALF_WIDTH_MM / sx)))
    yi, xi = int(round(y)), int(round(x))
    strip = slice_hu[: yi + 1, max(xi - half, 0): xi + half + 1]
    return strip.mean(axis=1)[::-1]


def _longest_chain(candidates: list[_Candidate], spacing_zyx: tuple[float, float, float]) -> list[_Candidate]:
    """The best-scoring chain of candidates, at most one per slice, ordered by z, in which
    consecutive members are close in plane (:data:`TRACK_SHIFT_MM`, :data:`TRACK_SLOPE`) and
    at most :data:`MAX_GAP_MM` apart along z. Dynamic programming over the slices."""
    if not candidates:
        return []
    sz, sy, sx = spacing_zyx
    ordered = sorted(candidates, key=lambda c: c.z)
    max_gap = max(1, int(round(MAX_GAP_MM / sz)))
    best = np.array([c.score for c in ordered])
    previous = np.full(len(ordered), -1)
    for i, current in enumerate(ordered):
        for j in range(i - 1, -1, -1):
            before = ordered[j]
            dz = current.z - before.z
            if dz == 0:
                continue
            if dz > max_gap:
                break
            shift = np.hypot((current.y - before.y) * sy, (current.x - before.x) * sx)
            if shift > TRACK_SHIFT_MM + TRACK_SLOPE * dz * sz:
                continue
            total = best[j] + current.score - GAP_PENALTY * (dz - 1)
            if total > best[i]:
                best[i], previous[i] = total, j
    chain = []
    i = int(np.argmax(best))
    while i >= 0:
        chain.append(ordered[i])
        i = int(previous[i])
    return chain[::-1]


def _observe(slice_hu: np.ndarray, canal_y: float, x: float, sy: float, sx: float) -> _Observation | None:
    """The column at a canal position, or None where no body follows it anteriorly.

    The canal centre is the middle of the canal's soft-tissue run along the arch's
    midline, between the back of the body and the laminae: where a region enclosed
    by bone has its centroid depends on how much of the ring a slice cuts (at a
    disc level only the part behind the disc), the middle of the run does not, and
    the disc planes follow the canal's direction.
    """
    found = _walk_to_body(slice_hu, canal_y, x, sy, sx)
    if found is None:
        return None
    body_y, front_y = found
    half = max(1, int(round(STRIP_HALF_WIDTH_MM / sx)))
    xi = int(round(x))
    behind = slice_hu[int(round(canal_y)):, max(xi - half, 0): xi + half + 1].mean(axis=1)
    dense = np.nonzero(behind > CANAL_HU)[0]
    if behind[0] <= CANAL_HU and dense.size:
        back_y = int(round(canal_y)) + int(dense[0]) - 0.5
        depth_mm = (back_y - front_y) * sy
        if depth_mm < CANAL_MM[0]:
            return None  # a dark spot inside a body (a vein, fatty marrow), not the canal
        if depth_mm <= CANAL_MM[1]:
            canal_y = 0.5 * (front_y + back_y)
    return _Observation(canal_y, _canal_middle_x(slice_hu, canal_y, x, sx), body_y, front_y)


def _canal_middle_x(slice_hu: np.ndarray, canal_y: float, x: float, sx: float) -> float:
    """The middle of the canal between its lateral walls (the pedicles) at row ``canal_y``,
    or ``x`` where a wall is not within half the widest canal (a level between pedicles)."""
    row = slice_hu[int(round(canal_y))]
    xi = int(round(x))
    reach = int(round(CANAL_MM[1] / 2 / sx))
    walls = []
    for step in (-1, 1):
        k = next((k for k in range(1, reach + 1) if 0 <= xi + step * k < len(row) and row[xi + step * k] > CANAL_HU),
                 None)
        if k is None:
            return x
        walls.append(xi + step * k)
    return 0.5 * (walls[0] + walls[1])


def _follow(seen: dict[int, _Observation], partly_enclosed: np.ndarray, smoothed: np.ndarray,
            spacing_zyx: tuple[float, float, float]) -> None:
    """Look for the column in the slices between and beyond those of the chain (in place).

    Each slice not yet seen is searched around the canal position expected from the
    slices seen below it (upward pass) or above it (downward pass): a linear trend
    over the last :data:`TREND_MM`, so the track follows a lordotic or kyphotic
    curve out of the chain's ends. The search stops :data:`MAX_GAP_MM` past the
    last slice seen.
    """
    sz, sy, sx = spacing_zyx
    n = smoothed.shape[0]
    max_gap = max(1, int(round(MAX_GAP_MM / sz)))
    for step in (1, -1):
        start = min(seen) if step == 1 else max(seen)
        z, last = start + step, start
        while 0 <= z < n and abs(z - last) <= max_gap:
            if z not in seen:
                expected = _expected(seen, z, step, spacing_zyx)
                tolerance = (FOLLOW_TOLERANCE_MM + TRACK_SLOPE * abs(z - last) * sz) / min(sy, sx)
                found = _search(smoothed[z], partly_enclosed[z], expected, tolerance, sy, sx)
                if found is not None and _continues(seen[last], found, abs(z - last) * sz, sy, sx):
                    seen[z] = found
            if z in seen:
                last = z
            z += step


def _continues(before: _Observation, after: _Observation, dz_mm: float, sy: float, sx: float) -> bool:
    """The vertebral bodies moved no more than the column may between two slices dz_mm apart.

    The bodies, not the canal: the sacral canal turns backwards under L5 more steeply than
    the track of the canal is allowed to, and its centre is where a flat slit is; the bodies
    form one continuous column."""
    shift = np.hypot((after.body_y - before.body_y) * sy, (after.x - before.x) * sx)
    return bool(shift <= TRACK_SHIFT_MM + TRACK_SLOPE * dz_mm)


TREND_MM = 30.0
"""The expected canal position continues the trend of the last 30 mm of the track."""


def _expected(seen: dict[int, _Observation], z: int, step: int, spacing_zyx: tuple[float, float, float]
              ) -> tuple[float, float]:
    """Canal (y, x) expected at slice ``z`` from the slices seen on the far side of ``step``: the
    nearest one moved along the robust trend (median of pairwise slopes) of the last
    :data:`TREND_MM`, by no more than the track may move (:data:`TRACK_SHIFT_MM`, :data:`TRACK_SLOPE`)."""
    sz, sy, sx = spacing_zyx
    behind = sorted((k for k in seen if (z - k) * step > 0), key=lambda k: abs(z - k))
    nearest = behind[0]
    recent = [k for k in behind if abs(z - k) * sz <= abs(z - nearest) * sz + TREND_MM]
    dz = abs(z - nearest) * sz
    expected = []
    for value, spacing in ((lambda k: seen[k].canal_y, sy), (lambda k: seen[k].x, sx)):
        slopes = [(value(b) - value(a)) / (b - a) for i, a in enumerate(recent) for b in recent[i + 1:] if b != a]
        slope = float(np.median(slopes)) if len(recent) >= 3 and np.ptp(recent) * sz >= 0.5 * TREND_MM else 0.0
        limit = (TRACK_SHIFT_MM + TRACK_SLOPE * dz) / spacing
        expected.append(value(nearest) + float(np.clip(slope * (z - nearest), -limit, limit)))
    return expected[0], expected[1]


def _search(slice_hu: np.ndarray, partly_enclosed: np.ndarray, expected: tuple[float, float], tolerance: float,
            sy: float, sx: float) -> _Observation | None:
    """The column in one slice near an expected canal position: a partly enclosed soft-tissue
    region there, or the expected point itself, with a body in front (nearest first)."""
    points = []
    regions, _ = ndi.label(partly_enclosed)
    for label, box in enumerate(ndi.find_objects(regions), start=1):
        if box is not None:
            cy, cx = ndi.center_of_mass(regions[box] == label)
            points.append((cy + box[0].start, cx + box[1].start))
    ey, ex = expected
    if 0 <= int(round(ey)) < slice_hu.shape[0] and 0 <= int(round(ex)) < slice_hu.shape[1] \
            and slice_hu[int(round(ey)), int(round(ex))] < CANAL_HU:
        points.append(expected)
    for y, x in sorted(points, key=lambda p: np.hypot((p[0] - ey) * sy, (p[1] - ex) * sx)):
        if np.hypot((y - ey) * sy / min(sy, sx), (x - ex) * sx / min(sy, sx)) > tolerance:
            break
        found = _observe(slice_hu, y, x, sy, sx)
        if found is not None:
            return found
    return _from_the_back(slice_hu, expected, tolerance, sy, sx)


BACK_SEARCH_MM = 60.0
"""How far behind the expected canal position the arch (laminae, spinous process or the
sacrum's median crest) is looked for."""


def _from_the_back(slice_hu: np.ndarray, expected: tuple[float, float], tolerance: float, sy: float, sx: float
                   ) -> _Observation | None:
    """The column found from behind: the most posterior bone near the expected midline (the
    spinous process, or the median crest of the sacrum, where the canal is a flat slit that
    no region of soft tissue shows), then the first run of soft tissue in front of it as the
    canal. Where the canal turns sharply backwards (the lumbosacral angle) it is still found."""
    ey, ex = expected
    half = max(1, int(round(tolerance)))
    xi = int(round(ex))
    columns = slice(max(xi - half, 0), min(xi + half + 1, slice_hu.shape[1]))
    top = min(int(round(ey + BACK_SEARCH_MM / sy)), slice_hu.shape[0] - 1)
    bone = slice_hu[: top + 1, columns] > BONE_HU
    rows = np.nonzero(bone.any(axis=1))[0]
    if rows.size == 0:
        return None
    back = int(rows.max())
    x = float(columns.start + np.median(np.nonzero(bone[back])[0]))
    profile = _anterior_profile(slice_hu, back, x, sy, sx)
    for first, last in _runs(profile < CANAL_HU):
        if first == 0 or not CANAL_MM[0] <= (last - first + 1) * sy <= CANAL_MM[1]:
            continue
        found = _observe(slice_hu, back - 0.5 * (first + last), x, sy, sx)
        if found is not None:
            return found
    return None


def _walk_to_body(slice_hu: np.ndarray, canal_y: float, x: float, sy: float, sx: float) -> tuple[float, float] | None:
    """Walk anteriorly from the canal centre: across the canal's anterior wall into the body.

    Returns (body centre y, canal anterior edge y), or None when no body or
    disc at least :data:`BODY_MIN_MM` deep follows.
    """
    profile = _anterior_profile(slice_hu, canal_y, x, sy, sx)
    start = 0
    while start < len(profile) and profile[start] <= CANAL_HU:
        start += 1
    if start == 0 or start >= len(profile) or start * sy > FRONT_SEARCH_MM:
        return None  # not in soft tissue, or no wall in front
    last = start
    while last + 1 < len(profile) and profile[last + 1] > MARROW_HU:
        last += 1
    if (last - start + 1) * sy < BODY_MIN_MM:
        return None
    last = min(last, start + int(round(BODY_MAX_MM / sy)))
    origin = int(round(canal_y))
    return float(origin - 0.5 * (start + last)), origin - start + 0.5


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
