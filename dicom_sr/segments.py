"""The segments we write: one per target level and compartment.

One table drives the SEG (segment descriptions), the SR (which segment each
measurement group references) and the visual report (the same colours), so
the three objects always agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset

from dicom_sr import codes
from inference.levels import TARGET_LEVELS, Compartment, verse_id

LEVEL_COLOURS: dict[str, tuple[int, int, int]] = {
    "T11": (230, 159, 0),
    "T12": (0, 158, 115),
    "L1": (86, 180, 233),
    "L2": (204, 121, 167),
}
"""Cortical shell colour per level (Okabe-Ito palette, readable with colour-vision deficiency)."""


@dataclass(frozen=True)
class SegmentSpec:
    """What one segment is: level, compartment, label, colour."""

    level: str
    compartment: Compartment

    @property
    def verse_id(self) -> int:
        return verse_id(self.level)

    @property
    def compartment_name(self) -> str:
        return codes.COMPARTMENT_NAMES[self.compartment]

    @property
    def label(self) -> str:
        """Segment Label (0062,0005), e.g. ``"L1 cancellous"``."""
        return f"{self.level} {self.compartment_name}"

    @property
    def tracking_id(self) -> str:
        """Tracking ID shared by the SEG segment and its SR measurement group."""
        return f"{self.level} {codes.COMPARTMENT_CODES[self.compartment].meaning.lower()}"

    @property
    def colour(self) -> tuple[int, int, int]:
        """Recommended display colour (sRGB): the level colour, lighter for the core."""
        r, g, b = LEVEL_COLOURS[self.level]
        if self.compartment is Compartment.CORTICAL:
            return r, g, b
        return tuple(int(round(c + (255 - c) * 0.55)) for c in (r, g, b))  # type: ignore[return-value]


def plan_segments(levels: list[str]) -> list[SegmentSpec]:
    """Segments for ``levels`` in a fixed order (T11..L2, cortical before cancellous).

    Segment numbers are positions in this list plus one.
    """
    unknown = [name for name in levels if name not in TARGET_LEVELS]
    if unknown:
        raise ValueError(f"levels {unknown} are not target levels {TARGET_LEVELS}")
    return [
        SegmentSpec(level, compartment)
        for level in TARGET_LEVELS if level in levels
        for compartment in (Compartment.CORTICAL, Compartment.CANCELLOUS)
    ]


def identify_segment(item: Dataset) -> SegmentSpec | None:
    """The level and compartment of a SEG Segment Sequence item written by us.

    Reads the codes (vertebra as property type, compartment as modifier), not
    the free-text label. Returns None for a segment that is not one of ours.
    """
    type_items = getattr(item, "SegmentedPropertyTypeCodeSequence", None)
    if not type_items:
        return None
    type_code = type_items[0]
    level = next((name for name, code in codes.VERTEBRA_CODES.items()
                  if (code.value, code.scheme_designator) == (type_code.CodeValue, type_code.CodingSchemeDesignator)),
                 None)
    modifiers = getattr(type_code, "SegmentedPropertyTypeModifierCodeSequence", [])
    compartment = next((comp for comp, code in codes.COMPARTMENT_CODES.items() for mod in modifiers
                        if (code.value, code.scheme_designator) == (mod.CodeValue, mod.CodingSchemeDesignator)),
                       None)
    if level is None or compartment is None:
        return None
    return SegmentSpec(level, compartment)
