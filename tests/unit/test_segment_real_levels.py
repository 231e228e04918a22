"""Level identification on real CT without the sacrum in view (../shared/data/real_ct).

- tcia_chest_abdomen_dicom: a contrast-era chest/upper-abdomen series from the heart to
  the upper lumbar spine (another vendor); the sacrum is far below. Nothing may be
  called sacrum or L3-L5, T11-T12 lie in the enhanced thorax, and the answer on the
  lower edge states its uncertainty.
- verse012_spine_crop: a VerSe spine crop (T10-L3 expert mask) without ribs or sacrum;
  with the lowest whole vertebra given, the levels agree with the expert mask and the
  fractured L1 is graded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from inference.levels import VERSE_IDS
from inference.measure import measure_study
from inference.segment import segment_volume
from inference.segment.validate import compare_levels
from inference.volume import load_volume


@pytest.fixture(scope="module")
def tcia(shared_data: Path):
    return segment_volume(load_volume(shared_data / "real_ct" / "tcia_chest_abdomen_dicom"))


def test_no_sacrum_or_lower_lumbar_label_without_a_sacrum(tcia) -> None:
    assert not {"S", "L5", "L4", "L3"} & set(tcia.levels)
    assert not any(anchor.kind == "sacrum" for anchor in tcia.anchors)


def test_thoracolumbar_levels_found_in_the_enhanced_thorax_and_the_doubt_is_stated(tcia) -> None:
    assert tcia.levels["T11"].complete and tcia.levels["T12"].complete
    assert tcia.levels["T11"].anchors == ("lowest_rib",)
    # one rib anchor and nothing to check it against: never a confident count
    assert tcia.needs_review and tcia.labelling_confidence <= 0.5
    assert any("rest on the lowest rib pair only" in w for w in tcia.warnings)
    # the lowest vertebra is cut by the lower edge: said so, not measured as if whole
    assert "L2" not in tcia.levels or not tcia.levels["L2"].complete


def test_verse_crop_with_the_lowest_level_given_matches_the_expert_mask(shared_data: Path, bench_report) -> None:
    folder = shared_data / "real_ct" / "verse012_spine_crop"
    image = load_volume(folder / "sub-verse012_ct.nii.gz")
    unlabelled = segment_volume(image)
    assert not unlabelled.complete_levels(("T11", "T12", "L1", "L2"))  # nothing to count from
    result = segment_volume(image, lowest_level="L3")
    reference = sitk.ReadImage(str(folder / "sub-verse012_seg-vert_msk.nii.gz"), sitk.sitkUInt8)
    reference.CopyInformation(image)
    rows = {row.level: row for row in compare_levels(result, reference)}
    assert all(rows[level].right for level in ("T11", "T12", "L1", "L2", "L3")), rows
    assert not result.needs_review and {a.kind for a in result.anchors} == {"given"}
    bench_report("verse012 (lowest level L3 given)",
                 **{f"{level} vertebra Dice": rows[level].vertebra_dice for level in ("T11", "T12", "L1", "L2")})
    for level in ("T11", "T12", "L1", "L2"):
        assert rows[level].vertebra_dice >= 0.7, level
    # the crop's known fracture: the L1 body is measured and graded
    study = measure_study(image, result, None)
    bench_report("verse012 L1", genant_grade=study.levels["L1"].genant_grade,
                 wedge_ratio=round(study.levels["L1"].heights.wedge_ratio, 2))
    assert study.levels["L1"].complete and study.levels["L1"].genant_grade >= 1


def test_a_given_level_that_contradicts_the_ribs_is_flagged(tcia, shared_data: Path) -> None:
    result = segment_volume(load_volume(shared_data / "real_ct" / "tcia_chest_abdomen_dicom"), lowest_level="L3")
    assert result.needs_review
    assert any(not a.agrees and a.kind == "lowest_rib" for a in result.anchors)
    labels = sitk.GetArrayFromImage(result.vertebrae)
    assert VERSE_IDS["L3"] in np.unique(labels)  # the user's word is kept, and flagged


def test_small_lumbar_crop_with_the_lowest_whole_level_given(shared_data: Path) -> None:
    """A 110 x 70 x 110 mm crop (non-axial orientation) with L2 and L4 cut by its edges: the only
    whole vertebra is named as given, and the partial ones around it follow."""
    folder = shared_data / "real_ct" / "lumbar_crop_1p5mm"
    image = load_volume(folder / "sub-ct_label-22_ct.nii.gz")
    result = segment_volume(image, lowest_level="L3")
    reference = sitk.ReadImage(str(folder / "sub-ct_seg-vert_label-22_msk.nii.gz"), sitk.sitkUInt8)
    reference.CopyInformation(image)
    rows = {row.level: row for row in compare_levels(result, reference)}
    assert rows["L3"].right and rows["L3"].reference_complete
    assert rows["L2"].right and rows["L4"].right
    assert not result.levels["L2"].complete and not result.levels["L4"].complete
