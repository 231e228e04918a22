"""Readers load third-party SEG and TID 1500 SR objects, or refuse them with a clear reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dicom_sr.errors import NonConformantObjectError
from dicom_sr.readers import read_seg, read_sr

LIVER_VOXELS = 107098
"""Foreground pixels of the pydicom-data liver SEG, the same in every transfer syntax."""


@pytest.mark.parametrize("name", [
    "liver_expb.dcm", "liver_j2k.dcm", "liver_rle.dcm", "liver_deflate.dcm",
    "liver_nonbyte_aligned.dcm", "liver_nonbyte_aligned_j2k.dcm", "liver_nonbyte_aligned_rle.dcm",
    "liver_nonbyte_aligned_deflate.dcm",
])
def test_pydicom_data_seg_decodes_identically_in_every_transfer_syntax(shared_data: Path, name: str) -> None:
    seg = read_seg(shared_data / "interop" / "pydicom-data-seg" / name)
    assert [(s.number, s.label, s.property_type.meaning) for s in seg.segments] == [(1, "Liver", "Liver")]
    assert seg.frames.shape[0] == 3 and set(np.unique(seg.frames)) == {0, 1}
    assert int(seg.frames.sum()) == LIVER_VOXELS
    assert all(len(sources) == 1 for sources in seg.frame_sources)


@pytest.mark.parametrize("relative, segments, frames", [
    ("dcmqi/segmentations/liver.dcm", 1, 3),
    ("dcmqi/segmentations/partial_overlaps.dcm", 5, 7),
    ("dcmqi/sr-example/seg.dcm", 1, 13),
    ("dcmqi/segmentations/sparse-labelmap-ppv5.dcm", 2, 2),
    ("dcmqi/segmentations/sparse-labelmap-noppv.dcm", 2, 2),
    ("highdicom/seg_image_ct_binary.dcm", 1, 3),
    ("highdicom/seg_image_ct_binary_overlap.dcm", 2, 8),
    ("highdicom/seg_image_ct_binary_fractional.dcm", 1, 3),
    ("highdicom/seg_image_ct_true_fractional.dcm", 1, 3),
    ("highdicom/seg_image_ct_binary_single_frame.dcm", 1, 1),
    ("qiicr-quantreporting/slicer_reporting_seg.dcm", 1, 3),
])
def test_third_party_segs_load(shared_data: Path, relative: str, segments: int, frames: int) -> None:
    seg = read_seg(shared_data / "interop" / relative)
    assert len(seg.segments) == segments and seg.frames.shape[0] == frames
    for info in seg.segments:
        assert info.category.value and info.property_type.value and info.algorithm_type
        if not seg.is_label_map:
            assert seg.frames_of(info.number).shape[0] >= 1
    assert seg.frames.any()


def test_shared_derivation_image_group_gives_every_frame_its_sources(shared_data: Path) -> None:
    seg = read_seg(shared_data / "interop" / "qiicr-quantreporting" / "slicer_reporting_seg.dcm")
    assert all(seg.frame_sources)


def test_siemens_syngo_via_seg_is_refused_with_a_clear_message(shared_data: Path) -> None:
    with pytest.raises(NonConformantObjectError) as refused:
        read_seg(shared_data / "interop" / "qiicr-quantreporting" / "syngo.seg.dcm")
    message = str(refused.value)
    assert "syngo.seg.dcm" in message and "Siemens" in message
    assert "Segmented Property Type Code Sequence" in message and "does not conform" in message


@pytest.mark.parametrize("relative, templates", [
    ("dcmqi/sr-example/sr.dcm", ["TID 1411"]),
    ("highdicom/sr_document.dcm", ["TID 1410"]),
    ("highdicom/sr_document_with_multiple_groups.dcm", ["TID 1410", "TID 1410", "TID 1411", "TID 1501"]),
])
def test_third_party_tid1500_reports_load(shared_data: Path, relative: str, templates: list[str]) -> None:
    sr = read_sr(shared_data / "interop" / relative)
    assert [g.template for g in sr.groups] == templates
    assert all(g.tracking_uid for g in sr.groups)
    assert any(g.measurements for g in sr.groups)


def test_dcmqi_report_references_its_seg(shared_data: Path) -> None:
    folder = shared_data / "interop" / "dcmqi" / "sr-example"
    seg, sr = read_seg(folder / "seg.dcm"), read_sr(folder / "sr.dcm")
    group = sr.group("primary tumor")
    assert len(sr.groups) == 1 and group.template == "TID 1411"
    assert group.referenced_segment == (seg.dataset.SOPInstanceUID, seg.segments[0].number)
    assert len(group.measurements) == 22


def test_objects_of_another_kind_are_refused(shared_data: Path, tmp_path: Path) -> None:
    with pytest.raises(NonConformantObjectError, match="not a Segmentation"):
        read_seg(shared_data / "interop" / "highdicom" / "ct_image.dcm")
    with pytest.raises(NonConformantObjectError, match="not a structured report"):
        read_sr(shared_data / "interop" / "highdicom" / "seg_image_ct_binary.dcm")
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom at all")
    with pytest.raises(NonConformantObjectError, match="not a readable DICOM file"):
        read_seg(junk)
