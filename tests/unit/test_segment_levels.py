"""Level identification from rib/sacrum evidence, and the per-level description (completeness)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk

from inference.segment.anchors import VertebraEvidence, identify_levels
from inference.segment.levels import describe_levels

BOTH = frozenset({"left", "right"})


def _spine(ribbed: int, lumbar: int, *, sacrum: bool = True, reach: float = 120.0,
           cervical: int = 0) -> list[VertebraEvidence]:
    """`cervical` rib-free segments, `ribbed` rib-bearing ones, `lumbar` rib-free ones, then the sacrum."""
    segments = [VertebraEvidence(i + 1) for i in range(cervical)]
    segments += [VertebraEvidence(cervical + i + 1, BOTH, reach) for i in range(ribbed)]
    segments += [VertebraEvidence(cervical + ribbed + i + 1) for i in range(lumbar)]
    if sacrum:
        segments.append(VertebraEvidence(cervical + ribbed + lumbar + 1, sacrum_like=True))
    return segments


def test_ribs_and_sacrum_agree():
    result = identify_levels(_spine(3, 5))
    assert [result.names[k] for k in (3, 4, 5, 8, 9)] == ["T12", "L1", "L2", "L5", "S"]
    assert result.evidence == "sacrum+lowest_rib" and not result.needs_review and result.confidence > 0.9
    assert result.level_anchors[3] == ("sacrum", "lowest_rib")
    assert all(anchor.agrees for anchor in result.anchors)


def test_eleven_rib_pairs_or_lumbar_rib_are_flagged_for_review():
    six_free = identify_levels(_spine(2, 6))  # T12 without ribs (11 pairs), or L6
    assert six_free.needs_review and "anchors disagree" in six_free.warnings[0]
    assert "6 rib-free vertebrae above the sacrum instead of 5" in six_free.warnings[0]
    assert six_free.names[3] == "T12"  # counted from the sacrum
    assert [a.kind for a in six_free.anchors if not a.agrees] == ["lowest_rib"]
    four_free = identify_levels(_spine(4, 4))  # lumbar rib on L1, or sacralised L5
    assert four_free.needs_review and four_free.names[4] == "L1"


def test_first_and_lowest_rib_pairs_agree_without_the_sacrum():
    """A chest CT from the neck: C7 rib-free above the first rib pair, 12 rib pairs, L1-L2 below."""
    result = identify_levels(_spine(12, 2, sacrum=False, cervical=3))
    assert result.names[4] == "T1" and result.names[15] == "T12" and result.names[17] == "L2"
    assert result.evidence == "lowest_rib+first_rib" and not result.needs_review and result.confidence > 0.9


def test_first_and_lowest_rib_pairs_that_disagree_say_so():
    result = identify_levels(_spine(11, 2, sacrum=False, cervical=2))  # 11 rib-bearing vertebrae
    assert result.needs_review and result.confidence <= 0.5
    assert any("11 rib-bearing vertebrae instead of 12" in w for w in result.warnings)
    assert result.names[13] == "T12"  # the lowest rib is the shorter count to the junction


def test_the_majority_of_anchors_decides_and_the_odd_one_is_named():
    segments = _spine(13, 5, cervical=2)  # 13 rib-bearing vertebrae, sacrum agrees with the lowest rib
    result = identify_levels(segments)
    assert result.needs_review and result.names[15] == "T12" and result.names[21] == "S"
    disagreeing = [a for a in result.anchors if not a.agrees]
    assert [a.kind for a in disagreeing] == ["first_rib"]
    assert any("the first rib pair (T1) lies 1 vertebra higher than expected" in w for w in result.warnings)


def test_ribs_only_label_at_lower_confidence_and_ask_for_review():
    """One rib anchor and nothing to check it against: labelled, never a confident count."""
    result = identify_levels(_spine(3, 3, sacrum=False))
    assert result.names[3] == "T12" and result.names[6] == "L3"
    assert result.needs_review and result.confidence <= 0.5
    assert any("rest on the lowest rib pair only" in w for w in result.warnings)


def test_sacrum_only_labels_without_review():
    result = identify_levels(_spine(0, 5))
    assert result.names[5] == "L5" and not result.needs_review and result.confidence == 0.85
    assert any("rest on the sacrum only" in w for w in result.warnings)


def test_a_given_lowest_level_names_a_crop_without_ribs_or_sacrum():
    segments = [VertebraEvidence(i + 1) for i in range(6)]
    result = identify_levels(segments, lowest_level="L3")
    assert [result.names[k] for k in range(1, 7)] == ["T10", "T11", "T12", "L1", "L2", "L3"]
    assert not result.needs_review and result.evidence == "given"


def test_a_given_level_that_contradicts_the_image_is_kept_but_flagged():
    result = identify_levels(_spine(3, 5), lowest_level="L5")  # the image says S
    assert result.names[9] == "L5" and result.needs_review
    assert any("anchors disagree" in w for w in result.warnings)


def test_short_lowest_rib_is_flagged():
    result = identify_levels(_spine(3, 3, sacrum=False, reach=45.0))
    assert result.needs_review and any("short" in w for w in result.warnings)


def _with_rib_ends(segments: list[VertebraEvidence], *front_mm: float) -> list[VertebraEvidence]:
    """Give the lowest rib-bearing segments (lowest last) these rib ends in front of the mid-coronal plane."""
    ribbed = [e.index for e in segments if e.rib_sides]
    ends = dict(zip(ribbed[-len(front_mm):], front_mm, strict=True))
    return [replace(e, rib_front_mm=ends[e.index]) if e.index in ends else e for e in segments]


def test_usual_rib_lengths_raise_no_flag():
    result = identify_levels(_with_rib_ends(_spine(3, 5), 35.0, -12.0))  # 11th long, 12th short
    assert not result.needs_review and result.confidence > 0.9 and not result.warnings


def test_a_long_lowest_rib_pair_is_flagged_as_possible_eleven_pairs():
    result = identify_levels(_with_rib_ends(_spine(3, 3, sacrum=False), 65.0, 35.0))
    assert result.needs_review and any("possible 11 rib pairs" in w for w in result.warnings)


def test_two_short_lowest_rib_pairs_are_flagged_even_when_the_sacrum_count_agrees():
    result = identify_levels(_with_rib_ends(_spine(3, 5), -11.0, -31.0))  # 12th and 13th ribs
    assert result.needs_review and result.confidence < 0.9
    assert any("possible 13 rib pairs" in w for w in result.warnings)
    assert result.names[8] == "L5"  # lumbar levels still counted from the sacrum


def _with_body_volumes(segments: list[VertebraEvidence], volumes_ml: list[float]) -> list[VertebraEvidence]:
    """The first segments get these body volumes (the sacrum keeps none)."""
    return [replace(e, body_ml=v) for e, v in zip(segments, volumes_ml, strict=False)] + segments[len(volumes_ml):]


def test_steadily_growing_bodies_and_a_crushed_one_raise_no_flag():
    volumes = [30.0, 31.0, 32.0, 18.0, 34.0, 35.0, 36.0, 37.0]  # the 4th crushed (grade 3)
    result = identify_levels(_with_body_volumes(_spine(3, 5), volumes))
    assert not result.needs_review and not result.warnings


def test_a_body_as_large_as_two_is_flagged_as_a_missed_disc():
    volumes = [30.0, 31.0, 32.0, 66.0, 35.0, 36.0, 37.0, 38.0]
    result = identify_levels(_with_body_volumes(_spine(3, 5), volumes))
    assert result.needs_review and result.confidence < 0.9
    assert any("missed disc" in w for w in result.warnings)


def test_two_half_bodies_are_flagged_as_a_vertebra_cut_in_two():
    volumes = [30.0, 31.0, 32.0, 16.0, 17.0, 34.0, 35.0, 36.0]
    result = identify_levels(_with_body_volumes(_spine(3, 5), volumes))
    assert result.needs_review and any("cut in two" in w for w in result.warnings)


def test_no_evidence_names_nothing():
    result = identify_levels([VertebraEvidence(1), VertebraEvidence(2), VertebraEvidence(3)])
    assert result.names == {} and result.needs_review
    assert "cannot be identified" in result.warnings[-1]


def test_an_unknown_given_level_is_refused():
    with pytest.raises(ValueError, match="unknown level"):
        identify_levels([VertebraEvidence(1)], lowest_level="L9")


def test_ribs_on_the_last_vertebra_in_view_are_inconclusive():
    segments = [VertebraEvidence(1, BOTH, 120.0), VertebraEvidence(2, cut_by_edge=True)]
    result = identify_levels(segments)
    assert result.names == {} and any("inconclusive" in w for w in result.warnings)


def _labels(array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing((1.0, 1.0, 3.0))
    return image


def test_describe_levels_reports_a_body_cut_by_the_scan_edge():
    array = np.zeros((20, 30, 30), np.uint8)
    array[0:6, 10:20, 10:20] = 19  # T12 touching slice 0 (inferior in LPS)
    array[9:16, 10:20, 10:20] = 18  # T11 inside
    image = _labels(array)
    description = describe_levels(image, image, default_confidence=0.8)
    assert description.levels["T11"].complete and description.levels["T11"].confidence == 0.8
    t12 = description.levels["T12"]
    assert not t12.complete and "inferior edge" in t12.reason
    assert description.not_in_view == ["L1", "L2"]
    assert description.levels["T11"].voxels == 7 * 10 * 10


def test_describe_levels_without_targets_says_not_in_view():
    image = _labels(np.zeros((5, 10, 10)))
    description = describe_levels(image, image)
    assert description.levels == {} and description.not_in_view == ["T11", "T12", "L1", "L2"]
    assert "none of T11-L2" in description.warnings[0]
