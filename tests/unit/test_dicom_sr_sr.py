"""TID 1500 SR encoder: every measurement, code and reference round-trips through highdicom."""

from __future__ import annotations

from io import BytesIO

import highdicom as hd
import pydicom
import pytest

from dicom_sr import AlgorithmInfo, EncodeError, encode_seg, encode_sr
from dicom_sr import codes
from dicom_sr.seg import segment_numbers, segment_source_instances
from dicom_sr.sr import STUDY_TRACKING_ID
from inference.levels import TARGET_LEVELS, Compartment
from tests.unit.test_dicom_sr_inputs import make_study

ALGORITHM = AlgorithmInfo(name="scpnode anatomical", version="0.3.1", model_id="anatomical-rules-2")


def _read_back(dataset: pydicom.Dataset) -> hd.sr.Comprehensive3DSR:
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return hd.sr.srread(buffer)


def _encode(calibrated: bool):
    source, segmentation, measurements = make_study((24, 48, 48), calibrated=calibrated)
    seg = encode_seg(source, segmentation, ALGORITHM)
    sr = encode_sr(source, seg, measurements, ALGORITHM)
    return source, seg, measurements, _read_back(sr)


@pytest.fixture(scope="module")
def uncalibrated():
    return _encode(calibrated=False)


@pytest.fixture(scope="module")
def calibrated():
    return _encode(calibrated=True)


def _values(group) -> dict[tuple[str, str | None], tuple[float, str]]:
    """(concept meaning, derivation meaning) -> (value, UCUM unit)."""
    found = {}
    for m in group.get_measurements():
        key = (m.name.meaning, m.derivation.meaning if m.derivation is not None else None)
        assert key not in found, f"{key} twice"
        found[key] = (m.value, m.unit.value)
    return found


def _evaluations(group) -> dict[str, str]:
    return {q.name.meaning: q.value.meaning for q in group.get_qualitative_evaluations()}


def test_sr_is_a_tid1500_report_in_the_source_study(uncalibrated) -> None:
    source, seg, _, sr = uncalibrated
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"
    assert sr.StudyInstanceUID == source[0].StudyInstanceUID
    assert sr.PatientID == source[0].PatientID
    assert sr.SeriesNumber == 901 and sr.SeriesDescription == "Osteoporosis screening SR (research use)"
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    evidence = {item.ReferencedSOPInstanceUID
                for study in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence for item in series.ReferencedSOPSequence}
    with_spine = {uid for uids in segment_source_instances(seg).values() for uid in uids}
    assert with_spine and evidence == with_spine | {seg.SOPInstanceUID}
    assert any(item.CodingSchemeDesignator == codes.PRIVATE_SCHEME for item in sr.CodingSchemeIdentificationSequence)


def test_compartment_groups_reference_their_segment_and_round_trip_every_value(uncalibrated) -> None:
    source, seg, measurements, sr = uncalibrated
    groups = {g.tracking_identifier: g for g in sr.content.get_volumetric_roi_measurement_groups()}
    numbers = segment_numbers(seg)
    tracking_uids = {int(s.SegmentNumber): s.TrackingUID for s in seg.SegmentSequence}
    source_uids = {ds.SOPInstanceUID for ds in source}
    assert len(groups) == 8
    for level_name in TARGET_LEVELS:
        level = measurements.levels[level_name]
        for comp, stats, name in ((Compartment.CORTICAL, level.cortical, "cortical"),
                                  (Compartment.CANCELLOUS, level.cancellous, "cancellous")):
            group = groups[f"{level_name} {codes.COMPARTMENT_CODES[comp].meaning.lower()}"]
            number = numbers[(level_name, comp)]
            segment = group.referenced_segment
            assert segment.referenced_sop_instance_uid == seg.SOPInstanceUID
            assert segment.referenced_segment_numbers == [number]
            referenced_sources = {item.referenced_sop_instance_uid for item in segment.source_images_for_segmentation}
            assert referenced_sources and referenced_sources <= source_uids
            assert group.tracking_uid == tracking_uids[number]
            assert group.finding_type == codes.COMPARTMENT_CODES[comp]
            assert [site.value for site in group.finding_sites] == [codes.VERTEBRA_CODES[level_name]]
            expected = {
                ("Attenuation Coefficient", "Mean"): (stats.mean_hu, "[hnsf'U]"),
                ("Attenuation Coefficient", "Median"): (stats.median_hu, "[hnsf'U]"),
                ("Attenuation Coefficient", "Standard Deviation"): (stats.sd_hu, "[hnsf'U]"),
                ("Volume", None): (stats.volume_ml, "mL"),
                ("Radiomics score", None): (level.radscores[name], "1"),
            }
            if comp is Compartment.CANCELLOUS:
                expected[(codes.VBMD.meaning, None)] = (level.vbmd_mg_cm3, "mg/cm3")
            assert _values(group) == expected
            completeness = codes.LEVEL_COMPLETE if level.complete else codes.LEVEL_INCOMPLETE
            assert _evaluations(group)[codes.LEVEL_COMPLETENESS.meaning] == completeness.meaning


def test_level_groups_hold_heights_grade_and_state_an_incomplete_level(uncalibrated) -> None:
    _, _, measurements, sr = uncalibrated
    groups = {g.tracking_identifier: g for g in sr.content.get_image_measurement_groups()}
    for level_name in TARGET_LEVELS:
        level = measurements.levels[level_name]
        group = groups[f"{level_name} vertebral body"]
        values = _values(group)
        assert values[("Attenuation Coefficient", "Mean")] == (level.body.mean_hu, "[hnsf'U]")
        assert values[("Volume", None)] == (level.body.volume_ml, "mL")
        if level.complete:
            h = level.heights
            assert values[(codes.ANTERIOR_HEIGHT.meaning, None)] == (h.anterior_mm, "mm")
            assert values[(codes.MIDDLE_HEIGHT.meaning, None)] == (h.middle_mm, "mm")
            assert values[(codes.POSTERIOR_HEIGHT.meaning, None)] == (h.posterior_mm, "mm")
            assert values[(codes.WEDGE_RATIO.meaning, None)] == (h.wedge_ratio, "{ratio}")
            assert values[(codes.BICONCAVE_RATIO.meaning, None)] == (h.biconcave_ratio, "{ratio}")
            assert values[(codes.CRUSH_RATIO.meaning, None)] == (h.crush_ratio, "{ratio}")
            assert values[(codes.GENANT_GRADE.meaning, None)] == (level.genant_grade, "1")
        else:
            assert _evaluations(group)[codes.LEVEL_COMPLETENESS.meaning] == codes.LEVEL_INCOMPLETE.meaning
            assert (codes.ANTERIOR_HEIGHT.meaning, None) not in values


def test_uncalibrated_model_is_stated_and_no_probability_is_made_up(uncalibrated) -> None:
    _, _, measurements, sr = uncalibrated
    study = {g.tracking_identifier: g for g in sr.content.get_image_measurement_groups()}[STUDY_TRACKING_ID]
    evaluations = _evaluations(study)
    assert evaluations[codes.MODEL_CALIBRATION.meaning] == codes.MODEL_UNCALIBRATED.meaning
    assert evaluations[codes.FRACTURE_RISK_CATEGORY.meaning] == codes.RISK_NOT_COMPUTED.meaning
    assert evaluations[codes.L1_ATTENUATION_CATEGORY.meaning] == codes.L1_CATEGORIES["indeterminate"].meaning
    assert evaluations[codes.VBMD_CATEGORY.meaning] == codes.VBMD_CATEGORIES["low"].meaning
    values = _values(study)
    assert (codes.FRACTURE_RISK_PROBABILITY.meaning, None) not in values
    score = measurements.score
    assert values[("Vertebral radscore", None)] == (score.radscores["vertebral"], "1")
    assert values[("Cortical radscore", None)] == (score.radscores["cortical"], "1")
    assert values[("Cancellous radscore", None)] == (score.radscores["cancellous"], "1")
    assert values[(codes.L1_ATTENUATION.meaning, None)] == (measurements.l1_attenuation_hu, "[hnsf'U]")
    assert values[(codes.MEAN_VBMD.meaning, None)] == (measurements.vbmd_mg_cm3, "mg/cm3")
    assert values[(codes.MAX_GENANT_GRADE.meaning, None)] == (measurements.max_genant_grade, "1")
    container = study[0]  # TID 4019 of the group names the model and its version
    names = {item.ConceptNameCodeSequence[0].CodeMeaning: getattr(item, "TextValue", None)
             for item in container.ContentSequence}
    assert names["Algorithm Name"] == score.model_id and names["Algorithm Version"] == score.model_version


def test_calibrated_model_reports_probability_and_category(calibrated) -> None:
    _, _, measurements, sr = calibrated
    study = {g.tracking_identifier: g for g in sr.content.get_image_measurement_groups()}[STUDY_TRACKING_ID]
    assert _values(study)[(codes.FRACTURE_RISK_PROBABILITY.meaning, None)] == (measurements.score.probability, "1")
    evaluations = _evaluations(study)
    assert evaluations[codes.FRACTURE_RISK_CATEGORY.meaning] == codes.RISK_CATEGORIES["intermediate"].meaning
    assert evaluations[codes.MODEL_CALIBRATION.meaning] == codes.MODEL_CALIBRATED.meaning


def test_bad_measurements_are_refused_with_a_reason() -> None:
    source, segmentation, measurements = make_study((24, 48, 48))
    seg = encode_seg(source, segmentation, ALGORITHM)
    measurements.levels["L1"].cancellous = type(measurements.levels["L1"].cancellous)(
        voxels=1, volume_ml=float("nan"), mean_hu=1.0, median_hu=1.0, sd_hu=0.0)
    with pytest.raises(EncodeError, match="Volume is nan"):
        encode_sr(source, seg, measurements, ALGORITHM)
    measurements = make_study((24, 48, 48), calibrated=True)[2]
    measurements.l1_attenuation_category = "dense"
    with pytest.raises(EncodeError, match="unknown L1 attenuation category 'dense'"):
        encode_sr(source, seg, measurements, ALGORITHM)


def test_names_a_site_model_defines_get_stable_private_codes() -> None:
    source, segmentation, measurements = make_study((24, 48, 48), calibrated=True)
    measurements.score.category = "very high"
    measurements.score.radscores["l1 only"] = 0.25
    measurements.score.probabilities = {"combined": 0.3125, "cortical": 0.5}
    seg = encode_seg(source, segmentation, ALGORITHM)
    sr = _read_back(encode_sr(source, seg, measurements, ALGORITHM))
    study = {g.tracking_identifier: g for g in sr.content.get_image_measurement_groups()}[STUDY_TRACKING_ID]
    (risk,) = [q.value for q in study.get_qualitative_evaluations() if q.name == codes.FRACTURE_RISK_CATEGORY]
    assert (risk.value, risk.scheme_designator, risk.meaning) == ("RC-VERY-HIGH", codes.PRIVATE_SCHEME, "very high fracture risk")
    coded = {m.name.value: m.value for m in study.get_measurements()}
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
