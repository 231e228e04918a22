"""Series Descriptions of the result objects, which say how sure their level labels are.

A PACS lists series by their description long before anyone opens an SR, so
labels that a person has not yet confirmed, though the evidence for them
conflicted, are named there in capitals; labels a person confirmed say so too.
Series Description is LO: at most 64 characters (PS3.5 6.2), checked here.
"""

from __future__ import annotations

from inference.results import LevelIdentification

MAX_LENGTH = 64

_LEVEL_NOTES = {
    LevelIdentification.AUTOMATIC: "",
    LevelIdentification.NEEDS_REVIEW: "LEVELS UNCONFIRMED",
    LevelIdentification.CONFIRMED: "levels confirmed",
}


def series_description(what: str, identification: LevelIdentification, *, research_use: bool) -> str:
    """E.g. ``"T11-L2 compartments SEG, LEVELS UNCONFIRMED (research use)"``.

    Raises:
        ValueError: the description would not fit in 64 characters.
    """
    parts = [what]
    if _LEVEL_NOTES[identification]:
        parts.append(_LEVEL_NOTES[identification])
    description = ", ".join(parts) + (" (research use)" if research_use else "")
    if len(description) > MAX_LENGTH:
        raise ValueError(f"series description {description!r} is longer than {MAX_LENGTH} characters")
    return description
