"""The phantom matrix: synthetic studies that reproduce the failure classes of routine CT.

Each :class:`MatrixCase` is a study (a :class:`~inference.phantom.spec.PhantomSpec`)
and what a correct level labelling must do with it: label T11-L2 right
(``expect="labels"``), or, where the anatomy itself is ambiguous from the image
(11 or 13 rib pairs, a lumbosacral transitional vertebra), ask for review with
the reason (``expect="review"``, ``reason`` a phrase of the warning). Cases
cover the contrast phases (arterial: aorta and heart brighter than bone),
fields of view (neck to upper lumbar without the sacrum; first thoracic
vertebra to the pelvis), spine shapes (kyphosis, scoliosis), arms beside the
trunk, thin and obese patients, and 1 and 3 mm slices. Matrices are reduced
(2 mm pixels) so the whole matrix runs in minutes; ``tests/unit/test_segment_matrix.py``
and ``scpnode segment-validate --phantom-matrix`` run it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from inference.phantom.spec import PhantomSpec, abdominal_ct, chest_ct

THIN = {"pixel_spacing_mm": 2.0, "slice_spacing_mm": 1.0, "slice_thickness_mm": 1.0}
THICK = {"pixel_spacing_mm": 2.0, "slice_spacing_mm": 3.0, "slice_thickness_mm": 3.0}


@dataclass(frozen=True)
class MatrixCase:
    """One study of the matrix and the answer it needs."""

    name: str
    spec: PhantomSpec
    expect: Literal["labels", "review"] = "labels"
    reason: str = ""
    """For ``expect="review"``: a phrase the warnings must contain."""


def _chest_from_neck(seed: int, bottom: str = "L3", slices: int = 170, **overrides) -> PhantomSpec:
    """A chest CT from C5 to the upper lumbar spine (no sacrum), like a CT pulmonary angiogram
    or a staging chest CT that includes the adrenals."""
    grid = THICK if overrides.pop("thin", False) is False else THIN
    params = {**grid, **overrides}
    if params["slice_spacing_mm"] == 1.0:
        slices = int(slices * 3)
    return chest_ct(seed, shape=(180, 180, slices), top_level="C5", bottom_level=bottom, **params)


def phantom_matrix() -> list[MatrixCase]:
    """Every case of the matrix (deterministic)."""
    arterial = {"contrast": True, "contrast_phase": "arterial"}
    return [
        MatrixCase("chest-C5-L3-arterial-3mm-s1", _chest_from_neck(1, **arterial)),
        MatrixCase("chest-C5-L3-arterial-3mm-s2", _chest_from_neck(2, **arterial)),
        MatrixCase("chest-C5-L2-arterial-1mm-s3", _chest_from_neck(3, bottom="L2", thin=True, **arterial)),
        MatrixCase("chest-C5-L3-arterial-arms-3mm-s4", _chest_from_neck(4, arms_down=True, **arterial)),
        MatrixCase("chest-C5-L3-kyphosis-3mm-s5", _chest_from_neck(5, kyphosis=1.7)),
        MatrixCase("chest-C5-L3-scoliosis25-3mm-s6", _chest_from_neck(6, scoliosis_deg=25.0, **arterial)),
        MatrixCase("chest-C5-L3-thin-3mm-s7", _chest_from_neck(7, body_scale=0.8)),
        MatrixCase("long-T1-pelvis-portal-3mm-s8", abdominal_ct(
            8, shape=(200, 200, 190), top_level="T1", bottom_level="S", contrast=True, **THICK)),
        MatrixCase("abdominal-T10-S-portal-1mm-s9", abdominal_ct(
            9, shape=(200, 200, 330), top_level="T10", bottom_level="S", contrast=True, **THIN)),
        MatrixCase("abdominal-T10-S-scoliosis30-3mm-s10", abdominal_ct(
            10, shape=(200, 200, 125), scoliosis_deg=30.0, **{**THICK, "slice_spacing_mm": 3.0})),
        MatrixCase("abdominal-T10-S-obese-3mm-s11", abdominal_ct(
            11, shape=(250, 250, 125), body_scale=1.35, **THICK)),
        MatrixCase("abdominal-T10-S-arterial-3mm-s12", abdominal_ct(12, shape=(200, 200, 125), **arterial)),
        MatrixCase("chest-C5-L2-11-rib-pairs-3mm-s13", _chest_from_neck(13, bottom="L2", rib_pairs=11),
                   "review", "rib-bearing vertebrae instead of 12"),
        MatrixCase("chest-C5-L3-13-rib-pairs-3mm-s14", _chest_from_neck(14, rib_pairs=13),
                   "review", "rib-bearing vertebrae instead of 12"),
        MatrixCase("abdominal-11-rib-pairs-3mm-s15", abdominal_ct(15, shape=(200, 200, 125), rib_pairs=11),
                   "review", "anchors disagree"),
        MatrixCase("abdominal-sacralized-L5-3mm-s16", abdominal_ct(16, shape=(200, 200, 125),
                                                                   transition="sacralized-L5"),
                   "review", "rib-free vertebrae above the sacrum instead of 5"),
    ]
