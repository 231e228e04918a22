"""Comprehensive 3D SR with a TID 1500 Measurement Report of the screening results.

Content (PS3.16 TID 1500), laid out so that an image viewer can draw it:

- Imaging Measurements: per level three TID 1410 Planar ROI groups, each with
  an Image Region (SCOORD, closed POLYLINE) on an axial source image near the
  body's centre (:mod:`dicom_sr.outlines`), the vertebra as finding site and
  a Tracking Identifier and UID:

  - the cancellous core: mean attenuation (HU), estimated vBMD (mg/cm3),
    volume (mL);
  - the cortical shell: mean attenuation, volume;
  - the vertebral body: anterior, middle and posterior height (mm), the
    largest fractional height loss, and the Genant grade as a coded
    evaluation.

  Core and shell carry the Tracking Identifier and UID of their SEG segment
  (PS3.3 C.8.20.4), so finding and segment are one object across SEG and SR.
  The numbers are those of the whole 3D compartment; the outline shows where
  it is.
- Derived Imaging Measurements (TID 1500 row 10), each a TID 300 measurement:
  per finding, tied to it by the same Tracking Identifier and UID and finding
  site, the remaining numbers (median and SD of attenuation, radscores, the
  body's mean attenuation and volume, the Genant height ratios); then the
  study-level numbers (L1 trabecular attenuation, mean vBMD, highest Genant
  grade, radscores, fracture-risk probabilities). Model outputs carry the
  model's TID 4019 algorithm identification.
- Qualitative Evaluations (TID 1500 row 12): the study-level coded findings
  (fracture-risk category, L1 attenuation and vBMD categories, the model's
  calibration status, how the levels were identified).

Why this layout, and not TID 1411 groups that reference the SEG segment or a
TID 1501 group without ROI, which the standard allows just as well: viewers
radiologists use draw only groups with image geometry. OHIF 3.13 skips other
groups and then fails on them ("Cannot read properties of undefined (reading
'ReferencedSOPSequence')"), so a single one keeps the whole report from being
shown. OHIF also writes at most five lines next to an outline, the group's
numbers in order and then its finding site: a group with more than four
numbers would hide which vertebra it is. What a group shows is therefore the
four numbers a reader needs first; the rest sit in the two root containers,
which viewers leave alone and text renderings (dsr2html) print in full.

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
from dicom_sr.grid import map_slices
from dicom_sr.outlines import Outline, level_outlines
from dicom_sr.seg import segment_numbers
from dicom_sr.segments import SegmentSpec
from inference.levels import TARGET_LEVELS, Compartment
from inference.results import (
    CompartmentStats,
    LevelMeasurement,
    SegmentationResult,
    StudyMeasurements,
    StudyScore,
)

SR_SERIES_KIND = "Osteoporosis screening SR"


def encode_sr(
    source_images: Sequence[Dataset],
    seg: Dataset,
    segmentation: SegmentationResult,
    measurements: StudyMeasurements,
    algorithm: AlgorithmInfo,
    *,
    series_number: int = 901,
    instance_number: int = 1,
    predecessor: Dataset | None = None,
) -> hd.sr.Comprehensive3DSR:
    """Encode the measurements of a study as a TID 1500 Measurement Report.

    Args:
        source_images: the CT instances that were measured.
        seg: the SEG written by :func:`dicom_sr.seg.encode_seg` for these
            measurements; its segments' Tracking UIDs identify the findings.
        segmentation: what was measured, on the source grid: outlined on the
            source images; its ``confirmed_by`` names the person observer.
        measurements: per-level measurements and the study score.
        algorithm: the segmentation/measurement algorithm (observer device).
        predecessor: the earlier report of this study that this one replaces
            (it must have been sent: a receiver resolves the reference).

    Raises:
        EncodeError: a measured compartment has no SEG segment or nothing to
            outline, a value is not finite, or a category is unknown.
    """
    numbers = segment_numbers(seg)
    tracking_uids = {int(item.SegmentNumber): str(item.TrackingUID) for item in seg.SegmentSequence}
    slices = map_slices(segmentation.bodies, source_images).instances
    measured = [measurements.levels[name] for name in TARGET_LEVELS if name in measurements.levels]
    outlines = level_outlines(segmentation.bodies, segmentation.compartments,
                              {level.name: level.verse_id for level in measured})
    model = _model_identification(measurements.score)

    groups: list[hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations] = []
    per_finding: list[hd.sr.Measurement] = []
    for level in measured:
        outline = outlines.get(level.name)
        if outline is None:
            raise EncodeError(f"{level.name} was measured but has no cancellous core to outline on a source image")
        for compartment, drawn in ((Compartment.CANCELLOUS, outline.core), (Compartment.CORTICAL, outline.shell)):
            stats = level.cancellous if compartment is Compartment.CANCELLOUS else level.cortical
            if stats is None:
                continue
            number = numbers.get((level.name, compartment))
            if number is None:
                raise EncodeError(f"{level.name} {codes.COMPARTMENT_NAMES[compartment]} was measured "
                                  "but the SEG has no such segment")
            finding = hd.sr.TrackingIdentifier(uid=tracking_uids[number],
                                               identifier=SegmentSpec(level.name, compartment).tracking_id)
            groups.append(_compartment_group(level, compartment, stats, _region(drawn, slices), finding, algorithm))
            per_finding += _compartment_details(level, compartment, stats, finding, model)
        finding = hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"{level.name} vertebral body")
        groups.append(_body_group(level, _region(outline.body, slices), finding, algorithm))
        per_finding += _body_details(level, finding)
    if not groups:
        raise EncodeError("no level was measured: a measurement report needs at least one finding")

    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_person_context=_person(segmentation.confirmed_by),
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
    # highdicom builds rows 1-9 of TID 1500; rows 10 and 12 are added to its root container.
    report[0].ContentSequence.extend([
        _container(codes.DERIVED_IMAGING_MEASUREMENTS, per_finding + _study_measurements(measurements, model)),
        _qualitative_evaluations(measurements),
    ])
    outlined = {str(slices[k].SOPInstanceUID) for o in outlines.values() for k in o.slice_indices}
    sr = hd.sr.Comprehensive3DSR(
        evidence=[*(ds for ds in source_images if str(ds.SOPInstanceUID) in outlined), seg],
        content=report,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=instance_number,
        manufacturer=algorithm.manufacturer,
        is_complete=True,
        previous_versions=[predecessor] if predecessor is not None else None,
    )
    _make_readable_as_text(sr)
    sr.SeriesDescription = series_description(SR_SERIES_KIND, measurements.level_identification,
                                              research_use=True)
    sr.ManufacturerModelName = algorithm.name
    sr.SoftwareVersions = algorithm.software_version
    codes.add_coding_scheme_identification(sr)
    return sr


def _make_readable_as_text(node: Dataset) -> None:
    """Mark every container SEPARATE and write numbers in their shortest form, in place.

    Many PACS show an SR as text. A CONTINUOUS container (highdicom's default)
    tells renderers such as DCMTK's dsr2html that its items continue one
    sentence, so they print the values run together without their concept
    names ("157.1 [hnsf'U] 126.2 mg/cm3"). SEPARATE items are printed as
    "Attenuation Coefficient = 157.1 [hnsf'U]". The numbers keep their value:
    a Decimal String is rewritten only where Python's shortest round-trip
    form fits its 16 characters (22.2 rather than "22.2000000000000").
    """
    if node.get("ValueType") == "CONTAINER" or "ContinuityOfContent" in node:
        node.ContinuityOfContent = "SEPARATE"
    for measured in node.get("MeasuredValueSequence", []):
        shortest = repr(float(measured.NumericValue))
        if len(shortest) <= 16:
            measured.NumericValue = shortest
    for child in node.get("ContentSequence", []):
        _make_readable_as_text(child)


def _person(login: str) -> hd.sr.ObserverContext | None:
    """TID 1003 for the person who confirmed the level labels, if one did."""
    if not login:
        return None
    return hd.sr.ObserverContext(
        observer_type=hd.sr.CodedConcept.from_code(codes.PERSON_OBSERVER),
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
            # The node knows its users by login name only: that name as the family
            # name, the caret saying that a one-component name is meant (PS3.5 6.2.1.2).
            name=f"{login}^",
            login_name=login),
    )


def _region(outline: Outline, slices: Sequence[Dataset]) -> hd.sr.ImageRegion:
    image = slices[outline.slice_index]
    return hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=outline.points,
        source_image=hd.sr.SourceImageForRegion(str(image.SOPClassUID), str(image.SOPInstanceUID)),
    )


def _compartment_group(
    level: LevelMeasurement,
    compartment: Compartment,
    stats: CompartmentStats,
    region: hd.sr.ImageRegion,
    finding: hd.sr.TrackingIdentifier,
    algorithm: AlgorithmInfo,
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """TID 1410 for one compartment of one level: mean attenuation, vBMD (core), volume."""
    values = [_measurement(codes.ATTENUATION, stats.mean_hu, codes.HU, derivation=codes.MEAN)]
    if compartment is Compartment.CANCELLOUS:
        values.append(_measurement(codes.VBMD, level.vbmd_mg_cm3, codes.MG_PER_CM3))
    values.append(_measurement(codes.VOLUME, stats.volume_ml, codes.MILLILITER))
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=finding,
        referenced_region=region,
        finding_type=codes.COMPARTMENT_CODES[compartment],
        finding_category=codes.ANATOMICAL_STRUCTURE,
        finding_sites=[hd.sr.FindingSite(codes.VERTEBRA_CODES[level.name])],
        algorithm_id=algorithm.sr_identification(),
        measurements=[m for m in values if m is not None],
        qualitative_evaluations=[_completeness(level)],
    )


def _body_group(
    level: LevelMeasurement, region: hd.sr.ImageRegion, finding: hd.sr.TrackingIdentifier, algorithm: AlgorithmInfo
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """TID 1410 for the vertebral body of one level: heights, height loss, Genant grade."""
    values: list[hd.sr.Measurement | None] = []
    if level.heights is not None:
        h = level.heights
        values += [
            _measurement(codes.ANTERIOR_HEIGHT, h.anterior_mm, codes.MILLIMETER),
            _measurement(codes.MIDDLE_HEIGHT, h.middle_mm, codes.MILLIMETER),
            _measurement(codes.POSTERIOR_HEIGHT, h.posterior_mm, codes.MILLIMETER),
            _measurement(codes.MAX_HEIGHT_LOSS, h.max_height_loss, codes.RATIO),
        ]
    evaluations = [_completeness(level)]
    if level.genant_grade is not None:
        if level.genant_grade not in codes.GENANT_GRADES:
            raise EncodeError(f"{level.name} Genant grade {level.genant_grade} is not 0, 1, 2 or 3")
        evaluations.insert(0, hd.sr.QualitativeEvaluation(codes.GENANT_GRADE_EVALUATION,
                                                          codes.GENANT_GRADES[level.genant_grade]))
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=finding,
        referenced_region=region,
        finding_category=codes.ANATOMICAL_STRUCTURE,
        finding_sites=[hd.sr.FindingSite(codes.VERTEBRA_CODES[level.name])],
        algorithm_id=algorithm.sr_identification([f"level_anchors={'+'.join(level.anchors) or 'none'}",
                                                  *algorithm.level_notes.get(level.name, ())]),
        measurements=[m for m in values if m is not None],
        qualitative_evaluations=evaluations,
    )


def _compartment_details(
    level: LevelMeasurement,
    compartment: Compartment,
    stats: CompartmentStats,
    finding: hd.sr.TrackingIdentifier,
    model: hd.sr.AlgorithmIdentification | None,
) -> list[hd.sr.Measurement]:
    """TID 300 items of one compartment beyond what its group shows: median and SD, radscore."""
    site = [hd.sr.FindingSite(codes.VERTEBRA_CODES[level.name])]
    values = [
        _measurement(codes.ATTENUATION, stats.median_hu, codes.HU, derivation=codes.MEDIAN,
                     finding=finding, sites=site),
        _measurement(codes.ATTENUATION, stats.sd_hu, codes.HU, derivation=codes.STANDARD_DEVIATION,
                     finding=finding, sites=site),
        _measurement(codes.RADSCORE, level.radscores.get(codes.COMPARTMENT_NAMES[compartment]), codes.NO_UNITS,
                     algorithm_id=model, finding=finding, sites=site),
    ]
    return [m for m in values if m is not None]


def _body_details(level: LevelMeasurement, finding: hd.sr.TrackingIdentifier) -> list[hd.sr.Measurement]:
    """TID 300 items of one vertebral body beyond what its group shows: density, volume, Genant ratios."""
    site = [hd.sr.FindingSite(codes.VERTEBRA_CODES[level.name])]
    values: list[hd.sr.Measurement | None] = []
    if level.body is not None:
        values += [
            _measurement(codes.ATTENUATION, level.body.mean_hu, codes.HU, derivation=codes.MEAN,
                         finding=finding, sites=site),
            _measurement(codes.VOLUME, level.body.volume_ml, codes.MILLILITER, finding=finding, sites=site),
        ]
    if level.heights is not None:
        h = level.heights
        values += [
            _measurement(codes.WEDGE_RATIO, h.wedge_ratio, codes.RATIO, finding=finding, sites=site),
            _measurement(codes.BICONCAVE_RATIO, h.biconcave_ratio, codes.RATIO, finding=finding, sites=site),
            _measurement(codes.CRUSH_RATIO, h.crush_ratio, codes.RATIO, finding=finding, sites=site),
        ]
    return [m for m in values if m is not None]


def _study_measurements(
    measurements: StudyMeasurements, model: hd.sr.AlgorithmIdentification | None
) -> list[hd.sr.Measurement]:
    """TID 300 items of the study as a whole."""
    score = measurements.score
    values: list[hd.sr.Measurement | None] = [
        _measurement(codes.L1_ATTENUATION, measurements.l1_attenuation_hu, codes.HU),
        _measurement(codes.MEAN_VBMD, measurements.vbmd_mg_cm3, codes.MG_PER_CM3),
        _measurement(codes.MAX_GENANT_GRADE, measurements.max_genant_grade, codes.NO_UNITS),
    ]
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
        for name, value in score.class_probabilities.items():
            concept = codes.model_defined_code("C", name, {}, codes.CLASS_PROBABILITY.format(name=name))
            values.append(_measurement(concept, value, codes.NO_UNITS, algorithm_id=model))
    return [m for m in values if m is not None]


def _qualitative_evaluations(measurements: StudyMeasurements) -> hd.sr.ContainerContentItem:
    """TID 1500 row 12: the study-level coded findings."""
    score = measurements.score
    evaluations: list[hd.sr.QualitativeEvaluation] = []
    risk = (codes.model_defined_code("RC", score.category, codes.RISK_CATEGORIES, f"{score.category} fracture risk")
            if score is not None and score.category is not None else codes.RISK_NOT_COMPUTED)
    evaluations.append(hd.sr.QualitativeEvaluation(codes.FRACTURE_RISK_CATEGORY, risk))
    if measurements.l1_attenuation_category is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(codes.L1_ATTENUATION_CATEGORY, _category(
            codes.L1_CATEGORIES, measurements.l1_attenuation_category, "L1 attenuation category")))
    if measurements.vbmd_category is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(codes.VBMD_CATEGORY, _category(
            codes.VBMD_CATEGORIES, measurements.vbmd_category, "vBMD category")))
    if score is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(
            codes.MODEL_CALIBRATION, codes.MODEL_CALIBRATED if score.calibrated else codes.MODEL_UNCALIBRATED))
        if score.predicted_class is not None:
            evaluations.append(hd.sr.QualitativeEvaluation(codes.PREDICTED_CLASS, codes.model_defined_code(
                "CL", score.predicted_class, {}, score.predicted_class)))
        if score.class_probabilities:
            evaluations.append(hd.sr.QualitativeEvaluation(codes.INTENDED_USE, codes.RESEARCH_USE_ONLY))
    evaluations.append(hd.sr.QualitativeEvaluation(codes.LEVEL_IDENTIFICATION, _category(
        codes.LEVEL_IDENTIFICATION_VALUES, measurements.level_identification.value, "level identification")))
    return _container(codes.QUALITATIVE_EVALUATIONS, evaluations)


def _container(name: Code, templates: Sequence[hd.sr.Template]) -> hd.sr.ContainerContentItem:
    container = hd.sr.ContainerContentItem(name=name, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    container.ContentSequence = hd.sr.ContentSequence([item for template in templates for item in template])
    return container


def _model_identification(score: StudyScore | None) -> hd.sr.AlgorithmIdentification | None:
    """TID 4019 for the radscore model: its id as name, its version, its calibration."""
    if score is None:
        return None
    return hd.sr.AlgorithmIdentification(
        name=score.model_id, version=score.model_version,
        parameters=[f"calibrated={'yes' if score.calibrated else 'no'}",
                    *(["output=class probabilities, research use only"] if score.class_probabilities else [])],
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
    finding: hd.sr.TrackingIdentifier | None = None,
    sites: Sequence[hd.sr.FindingSite] | None = None,
) -> hd.sr.Measurement | None:
    """A TID 300 measurement, or None when the value was not measured.

    ``finding`` and ``sites`` tie an item outside its measurement group to the finding it belongs to.
    """
    if value is None:
        return None
    if not math.isfinite(value):
        raise EncodeError(f"{name.meaning} is {value}, not a finite number")
    return hd.sr.Measurement(name=name, value=float(value), unit=unit, derivation=derivation,
                             algorithm_id=algorithm_id, tracking_identifier=finding, finding_sites=sites)
