"""Comprehensive 3D SR with a TID 1500 Measurement Report of the screening results.

Content (PS3.16 TID 1500):

- per level and compartment a TID 1411 Volumetric ROI group that references
  the matching SEG segment (and the source instances it was derived from),
  with the vertebra as finding site and the compartment as finding type:
  attenuation mean/median/SD (HU), volume (mL), estimated vBMD (cancellous
  core, mg/cm3), the compartment radscore, and the level's completeness;
- per level a TID 1501 group for the vertebral body as a whole: heights
  (mm), Genant ratios, Genant grade, completeness;
- one TID 1501 group with the study-level results: study radscores, fracture
  risk probability and category, L1 attenuation and category, mean vBMD and
  category, highest Genant grade, the model's calibration status and how
  the levels were identified, with the model id/version as TID 4019
  algorithm identification.

An incomplete level, an uncalibrated model and level labels that need review
are stated as coded qualitative evaluations (:mod:`dicom_sr.codes`), never left
out silently. Labels a person confirmed name that person as a second observer
(TID 1003 Person Observer Identifying Attributes) next to the device. A report
that corrects one already sent names it in the Predecessor Documents Sequence
(PS3.3 C.17.2.3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from dicom_sr import codes
from dicom_sr.algorithm import AlgorithmInfo
from dicom_sr.descriptions import series_description
from dicom_sr.errors import EncodeError
from dicom_sr.seg import segment_numbers, segment_source_instances
from dicom_sr.segments import SegmentSpec
from inference.levels import TARGET_LEVELS, Compartment
from inference.results import CompartmentStats, LevelMeasurement, StudyMeasurements, StudyScore

SR_SERIES_KIND = "Osteoporosis screening SR"

STUDY_TRACKING_ID = "Study-level osteoporosis screening results"


def encode_sr(
    source_images: Sequence[Dataset],
    seg: Dataset,
    measurements: StudyMeasurements,
    algorithm: AlgorithmInfo,
    *,
    series_number: int = 901,
    instance_number: int = 1,
    levels_confirmed_by: str = "",
    predecessor: Dataset | None = None,
) -> hd.sr.Comprehensive3DSR:
    """Encode the measurements of a study as a TID 1500 Measurement Report.

    Args:
        source_images: the CT instances that were measured.
        seg: the SEG written by :func:`dicom_sr.seg.encode_seg` for these
            measurements; its segments are referenced by the ROI groups.
        measurements: per-level measurements and the study score.
        algorithm: the segmentation/measurement algorithm (observer device).
        levels_confirmed_by: the person who confirmed the level labels, if one did.
        predecessor: the earlier report of this study that this one replaces
            (it must have been sent: a receiver resolves the reference).

    Raises:
        EncodeError: a measured compartment has no SEG segment, a value is
            not finite, or a category is unknown.
    """
    numbers = segment_numbers(seg)
    sources = segment_source_instances(seg)
    tracking_uids = {int(item.SegmentNumber): str(item.TrackingUID) for item in seg.SegmentSequence}
    ct_class = {str(ds.SOPInstanceUID): str(ds.SOPClassUID) for ds in source_images}
    model = _model_identification(measurements.score)

    groups: list = []
    for name in TARGET_LEVELS:
        level = measurements.levels.get(name)
        if level is None:
            continue
        for compartment in (Compartment.CORTICAL, Compartment.CANCELLOUS):
            stats = _compartment_stats(level, compartment)
            if stats is None:
                continue
            number = numbers.get((name, compartment))
            if number is None:
                raise EncodeError(f"{name} {codes.COMPARTMENT_NAMES[compartment]} was measured but the SEG has no such segment")
            referenced = hd.sr.ReferencedSegment(
                sop_class_uid=seg.SOPClassUID,
                sop_instance_uid=seg.SOPInstanceUID,
                segment_number=number,
                source_images=[hd.sr.SourceImageForSegmentation(ct_class[uid], uid)
                               for uid in sources.get(number, []) if uid in ct_class],
            )
            groups.append(_compartment_group(level, compartment, stats, referenced,
                                             tracking_uids[number], algorithm, model))
        groups.append(_level_group(level, algorithm))
    groups.append(_study_group(measurements, model))

    person = None
    if levels_confirmed_by:
        person = hd.sr.ObserverContext(
            observer_type=hd.sr.CodedConcept.from_code(codes.PERSON_OBSERVER),
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                # The node knows its users by login name only: that name as the family
                # name, the caret saying that a one-component name is meant (PS3.5 6.2.1.2).
                name=f"{levels_confirmed_by}^",
                login_name=levels_confirmed_by),
        )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_person_context=person,
            observer_device_context=hd.sr.ObserverContext(
                observer_type=hd.sr.CodedConcept.from_code(codes.DEVICE_OBSERVER),
                observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                    uid=algorithm.device_uid,
                    name=algorithm.name,
                    manufacturer_name=algorithm.manufacturer,
                    model_name=algorithm.model_id,
                ),
            )
        ),
        procedure_reported=codes.IMAGING_PROCEDURE,
        imaging_measurements=groups,
    )
    # Evidence: the SEG and the source instances the content references.
    referenced_uids = {uid for uids in sources.values() for uid in uids}
    sr = hd.sr.Comprehensive3DSR(
        evidence=[*(ds for ds in source_images if ds.SOPInstanceUID in referenced_uids), seg],
        content=report,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=instance_number,
        manufacturer=algorithm.manufacturer,
        is_complete=True,
        previous_versions=[predecessor] if predecessor is not None else None,
    )
    sr.SeriesDescription = series_description(SR_SERIES_KIND, measurements.level_identification,
                                              research_use=True)
    sr.ManufacturerModelName = algorithm.name
    sr.SoftwareVersions = algorithm.software_version
    codes.add_coding_scheme_identification(sr)
    return sr


def _compartment_stats(level: LevelMeasurement, compartment: Compartment) -> CompartmentStats | None:
    return level.cortical if compartment is Compartment.CORTICAL else level.cancellous


def _compartment_group(
    level: LevelMeasurement,
    compartment: Compartment,
    stats: CompartmentStats,
    referenced: hd.sr.ReferencedSegment,
    tracking_uid: str,
    algorithm: AlgorithmInfo,
    model: hd.sr.AlgorithmIdentification | None,
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    """TID 1411 for one compartment of one level."""
    spec = SegmentSpec(level.name, compartment)
    site = [hd.sr.FindingSite(codes.VERTEBRA_CODES[level.name])]
    values = [
        _measurement(codes.ATTENUATION, stats.mean_hu, codes.HU, derivation=codes.MEAN),
        _measurement(codes.ATTENUATION, stats.median_hu, codes.HU, derivation=codes.MEDIAN),
        _measurement(codes.ATTENUATION, stats.sd_hu, codes.HU, derivation=codes.STANDARD_DEVIATION),
        _measurement(codes.VOLUME, stats.volume_ml, codes.MILLILITER),
    ]
    if compartment is Compartment.CANCELLOUS:
        values.append(_measurement(codes.VBMD, level.vbmd_mg_cm3, codes.MG_PER_CM3))
    values.append(_measurement(codes.RADSCORE, level.radscores.get(spec.compartment_name), codes.NO_UNITS,
                               algorithm_id=model))
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=tracking_uid, identifier=spec.tracking_id),
        referenced_segment=referenced,
        finding_type=codes.COMPARTMENT_CODES[compartment],
        finding_category=codes.ANATOMICAL_STRUCTURE,
        finding_sites=site,
        algorithm_id=algorithm.sr_identification(),
        measurements=[m for m in values if m is not None],
        qualitative_evaluations=[_completeness(level)],
    )


def _level_group(level: LevelMeasurement, algorithm: AlgorithmInfo) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """TID 1501 for the vertebral body of one level: heights, Genant ratios and grade."""
    values: list[hd.sr.Measurement | None] = []
    if level.body is not None:
        values += [
            _measurement(codes.ATTENUATION, level.body.mean_hu, codes.HU, derivation=codes.MEAN),
            _measurement(codes.VOLUME, level.body.volume_ml, codes.MILLILITER),
        ]
    if level.heights is not None:
        h = level.heights
        values += [
            _measurement(codes.ANTERIOR_HEIGHT, h.anterior_mm, codes.MILLIMETER),
            _measurement(codes.MIDDLE_HEIGHT, h.middle_mm, codes.MILLIMETER),
            _measurement(codes.POSTERIOR_HEIGHT, h.posterior_mm, codes.MILLIMETER),
            _measurement(codes.WEDGE_RATIO, h.wedge_ratio, codes.RATIO),
            _measurement(codes.BICONCAVE_RATIO, h.biconcave_ratio, codes.RATIO),
            _measurement(codes.CRUSH_RATIO, h.crush_ratio, codes.RATIO),
            _measurement(codes.MAX_HEIGHT_LOSS, h.max_height_loss, codes.RATIO),
        ]
    values.append(_measurement(codes.GENANT_GRADE, level.genant_grade, codes.NO_UNITS))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"{level.name} vertebral body"),
        finding_category=codes.ANATOMICAL_STRUCTURE,
        finding_sites=[hd.sr.FindingSite(codes.VERTEBRA_CODES[level.name])],
        algorithm_id=algorithm.sr_identification([f"level_anchors={'+'.join(level.anchors) or 'none'}"]),
        measurements=[m for m in values if m is not None],
        qualitative_evaluations=[_completeness(level)],
    )


def _study_group(
    measurements: StudyMeasurements, model: hd.sr.AlgorithmIdentification | None
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """TID 1501 with the study-level results."""
    score = measurements.score
    values: list[hd.sr.Measurement | None] = [
        _measurement(codes.L1_ATTENUATION, measurements.l1_attenuation_hu, codes.HU),
        _measurement(codes.MEAN_VBMD, measurements.vbmd_mg_cm3, codes.MG_PER_CM3),
        _measurement(codes.MAX_GENANT_GRADE, measurements.max_genant_grade, codes.NO_UNITS),
    ]
    evaluations: list[hd.sr.QualitativeEvaluation] = []
    if score is not None:
        for key, value in score.radscores.items():
            concept = codes.model_defined_code("R", key, codes.RADSCORE_SCOPES, f"{key.capitalize()} radscore")
            values.append(_measurement(concept, value, codes.NO_UNITS, algorithm_id=model))
        values.append(_measurement(codes.FRACTURE_RISK_PROBABILITY, score.probability, codes.NO_UNITS,
                                   algorithm_id=model))
        for name, value in score.probabilities.items():
            concept = codes.model_defined_code(
                "P", name, {}, codes.FRACTURE_RISK_PROBABILITY_BY_OUTPUT.format(name=name))
            values.append(_measurement(concept, value, codes.NO_UNITS, algorithm_id=model))
        evaluations.append(hd.sr.QualitativeEvaluation(
            codes.MODEL_CALIBRATION, codes.MODEL_CALIBRATED if score.calibrated else codes.MODEL_UNCALIBRATED))
    risk = (codes.model_defined_code("RC", score.category, codes.RISK_CATEGORIES, f"{score.category} fracture risk")
            if score is not None and score.category is not None else codes.RISK_NOT_COMPUTED)
    evaluations.append(hd.sr.QualitativeEvaluation(codes.FRACTURE_RISK_CATEGORY, risk))
    if measurements.l1_attenuation_category is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(codes.L1_ATTENUATION_CATEGORY, _category(
            codes.L1_CATEGORIES, measurements.l1_attenuation_category, "L1 attenuation category")))
    if measurements.vbmd_category is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(codes.VBMD_CATEGORY, _category(
            codes.VBMD_CATEGORIES, measurements.vbmd_category, "vBMD category")))
    evaluations.append(hd.sr.QualitativeEvaluation(codes.LEVEL_IDENTIFICATION, _category(
        codes.LEVEL_IDENTIFICATION_VALUES, measurements.level_identification.value, "level identification")))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=STUDY_TRACKING_ID),
        algorithm_id=model,
        measurements=[m for m in values if m is not None],
        qualitative_evaluations=evaluations,
    )


def _model_identification(score: StudyScore | None) -> hd.sr.AlgorithmIdentification | None:
    """TID 4019 for the radscore model: its id as name, its version, its calibration."""
    if score is None:
        return None
    return hd.sr.AlgorithmIdentification(
        name=score.model_id, version=score.model_version,
        parameters=[f"calibrated={'yes' if score.calibrated else 'no'}"],
    )


def _completeness(level: LevelMeasurement) -> hd.sr.QualitativeEvaluation:
    return hd.sr.QualitativeEvaluation(
        codes.LEVEL_COMPLETENESS, codes.LEVEL_COMPLETE if level.complete else codes.LEVEL_INCOMPLETE)


def _category(table: dict[str, Code], value: str, what: str) -> Code:
    try:
        return codes.category_code(table, value, what)
    except ValueError as exc:
        raise EncodeError(str(exc)) from None


def _measurement(
    name: Code,
    value: float | int | None,
    unit: Code,
    *,
    derivation: Code | None = None,
    algorithm_id: hd.sr.AlgorithmIdentification | None = None,
) -> hd.sr.Measurement | None:
    """A TID 300 measurement, or None when the value was not measured."""
    if value is None:
        return None
    if not math.isfinite(value):
        raise EncodeError(f"{name.meaning} is {value}, not a finite number")
    return hd.sr.Measurement(name=name, value=float(value), unit=unit, derivation=derivation,
                             algorithm_id=algorithm_id)
