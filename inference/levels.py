"""Vertebral level names and label conventions shared by every module.

Vertebra ids are VerSe ids (contract in DESIGN.md): 1-7 C1-C7, 8-19 T1-T12,
20-25 L1-L6, 26 sacrum, 28 T13. Compartment values: 1 cortical shell,
2 cancellous core.
"""

from __future__ import annotations

from enum import IntEnum

VERSE_IDS: dict[str, int] = {
    **{f"C{i}": i for i in range(1, 8)},
    **{f"T{i}": 7 + i for i in range(1, 13)},
    **{f"L{i}": 19 + i for i in range(1, 7)},
    "S": 26,
    "T13": 28,
}
"""Level name -> VerSe label id."""

LEVEL_NAMES: dict[int, str] = {v: k for k, v in VERSE_IDS.items()}
"""VerSe label id -> level name."""

TARGET_LEVELS: tuple[str, ...] = ("T11", "T12", "L1", "L2")
"""The thoracolumbar junction levels that screening measures."""

RESEARCH_LEVELS: tuple[str, ...] = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")
"""Levels the research side measures and extracts: the node's T11-L2 and the lumbar spine of the lumbar studies."""


class Compartment(IntEnum):
    """Label values of ``compartments.nii.gz``."""

    CORTICAL = 1
    CANCELLOUS = 2


def verse_id(level: str) -> int:
    """Return the VerSe id of a level name such as ``"L1"``.

    Raises:
        KeyError: with the list of known names when ``level`` is unknown.
    """
    try:
        return VERSE_IDS[level]
    except KeyError:
        raise KeyError(f"unknown vertebral level {level!r}; known: {', '.join(VERSE_IDS)}") from None
