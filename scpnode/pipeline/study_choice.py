"""One analysis per study: rank a study's selected series and choose the one to analyse.

A PACS sends a CT study as several series (thin and thick reconstructions,
soft-tissue and bone kernels, contrast phases). The selection rules
(:mod:`scpnode.pipeline.selection`) say which series *could* be analysed; this module
says which one *is*, so the PACS gets one SEG/SR/report per study and the
worklist one row.

Ranking (``[study_choice] order``, most important first; a later criterion
only breaks ties):

- ``coverage``: craniocaudal extent in ``coverage_step_mm`` steps (more is
  more likely to hold all of T11-L2; whether it does is known only after
  segmentation);
- ``kernel``: soft-tissue before sharp (bone/lung) reconstructions;
- ``phase``: contrast phase in ``phase_order``;
- ``thickness``: inside ``preferred_slice_thickness_mm`` first, thinner first;
  outside, the nearer the range the better;
- ``images``: more images first.

Remaining ties go to the series received first.

When the choice is made: once no series of the study is still arriving
(``received``) or undecided (``complete``), so that a thin series a few
seconds behind a thick one is not missed. Later on:

- a series the chosen one beats is recorded ``not_chosen`` with why;
- a better series arriving after the study was analysed is analysed with
  ``later_series = "supersede"`` (its SR names the one sent before as
  predecessor; the worklist row of the study is updated), or recorded
  ``not_chosen`` with ``"keep_first"``;
- when the chosen series turns out ``out_of_scope`` (T11-L2 not all in view),
  the next-best ``not_chosen`` one is analysed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import sqlite_utils

from scpnode.config import StudyChoiceSettings
from scpnode.pipeline.selection import NO_CONTRAST_VALUES, craniocaudal_extent_mm
from scpnode.storage import index
from scpnode.storage.index import InstanceMeta, SeriesRef, SeriesState

PHASE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "non-contrast": ("NATIVE", "NON CONTRAST", "NONCONTRAST", "NON-CONTRAST", "PLAIN", "UNENHANCED", "WO"),
    "arterial": ("ARTERIAL", "ANGIO", "CTA"),
    "venous": ("VENOUS", "PORTAL", "PV", "PVP", "VEN"),
    "delayed": ("DELAYED", "DELAY", "LATE", "EXCRETORY", "UROGRAPHIC"),
}
"""Whole words of a series description that name its contrast phase."""


@dataclass(frozen=True)
class SeriesFacts:
    """What the ranking looks at, read from a series' indexed instances."""

    coverage_mm: float
    sharp_kernel: str
    """The kernel or description word that marks a sharp reconstruction ("" for soft tissue)."""
    phase: str
    slice_thickness_mm: float | None
    images: int
    description: str


@dataclass(frozen=True)
class RankedSeries:
    series: SeriesRef
    facts: SeriesFacts
    key: tuple


@dataclass(frozen=True)
class StudyChoice:
    """The ranking of a study's candidate series and what to do with it."""

    ranking: tuple[RankedSeries, ...]
    analyse: SeriesRef | None
    """The series to hand to the pipeline now (None: the chosen one already was, or none is left)."""
    not_chosen: tuple[tuple[SeriesRef, str], ...]
    """Candidates not analysed, with the reason."""
    waiting: bool = False
    """The study still has series arriving or undecided; nothing is chosen yet."""


def series_facts(instances: Sequence[InstanceMeta], settings: StudyChoiceSettings) -> SeriesFacts:
    """The ranking's view of one series."""
    first = instances[0]
    positions = [p for i in instances for p in i.positions]
    thicknesses = [i.slice_thickness for i in instances if i.slice_thickness is not None]
    return SeriesFacts(
        coverage_mm=craniocaudal_extent_mm(instances),
        sharp_kernel=_sharp_kernel(first.convolution_kernel, first.series_description, settings),
        phase=contrast_phase(first.series_description, first.contrast_agent),
        slice_thickness_mm=float(np.median(thicknesses)) if thicknesses else None,
        images=max(len(positions), len(instances)),
        description=first.series_description,
    )


def contrast_phase(description: str, contrast_agent: str) -> str:
    """"non-contrast", "arterial", "venous", "delayed" or "unknown"."""
    text = description.upper().replace("W/O", "WO").replace("-", " ").replace("NON CONTRAST", "NONCONTRAST")
    words = set(re.findall(r"[A-Z0-9]+", text))
    for phase in ("non-contrast", "delayed", "arterial", "venous"):
        if words & {k.replace(" ", "").replace("-", "") for k in PHASE_KEYWORDS[phase]}:
            return phase
    if contrast_agent.strip().upper() in NO_CONTRAST_VALUES:
        return "non-contrast"
    return "unknown"


def rank(candidates: Sequence[tuple[SeriesRef, SeriesFacts]], settings: StudyChoiceSettings) -> list[RankedSeries]:
    """Candidates best first."""
    ranked = [RankedSeries(series, facts, _key(series, facts, settings)) for series, facts in candidates]
    return sorted(ranked, key=lambda r: r.key)


def why_not(loser: RankedSeries, winner: RankedSeries, settings: StudyChoiceSettings) -> str:
    """The first criterion on which ``winner`` beats ``loser``, in words."""
    for position, criterion in enumerate(settings.order):
        if loser.key[position] != winner.key[position]:
            return f"{criterion}: {describe(winner.facts, criterion)} preferred to {describe(loser.facts, criterion)}"
    return "received later than an equally good series"


def describe(facts: SeriesFacts, criterion: str) -> str:
    """One criterion's value of a series, in words."""
    if criterion == "coverage":
        return f"{facts.coverage_mm:.0f} mm coverage"
    if criterion == "kernel":
        return f"sharp kernel ({facts.sharp_kernel})" if facts.sharp_kernel else "soft-tissue kernel"
    if criterion == "phase":
        return f"{facts.phase} phase"
    if criterion == "thickness":
        return f"{facts.slice_thickness_mm:.3g} mm slices" if facts.slice_thickness_mm else "unknown slice thickness"
    return f"{facts.images} images"


def choose(db: sqlite_utils.Database, study_instance_uid: str, settings: StudyChoiceSettings) -> StudyChoice:
    """Decide what to analyse in a study now (nothing is changed in the database)."""
    series = index.study_series(db, study_instance_uid)
    if any(s.state in (SeriesState.RECEIVED, SeriesState.COMPLETE) for s in series):
        return StudyChoice((), None, (), waiting=True)
    selected = [s for s in series if s.state is SeriesState.SELECTED]
    if settings.mode == "every":
        return StudyChoice((), next((s for s in selected if s.handed_off_at is None), None), ())
    analysed = [s for s in selected if s.handed_off_at is not None]
    candidates = [s for s in series if s.state in (SeriesState.SELECTED, SeriesState.NOT_CHOSEN)]
    if not candidates:
        return StudyChoice((), None, ())
    ranking = rank([(s, series_facts(index.series_instances(db, s.series_instance_uid), settings))
                    for s in candidates], settings)
    best = ranking[0]
    if analysed and settings.later_series == "keep_first":
        best = next(r for r in ranking if r.series in analysed)
    if best.series in analysed:
        losers = [r for r in ranking if r is not best and r.series not in analysed]
        return StudyChoice(tuple(ranking), None, tuple((r.series, _reason(r, best, ranking, settings))
                                                        for r in losers))
    losers = [r for r in ranking if r is not best]
    return StudyChoice(tuple(ranking), best.series, tuple((r.series, _reason(r, best, ranking, settings))
                                                           for r in losers))


def _reason(loser: RankedSeries, winner: RankedSeries, ranking: Sequence[RankedSeries],
            settings: StudyChoiceSettings) -> str:
    place = ranking.index(loser) + 1
    name = winner.facts.description or winner.series.series_instance_uid[-12:]
    return f"ranked {place} of {len(ranking)}: series '{name}' analysed instead ({why_not(loser, winner, settings)})"


def _key(series: SeriesRef, facts: SeriesFacts, settings: StudyChoiceSettings) -> tuple:
    low, high = settings.preferred_slice_thickness_mm
    thickness = facts.slice_thickness_mm
    if thickness is None:
        thickness_key: tuple = (2, 0.0)
    elif low <= thickness <= high:
        thickness_key = (0, thickness)
    else:
        thickness_key = (1, min(abs(thickness - low), abs(thickness - high)))
    keys = {
        "coverage": -int(facts.coverage_mm // settings.coverage_step_mm),
        "kernel": bool(facts.sharp_kernel),
        "phase": settings.phase_order.index(facts.phase) if facts.phase in settings.phase_order
        else len(settings.phase_order),
        "thickness": thickness_key,
        "images": -facts.images,
    }
    return (*(keys[criterion] for criterion in settings.order), series.first_received_at, series.series_instance_uid)


def _sharp_kernel(kernel: str, description: str, settings: StudyChoiceSettings) -> str:
    """The kernel value, or description word, a pattern marks sharp.

    Anchored patterns (kernel names such as ``^FC[3-9]\\d``) are matched against
    Convolution Kernel only; a single letter or code in a description means too
    many things. Word patterns (BONE, LUNG) are matched against both.
    """
    kernels = [value.strip() for value in kernel.split("\\") if value.strip()]
    words = re.findall(r"[A-Za-z0-9]+", description)
    for texts, patterns in ((kernels, settings.sharp_kernel_patterns),
                            (words, [p for p in settings.sharp_kernel_patterns if not p.startswith("^")])):
        for text in texts:
            if any(re.search(pattern, text, flags=re.IGNORECASE) for pattern in patterns):
                return text
    return ""
