"""Series selection: which complete series go to inference, decided by declarative rules.

The rules come from the ``[selection]`` section of the configuration and are
evaluated on the indexed attributes of a series' instances (no pixel data is
read). Each rule gives a :class:`RuleResult` with a reason a person can act
on; a series is selected when every rule passes. ``scpnode rules test
SERIES_DIR`` prints the same results for a folder of files, so a site can
tune the rules on its own data (as mercure's rule tester does).

What the rules cannot know is anatomy: whether T11-L2 is actually in view is
decided later by segmentation, which marks the series ``out_of_scope``
(:func:`scpnode.storage.index.mark_out_of_scope`).

Geometry follows PS3.3 C.7.6.2 (Image Plane Module): the slice normal is the
cross product of the row and column direction cosines, and a slice's location
along the stack is its Image Position (Patient) projected on that normal.
Gantry-tilted acquisitions (stack direction not along the normal) are rejected
rather than resampled, since the measurements assume an orthogonal grid.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from scpnode.config import SelectionSettings
from scpnode.storage.index import InstanceMeta

ORIENTATION_TOLERANCE = 1e-3
"""Largest difference between direction cosines that still counts as one orientation."""
SPACING_TOLERANCE_MM = 0.01
SPACING_REGULARITY = 0.1
"""Largest deviation of a slice gap from the median gap, as a fraction of it."""
NO_CONTRAST_VALUES = {"", "NONE", "NO", "N", "NO CONTRAST"}


@dataclass(frozen=True)
class RuleResult:
    """The outcome of one rule on one series."""

    rule: str
    passed: bool
    detail: str
    """What was found (and, on failure, what was required)."""


@dataclass(frozen=True)
class SelectionDecision:
    """Every rule's result on a series; selected when all pass."""

    results: tuple[RuleResult, ...]

    @property
    def selected(self) -> bool:
        return all(result.passed for result in self.results)

    @property
    def failed(self) -> tuple[RuleResult, ...]:
        return tuple(result for result in self.results if not result.passed)

    @property
    def reason(self) -> str | None:
        """The failed rules as one line (None when selected)."""
        if self.selected:
            return None
        return "; ".join(f"{result.rule}: {result.detail}" for result in self.failed)

    def to_dict(self) -> dict:
        return {"selected": self.selected, "results": [asdict(result) for result in self.results]}


@dataclass(frozen=True)
class _Stack:
    """The slice geometry of a series, derived once for the geometry rules."""

    normal: np.ndarray | None
    locations: np.ndarray
    """Sorted slice locations along the normal (mm)."""
    gaps: np.ndarray


Rule = Callable[[Sequence[InstanceMeta], SelectionSettings, _Stack], RuleResult]


def evaluate(instances: Sequence[InstanceMeta], settings: SelectionSettings) -> SelectionDecision:
    """Apply every selection rule to a series' instances."""
    if not instances:
        return SelectionDecision((RuleResult("instances", False, "the series has no instances"),))
    stack = _stack(instances)
    return SelectionDecision(tuple(rule(instances, settings, stack) for rule in RULES))


def _stack(instances: Sequence[InstanceMeta]) -> _Stack:
    orientation = next((i.orientation for i in instances if i.orientation), None)
    positions = [p for i in instances for p in i.positions]
    if orientation is None or not positions:
        return _Stack(None, np.array([]), np.array([]))
    row, col = np.array(orientation[:3]), np.array(orientation[3:])
    normal = np.cross(row, col)
    locations = np.sort(np.array(positions) @ normal)
    return _Stack(normal, locations, np.diff(locations))


def _rule_modality(instances, settings, stack) -> RuleResult:
    found = sorted({i.modality or "(none)" for i in instances})
    allowed = [m.upper() for m in settings.modalities]
    passed = all(m.upper() in allowed for m in found)
    return RuleResult("modality", passed, f"{'/'.join(found)}" + ("" if passed else f" not in {allowed}"))


def _rule_image_type(instances, settings, stack) -> RuleResult:
    required = [value.upper() for value in settings.require_image_type]
    for instance in instances:
        values = set(instance.image_type)
        if settings.allow_derived and "DERIVED" in values:
            values.add("ORIGINAL")
        if "AXIAL" not in values and stack.normal is not None and _is_axial(stack.normal):
            values.add("AXIAL")  # Enhanced CT has no AXIAL value; its geometry says so (PS3.3 C.8.16.1)
        missing = [value for value in required if value not in values]
        if "LOCALIZER" in values or missing:
            found = "\\".join(instance.image_type) or "(none)"
            what = "a localizer" if "LOCALIZER" in values else f"missing {'/'.join(missing)}"
            return RuleResult("image_type", False, f"{found}: {what}")
    return RuleResult("image_type", True, "\\".join(instances[0].image_type) or "(none)")


def _rule_slices(instances, settings, stack) -> RuleResult:
    count = max(len(stack.locations), len(instances))
    passed = count >= settings.min_slices
    return RuleResult("slices", passed, f"{count} slices" + ("" if passed else f" < {settings.min_slices}"))


def _rule_slice_thickness(instances, settings, stack) -> RuleResult:
    values = [i.slice_thickness for i in instances if i.slice_thickness is not None]
    if not values:
        return RuleResult("slice_thickness", False, "no Slice Thickness")
    thickest = max(values)
    passed = thickest <= settings.max_slice_thickness_mm
    return RuleResult("slice_thickness", passed,
                      f"{thickest:g} mm" + ("" if passed else f" > {settings.max_slice_thickness_mm:g} mm"))


def _rule_pixel_spacing(instances, settings, stack) -> RuleResult:
    spacings = {i.pixel_spacing for i in instances}
    if None in spacings:
        return RuleResult("pixel_spacing", False, "no Pixel Spacing")
    low, high = min(min(s) for s in spacings), max(max(s) for s in spacings)
    passed = settings.min_pixel_spacing_mm <= low and high <= settings.max_pixel_spacing_mm
    limits = f" outside {settings.min_pixel_spacing_mm:g}-{settings.max_pixel_spacing_mm:g} mm"
    return RuleResult("pixel_spacing", passed, f"{low:g}-{high:g} mm" + ("" if passed else limits))


def _rule_geometry(instances, settings, stack) -> RuleResult:
    if stack.normal is None:
        return RuleResult("geometry", False, "no Image Orientation/Position (Patient)")
    orientations = [np.array(i.orientation) for i in instances if i.orientation]
    if len(orientations) < len(instances) or any(
            np.abs(o - orientations[0]).max() > ORIENTATION_TOLERANCE for o in orientations):
        return RuleResult("geometry", False, "more than one image orientation")
    spacings = {i.pixel_spacing for i in instances}
    if len(spacings) > 1 and np.ptp(np.array(list(spacings)), axis=0).max() > SPACING_TOLERANCE_MM:
        return RuleResult("geometry", False, "more than one pixel spacing")
    if len({(i.rows, i.columns) for i in instances}) > 1:
        return RuleResult("geometry", False, "more than one matrix size")
    if len(stack.gaps) == 0:
        return RuleResult("geometry", False, "a single slice")
    if stack.gaps.min() < SPACING_TOLERANCE_MM:
        return RuleResult("geometry", False, "two slices at the same location")
    median = float(np.median(stack.gaps))
    worst = float(np.abs(stack.gaps - median).max())
    if worst > SPACING_REGULARITY * median:
        return RuleResult("geometry", False, f"irregular slice spacing (gaps {stack.gaps.min():.3g}-"
                                             f"{stack.gaps.max():.3g} mm)")
    if median > settings.max_slice_spacing_mm:
        return RuleResult("geometry", False, f"slice spacing {median:.3g} mm > {settings.max_slice_spacing_mm:g} mm")
    return RuleResult("geometry", True, f"one orientation, regular spacing {median:.3g} mm")


def _rule_gantry_tilt(instances, settings, stack) -> RuleResult:
    tilts = [abs(i.gantry_tilt) for i in instances if i.gantry_tilt is not None]
    tilt = max(tilts, default=0.0)
    positions = np.array([p for i in instances for p in i.positions])
    if stack.normal is not None and len(positions) >= 2:
        # A tilted stack shows as slice positions drifting off the slice normal.
        order = np.argsort(positions @ stack.normal)
        direction = positions[order[-1]] - positions[order[0]]
        length = np.linalg.norm(direction)
        if length > 0:
            cosine = min(1.0, abs(float(direction @ stack.normal)) / length)
            tilt = max(tilt, math.degrees(math.acos(cosine)))
    passed = tilt <= settings.max_gantry_tilt_deg
    return RuleResult("gantry_tilt", passed, f"{tilt:.2g} deg" + ("" if passed else f" > {settings.max_gantry_tilt_deg:g} deg"))


def craniocaudal_extent_mm(instances: Sequence[InstanceMeta]) -> float:
    """Distance from the first to the last slice centre along the slice normal (0 without geometry)."""
    return _extent(_stack(instances))


def _extent(stack: _Stack) -> float:
    return float(stack.locations[-1] - stack.locations[0]) if len(stack.locations) else 0.0


def _rule_coverage(instances, settings, stack) -> RuleResult:
    coverage = _extent(stack)
    passed = coverage >= settings.min_coverage_mm
    return RuleResult("coverage", passed, f"{coverage:.0f} mm craniocaudal" + ("" if passed else f" < {settings.min_coverage_mm:g} mm"))


def _rule_include_keywords(instances, settings, stack) -> RuleResult:
    if not settings.include_keywords:
        return RuleResult("include_keywords", True, "no keyword required")
    texts = {t for i in instances for t in (i.series_description, i.study_description, i.protocol_name,
                                            i.body_part_examined) if t}
    found = [k for k in settings.include_keywords if any(_has_word(text, k) for text in texts)]
    return RuleResult("include_keywords", bool(found), f"found {found}" if found
                      else f"none of {settings.include_keywords} in descriptions/body part")


def _rule_exclude_keywords(instances, settings, stack) -> RuleResult:
    texts = {t for i in instances for t in (i.series_description, *i.image_type) if t}
    found = [k for k in settings.exclude_keywords if any(_has_word(text, k) for text in texts)]
    return RuleResult("exclude_keywords", not found, f"excluded keyword {found}" if found else "none present")


def _rule_contrast(instances, settings, stack) -> RuleResult:
    agents = {i.contrast_agent.strip() for i in instances if i.contrast_agent.strip().upper() not in NO_CONTRAST_VALUES}
    if not agents:
        return RuleResult("contrast", True, "no contrast agent recorded")
    return RuleResult("contrast", settings.allow_contrast, f"contrast agent {sorted(agents)}"
                      + ("" if settings.allow_contrast else " (not allowed)"))


def _has_word(text: str, keyword: str) -> bool:
    return re.search(rf"(?<![A-Z0-9]){re.escape(keyword.upper())}(?![A-Z0-9])", text.upper()) is not None


def _is_axial(normal: np.ndarray) -> bool:
    return abs(float(normal[2])) >= math.cos(math.radians(1.0))


RULES: tuple[Rule, ...] = (
    _rule_modality, _rule_image_type, _rule_slices, _rule_slice_thickness, _rule_pixel_spacing,
    _rule_geometry, _rule_gantry_tilt, _rule_coverage, _rule_include_keywords, _rule_exclude_keywords,
    _rule_contrast,
)
"""The rules, in the order they are reported."""
