"""DICOM SEG encoder: segments, codes, references and pixels round-trip through highdicom."""

from __future__ import annotations

from io import BytesIO

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from dicom_sr import AlgorithmInfo, EncodeError, encode_seg
from dicom_sr import codes
from dicom_sr.seg import segment_numbers, segment_source_instances
from inference.levels import TARGET_LEVELS, Compartment, verse_id
from tests.unit.test_dicom_sr_inputs import make_ct_image, make_study, write_ct_datasets

ALGORITHM = AlgorithmInfo(name="scpnode anatomical", version="0.3.1", model_id="anatomical-rules-2")


def _round_trip(dataset: pydicom.Dataset) -> pydicom.Dataset:
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


@pytest.fixture(scope="module")
def study():
    return make_study((24, 48, 48))


@pytest.fixture(scope="module")
def seg(study):
    source, segmentation, _ = study
    return hd.seg.Segmentation.from_dataset(_round_trip(encode_seg(source, segmentation, ALGORITHM)))


def test_seg_belongs_to_the_source_study_as_a_new_series(study, seg) -> None:
    source = study[0]
    assert seg.StudyInstanceUID == source[0].StudyInstanceUID
    assert seg.SeriesInstanceUID != source[0].SeriesInstanceUID
    assert (seg.PatientID, seg.PatientName, seg.AccessionNumber) == ("DSR-0001", "Test^Phantom", "ACC0001")
    assert seg.SeriesNumber == 900 and "T11-L2" in seg.SeriesDescription
    assert seg.SegmentationType == "BINARY"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source[0].SeriesInstanceUID
    assert seg.FrameOfReferenceUID == source[0].FrameOfReferenceUID


def test_one_segment_per_level_and_compartment_with_codes(seg) -> None:
    expected = [(level, comp) for level in TARGET_LEVELS for comp in (Compartment.CORTICAL, Compartment.CANCELLOUS)]
    assert segment_numbers(seg) == {key: number for number, key in enumerate(expected, start=1)}
    for number, (level, comp) in enumerate(expected, start=1):
        description = seg.get_segment_description(number)
        assert description.segment_label == f"{level} {codes.COMPARTMENT_NAMES[comp]}"
        assert description.segmented_property_category == codes.ANATOMICAL_STRUCTURE
        assert description.segmented_property_type == codes.VERTEBRA_CODES[level]
        modifier = description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence[0]
        assert hd.sr.CodedConcept.from_dataset(modifier) == codes.COMPARTMENT_CODES[comp]
        assert description.algorithm_type == hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
        algorithm = description.algorithm_identification[0]
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("scpnode anatomical", "0.3.1")
        assert "model_id=anatomical-rules-2" in algorithm.AlgorithmParameters
        assert description.tracking_id.startswith(level) and hd.UID(description.tracking_uid)
        assert description.RecommendedDisplayCIELabValue
    assert seg.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == codes.PRIVATE_SCHEME
    assert {codes.VERTEBRA_CODES[name].value for name in TARGET_LEVELS} == {"12989004", "23215003", "66794005", "14293000"}


def test_pixels_round_trip_exactly_and_empty_frames_are_omitted(study, seg) -> None:
    source, segmentation, _ = study
    bodies = sitk.GetArrayFromImage(segmentation.bodies)
    compartments = sitk.GetArrayFromImage(segmentation.compartments)
    expected = np.zeros_like(bodies, dtype=np.uint8)
    for number, (level, comp) in enumerate(
            [(lv, c) for lv in TARGET_LEVELS for c in (Compartment.CORTICAL, Compartment.CANCELLOUS)], start=1):
        expected[(bodies == verse_id(level)) & (compartments == comp)] = number
    by_z = sorted(source, key=lambda ds: float(ds.ImagePositionPatient[2]))
    uids = [ds.SOPInstanceUID for ds in by_z]
    decoded = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True,
                                                skip_overlap_checks=True, assert_missing_frames_are_empty=True)
    np.testing.assert_array_equal(decoded, expected)
    occupied = [k for k in range(expected.shape[0]) if expected[k].any()]
    assert {item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence} \
        == set(uids[occupied[0]:occupied[-1] + 1]), "source images: the slices from the first to the last with spine"
    non_empty_pairs = sum(len(np.unique(expected[k][expected[k] > 0])) for k in range(expected.shape[0]))
    assert seg.NumberOfFrames == non_empty_pairs < expected.shape[0] * 8
    sources = segment_source_instances(seg)
    for number in range(1, 9):
        slices = [k for k in range(expected.shape[0]) if (expected[k] == number).any()]
        assert sorted(sources[number]) == sorted(uids[k] for k in slices)


def test_a_source_series_on_another_grid_is_refused(study) -> None:
    _, segmentation, _ = study
    other_ct, _, _ = make_ct_image((24, 40, 40))
    with pytest.raises(EncodeError, match="segmentation grid 48x48"):
        encode_seg(write_ct_datasets(other_ct), segmentation, ALGORITHM)


def test_a_segmentation_without_target_compartments_is_refused(study) -> None:
    source, segmentation, _ = study
    empty = sitk.Image(segmentation.compartments.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(segmentation.compartments)
    segmentation = type(segmentation)(vertebrae=empty, bodies=empty, compartments=empty, levels={},
                                      backend="test")
    with pytest.raises(EncodeError, match="no compartment voxels"):
        encode_seg(source, segmentation, ALGORITHM)


def test_algorithm_info_needs_every_field() -> None:
    with pytest.raises(ValueError, match="model_id"):
        AlgorithmInfo(name="x", version="1", model_id=" ")
