"""The weight-free anatomical segmentation backend (the embedded default).

Image processing only (SimpleITK/scipy), so a fresh install segments real CT
without downloading a model:

1. canonical orientation and a coarse working grid (:mod:`.grid`);
2. the spinal column: canal tracking and body centre line (:mod:`.column`);
3. discs along the curved spine axis, bodies, posterior elements (:mod:`.vertebrae`);
4. rib and sacrum evidence per vertebra (:mod:`.evidence`) and level
   identification (:func:`inference.segment.levels.identify_levels`);
5. full-resolution boundaries on the input grid (:mod:`.refine`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from inference.levels import VERSE_IDS
from inference.segment.anatomical.column import ColumnNotFound, find_column
from inference.segment.anatomical.evidence import measure_evidence
from inference.segment.anatomical.grid import CanonicalGrid, working_image
from inference.segment.anatomical.refine import refine_labels
from inference.segment.anatomical.vertebrae import split_vertebrae
from inference.segment.api import BackendOutput
from inference.segment.anchors import identify_levels
from inference.segment.levels import faces_against_air

VERSION = "anatomical-1"


def segment_anatomical(
    image: sitk.Image, *, device: str = "cpu", model_dir: Path | None = None, lowest_level: str | None = None
) -> BackendOutput:
    """Segment and name the vertebrae of a CT without a trained model.

    ``lowest_level`` is the user's statement of the most caudal vertebra in view, an anchor
    like the others. ``device`` and ``model_dir`` are accepted for the common backend
    signature and unused.
    """
    grid = CanonicalGrid.of(image)
    working = working_image(grid.canonical)
    hu = sitk.GetArrayFromImage(working)
    spacing_zyx = tuple(reversed(working.GetSpacing()))
    empty = np.zeros(sitk.GetArrayViewFromImage(grid.canonical).shape, dtype=np.uint8)

    # in-plane smoothing only, so that each slice keeps its own z position (thin discs)
    smoothed = ndi.gaussian_filter(hu, sigma=(0.0, 0.8, 0.8))
    try:
        column = find_column(hu, smoothed, spacing_zyx)
    except ColumnNotFound as exc:
        return BackendOutput(
            grid.to_input(empty), grid.to_input(empty), VERSION, labelling_confidence=0.0,
            warnings=[f"no vertebral column found ({exc})"],
        )
    segments = split_vertebrae(hu, smoothed, column, spacing_zyx)
    # full-resolution boundaries first: whether a body is cut by the edge of the field of view
    # (or by air beyond an oblique crop) is read there, before the levels are counted
    bodies, vertebrae = refine_labels(grid.canonical, working, segments.bodies, segments.vertebrae,
                                     body_hu=segments.body_hu)
    evidence = measure_evidence(smoothed, segments.bodies, segments.segment_index, segments.discs, column, spacing_zyx)
    canonical_hu = sitk.GetArrayViewFromImage(grid.canonical)
    evidence = [replace(e, cut_by_edge=e.cut_by_edge or bool(faces_against_air(bodies, canonical_hu, e.index,
                                                                                   grid.spacing_zyx)))
                for e in evidence]
    assignment = identify_levels(evidence, lowest_level=lowest_level)

    lookup = np.zeros(max(int(segments.vertebrae.max()), int(segments.bodies.max())) + 1, dtype=np.uint8)
    for segment, name in assignment.names.items():
        if segment < len(lookup):
            lookup[segment] = VERSE_IDS[name]
    bodies, vertebrae = lookup[bodies], lookup[vertebrae]
    return BackendOutput(
        vertebrae=grid.to_input(vertebrae),
        bodies=grid.to_input(bodies),
        version=VERSION,
        labelling_confidence=assignment.confidence,
        needs_review=assignment.needs_review,
        warnings=list(assignment.warnings),
        anchors=list(assignment.anchors),
        level_anchors={VERSE_IDS[assignment.names[k]]: kinds for k, kinds in assignment.level_anchors.items()},
    )
