"""TID 1500 SR encoder: every measurement, code and reference round-trips through highdicom."""

from __future__ import annotations

from io import BytesIO

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from dicom_sr import AlgorithmInfo, EncodeError, encode_seg, encode_sr
from dicom_sr import codes
from dicom_sr.readers import read_sr
from dicom_sr.seg import segment_numbers
from inference.levels import TARGET_LEVELS, Compartment, verse_id
from tests.unit.test_dicom_sr_inputs import make_study

ALGORITHM = AlgorithmInfo(name="scpnode anatomical", version="0.3.1", model_id="anatomical-rules-2")


def _read_back(dataset: pydicom.Dataset) -> pydicom.Dataset:
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def _encode(calibrated: bool):
    source, segmentation, measurements = make_study((24, 48, 48), calibrated=calibrated)
    seg = encode_seg(source, segmentation, ALGORITHM)
    sr = encode_sr(source, seg, segmentation, measurements, ALGORITHM)
    return source, seg, segmentation, measurements, read_sr(_read_back(sr))


@pytest.fixture(scope="module")
def uncalibrated():
    return _encode(calibrated=False)


@pytest.fixture(scope="module")
def calibrated():
    return _encode(calibrated=True)


def _values(group) -> dict[tuple[str, str | None], tuple[float, str]]:
    """(concept meaning, derivation meaning) -> (value, UCUM unit)."""
    found = {}
    for m in group.measurements:
        key = (m.name.meaning, m.derivation.meaning if m.derivation is not None else None)
        assert key not in found, f"{key} twice"
        found[key] = (m.value, m.unit.value)
    return found


def _evaluations(pairs) -> dict[str, str]:
    return {name.meaning: value.meaning for name, value in pairs}


def _regions(sr) -> dict[str, pydicom.Dataset]:
    """Tracking Identifier -> the group's Image Region SCOORD item."""
    (container,) = [item for item in sr.dataset.ContentSequence
                    if item.ConceptNameCodeSequence[0].CodeValue == "126010"]
    found = {}
    for group in container.ContentSequence:
        items = {item.ConceptNameCodeSequence[0].CodeMeaning: item for item in group.ContentSequence}
        found[items["Tracking Identifier"].TextValue] = items["Image Region"]
    return found


def test_sr_is_a_tid1500_report_in_the_source_study(uncalibrated) -> None:
    source, seg, _, _, sr = uncalibrated
    ds = sr.dataset
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"
    assert ds.StudyInstanceUID == source[0].StudyInstanceUID
    assert ds.PatientID == source[0].PatientID
    assert ds.SeriesNumber == 901 and ds.SeriesDescription == "Osteoporosis screening SR (research use)"
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    evidence = {item.ReferencedSOPInstanceUID
                for study in ds.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence for item in series.ReferencedSOPSequence}
    drawn_on = {region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
                for region in _regions(sr).values()}
    assert evidence == drawn_on | {seg.SOPInstanceUID}
    assert any(item.CodingSchemeDesignator == codes.PRIVATE_SCHEME for item in ds.CodingSchemeIdentificationSequence)


def test_every_group_is_drawn_on_a_source_image_a_viewer_can_show(uncalibrated) -> None:
    """Only TID 1410 groups, each with a closed outline inside its level's body on one source slice."""
    source, _, segmentation, _, sr = uncalibrated
    assert {g.template for g in sr.groups} == {"TID 1410"} and len(sr.groups) == 12
    assert all(g.tracking_uid and g.tracking_id for g in sr.groups)
    by_uid = {ds.SOPInstanceUID: ds for ds in source}
    bodies = sitk.GetArrayFromImage(segmentation.bodies)
    compartments = sitk.GetArrayFromImage(segmentation.compartments)
    slices: dict[str, set[int]] = {}
    for tracking_id, region in _regions(sr).items():
        level = tracking_id.split()[0]
        assert region.ValueType == "SCOORD" and region.GraphicType == "POLYLINE"
        points = np.asarray(region.GraphicData, dtype=float).reshape(-1, 2)
        assert len(points) >= 4 and np.array_equal(points[0], points[-1]), "a closed outline"
        image = by_uid[region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID]
        k = int(round(segmentation.bodies.TransformPhysicalPointToIndex(
            [float(v) for v in image.ImagePositionPatient])[2]))
        slices.setdefault(level, set()).add(k)
        # Every vertex lies on a pixel edge of this level's body: inside its bounding box, give or take half a pixel.
        rows, columns = np.nonzero(bodies[k] == verse_id(level))
        assert columns.min() - 0.01 <= points[:, 0].min() and points[:, 0].max() <= columns.max() + 1.01
        assert rows.min() - 0.01 <= points[:, 1].min() and points[:, 1].max() <= rows.max() + 1.01
        if "cancellous" in tracking_id:  # the core outline encloses as many pixels as the core has on the slice
            x, y = points[:, 0], points[:, 1]
            area = 0.5 * abs(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))
            core_pixels = np.count_nonzero((bodies[k] == verse_id(level)) & (compartments[k] == 2))
            assert abs(area - core_pixels) < 0.1 * core_pixels
    # Three findings per level on three neighbouring slices: a viewer's text boxes do not overlap.
    assert all(len(ks) == 3 and max(ks) - min(ks) == 2 for ks in slices.values())


def test_compartment_groups_are_their_seg_segments_and_round_trip_every_value(uncalibrated) -> None:
    _, seg, _, measurements, sr = uncalibrated
    numbers = segment_numbers(seg)
    tracking_uids = {int(s.SegmentNumber): s.TrackingUID for s in seg.SegmentSequence}
    for level_name in TARGET_LEVELS:
        level = measurements.levels[level_name]
        for comp, stats, name in ((Compartment.CORTICAL, level.cortical, "cortical"),
                                  (Compartment.CANCELLOUS, level.cancellous, "cancellous")):
            group = sr.group(f"{level_name} {codes.COMPARTMENT_CODES[comp].meaning.lower()}")
            assert group.tracking_uid == tracking_uids[numbers[(level_name, comp)]]
            assert group.finding_type == codes.COMPARTMENT_CODES[comp]
            assert list(group.finding_sites) == [codes.VERTEBRA_CODES[level_name]]
            shown = {("Attenuation Coefficient", "Mean"): (stats.mean_hu, "[hnsf'U]"),
                     ("Volume", None): (stats.volume_ml, "mL")}
            if comp is Compartment.CANCELLOUS:
                shown[(codes.VBMD.meaning, None)] = (level.vbmd_mg_cm3, "mg/cm3")
            assert _values(group) == shown
            assert len(group.measurements) <= 4, "a viewer writes four numbers and then the finding site"
            details = {(m.name.meaning, m.derivation.meaning if m.derivation else None): (m.value, m.unit.value)
                       for m in sr.derived if m.tracking_uid == group.tracking_uid}
            assert details == {
                ("Attenuation Coefficient", "Median"): (stats.median_hu, "[hnsf'U]"),
                ("Attenuation Coefficient", "Standard Deviation"): (stats.sd_hu, "[hnsf'U]"),
                ("Radiomics score", None): (level.radscores[name], "1"),
            }
            assert all(m.finding_sites == (codes.VERTEBRA_CODES[level_name],)
                       for m in sr.derived if m.tracking_uid == group.tracking_uid)
            completeness = codes.LEVEL_COMPLETE if level.complete else codes.LEVEL_INCOMPLETE
            assert _evaluations(group.evaluations)[codes.LEVEL_COMPLETENESS.meaning] == completeness.meaning


def test_body_groups_hold_heights_and_coded_grade_and_state_an_incomplete_level(uncalibrated) -> None:
    _, _, _, measurements, sr = uncalibrated
    for level_name in TARGET_LEVELS:
        level = measurements.levels[level_name]
        group = sr.group(f"{level_name} vertebral body")
        values = _values(group)
        details = {m.name.meaning + (f" ({m.derivation.meaning})" if m.derivation else ""): m.value
                   for m in sr.derived if m.tracking_uid == group.tracking_uid}
        assert details["Attenuation Coefficient (Mean)"] == level.body.mean_hu
        assert details["Volume"] == level.body.volume_ml
        evaluations = _evaluations(group.evaluations)
        if level.complete:
            h = level.heights
            assert values == {
                (codes.ANTERIOR_HEIGHT.meaning, None): (h.anterior_mm, "mm"),
                (codes.MIDDLE_HEIGHT.meaning, None): (h.middle_mm, "mm"),
                (codes.POSTERIOR_HEIGHT.meaning, None): (h.posterior_mm, "mm"),
                (codes.MAX_HEIGHT_LOSS.meaning, None): (h.max_height_loss, "{ratio}"),
            }
            assert details[codes.WEDGE_RATIO.meaning] == h.wedge_ratio
            assert details[codes.BICONCAVE_RATIO.meaning] == h.biconcave_ratio
            assert details[codes.CRUSH_RATIO.meaning] == h.crush_ratio
            assert evaluations[codes.GENANT_GRADE_EVALUATION.meaning] == codes.GENANT_GRADES[level.genant_grade].meaning
        else:
            assert evaluations[codes.LEVEL_COMPLETENESS.meaning] == codes.LEVEL_INCOMPLETE.meaning
            assert (codes.ANTERIOR_HEIGHT.meaning, None) not in values


def test_uncalibrated_model_is_stated_and_no_probability_is_made_up(uncalibrated) -> None:
    _, _, _, measurements, sr = uncalibrated
    evaluations = _evaluations(sr.evaluations)
    assert evaluations[codes.MODEL_CALIBRATION.meaning] == codes.MODEL_UNCALIBRATED.meaning
    assert evaluations[codes.FRACTURE_RISK_CATEGORY.meaning] == codes.RISK_NOT_COMPUTED.meaning
    assert evaluations[codes.L1_ATTENUATION_CATEGORY.meaning] == codes.L1_CATEGORIES["indeterminate"].meaning
    assert evaluations[codes.VBMD_CATEGORY.meaning] == codes.VBMD_CATEGORIES["low"].meaning
    with pytest.raises(KeyError):
        sr.derived_value(codes.FRACTURE_RISK_PROBABILITY.meaning)
    score = measurements.score
    assert sr.derived_value("Vertebral radscore") == score.radscores["vertebral"]
    assert sr.derived_value("Cortical radscore") == score.radscores["cortical"]
    assert sr.derived_value("Cancellous radscore") == score.radscores["cancellous"]
    assert sr.derived_value(codes.L1_ATTENUATION.meaning) == measurements.l1_attenuation_hu
    assert sr.derived_value(codes.MEAN_VBMD.meaning) == measurements.vbmd_mg_cm3
    assert sr.derived_value(codes.MAX_GENANT_GRADE.meaning) == measurements.max_genant_grade
    (container,) = [item for item in sr.dataset.ContentSequence
                    if item.ConceptNameCodeSequence[0].CodeValue == codes.DERIVED_IMAGING_MEASUREMENTS.value]
    (radscore,) = [item for item in container.ContentSequence
                   if item.ConceptNameCodeSequence[0].CodeMeaning == "Vertebral radscore"]
    names = {item.ConceptNameCodeSequence[0].CodeMeaning: getattr(item, "TextValue", None)
             for item in radscore.ContentSequence}  # TID 4019 names the model and its version
    assert names["Algorithm Name"] == score.model_id and names["Algorithm Version"] == score.model_version


def test_calibrated_model_reports_probability_and_category(calibrated) -> None:
    _, _, _, measurements, sr = calibrated
    assert sr.derived_value(codes.FRACTURE_RISK_PROBABILITY.meaning) == measurements.score.probability
    evaluations = _evaluations(sr.evaluations)
    assert evaluations[codes.FRACTURE_RISK_CATEGORY.meaning] == codes.RISK_CATEGORIES["intermediate"].meaning
    assert evaluations[codes.MODEL_CALIBRATION.meaning] == codes.MODEL_CALIBRATED.meaning


def test_highdicom_parses_the_report_back(calibrated) -> None:
    _, _, _, _, sr = calibrated
    document = hd.sr.Comprehensive3DSR.from_dataset(sr.dataset)
    groups = document.content.get_planar_roi_measurement_groups()
    assert len(groups) == 12 and all(g.roi is not None for g in groups)


def test_bad_measurements_are_refused_with_a_reason() -> None:
    source, segmentation, measurements = make_study((24, 48, 48))
    seg = encode_seg(source, segmentation, ALGORITHM)
    measurements.levels["L1"].cancellous = type(measurements.levels["L1"].cancellous)(
        voxels=1, volume_ml=float("nan"), mean_hu=1.0, median_hu=1.0, sd_hu=0.0)
    with pytest.raises(EncodeError, match="Volume is nan"):
        encode_sr(source, seg, segmentation, measurements, ALGORITHM)
    measurements = make_study((24, 48, 48), calibrated=True)[2]
    measurements.l1_attenuation_category = "dense"
    with pytest.raises(EncodeError, match="unknown L1 attenuation category 'dense'"):
        encode_sr(source, seg, segmentation, measurements, ALGORITHM)
    measurements = make_study((24, 48, 48), calibrated=True)[2]
    measurements.levels["T12"].genant_grade = 4
    with pytest.raises(EncodeError, match="Genant grade 4"):
        encode_sr(source, seg, segmentation, measurements, ALGORITHM)


def test_a_measured_level_without_a_core_to_outline_is_refused() -> None:
    source, segmentation, measurements = make_study((24, 48, 48))
    compartments = sitk.GetArrayFromImage(segmentation.compartments)
    bodies = sitk.GetArrayFromImage(segmentation.bodies)
    compartments[(bodies == verse_id("L1")) & (compartments == 2)] = 1
    image = sitk.GetImageFromArray(compartments)
    image.CopyInformation(segmentation.compartments)
    segmentation.compartments = image
    seg = encode_seg(source, segmentation, ALGORITHM)
    with pytest.raises(EncodeError, match="L1 was measured but has no cancellous core to outline"):
        encode_sr(source, seg, segmentation, measurements, ALGORITHM)


def test_names_a_site_model_defines_get_stable_private_codes() -> None:
    source, segmentation, measurements = make_study((24, 48, 48), calibrated=True)
    measurements.score.category = "very high"
    measurements.score.radscores["l1 only"] = 0.25
    measurements.score.probabilities = {"combined": 0.3125, "cortical": 0.5}
    seg = encode_seg(source, segmentation, ALGORITHM)
    sr = read_sr(_read_back(encode_sr(source, seg, segmentation, measurements, ALGORITHM)))
    risk = sr.evaluation(codes.FRACTURE_RISK_CATEGORY.meaning)
    assert (risk.value, risk.scheme_designator, risk.meaning) == ("RC-VERY-HIGH", codes.PRIVATE_SCHEME, "very high fracture risk")
    coded = {m.name.value: m.value for m in sr.derived if m.tracking_uid is None}
    assert coded["R-L1-ONLY"] == 0.25 and coded["R001"] == measurements.score.radscores["cortical"]
    assert coded["P-COMBINED"] == 0.3125 and coded["P-CORTICAL"] == 0.5


def test_every_series_description_fits_a_long_string() -> None:
    from dicom_sr.descriptions import MAX_LENGTH, series_description
    from dicom_sr.report import REPORT_SERIES_KIND
    from dicom_sr.seg import SEG_SERIES_KIND
    from dicom_sr.sr import SR_SERIES_KIND
    from inference.results import LevelIdentification

    for kind in (SEG_SERIES_KIND, SR_SERIES_KIND, REPORT_SERIES_KIND):
        for identification in LevelIdentification:
            assert len(series_description(kind, identification, research_use=True)) <= MAX_LENGTH
    assert series_description(SEG_SERIES_KIND, LevelIdentification.NEEDS_REVIEW, research_use=True) == (
        "T11-L2 compartments SEG, LEVELS UNCONFIRMED (research use)")
