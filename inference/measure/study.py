"""``measure_study``: density, vBMD, heights, Genant grades, radiomics and scores of one CT."""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from inference.levels import LEVEL_NAMES, TARGET_LEVELS, Compartment, verse_id
from inference.measure.calibration import CalibrationError, InternalCalibration, internal_calibration
from inference.measure.categories import l1_attenuation_category, vbmd_category
from inference.measure.density import compartment_stats, trabecular_region
from inference.measure.heights import BodyGeometry, body_geometry, measure_heights
from inference.models import RadscoreModel
from inference.radiomics import PAD_MM, Profile, RadiomicsError, extract_features, get_profile
from inference.results import LevelMeasurement, SegmentationResult, StudyMeasurements

VOIS = ("cortical", "cancellous", "body")
"""The volumes of interest of one vertebra that radiomics can be extracted from."""


def measure_study(image: sitk.Image, seg: SegmentationResult, model: RadscoreModel | None, *,
                  extract_all: str | None = None, levels: tuple[str, ...] = TARGET_LEVELS) -> StudyMeasurements:
    """Measure T11-L2 of one CT and score it with a radscore model.

    Args:
        image: CT in HU (LPS), the grid ``seg`` lies on.
        seg: segmentation with vertebrae, bodies (VerSe ids) and compartments.
        model: radscore model; its features are the only radiomics computed
            (model-driven extraction). None: no radiomics, no score.
        extract_all: also extract every feature of this radiomics profile
            (``che2025``, ``yu2025``, ``lumbar1197``) on the VOIs that profile uses.
        levels: the levels to measure (default T11-L2; the model scores its own levels).

    Returns:
        :class:`StudyMeasurements`: every target level (incomplete or missing
        ones with a remark), study-level attenuation, vBMD and categories,
        the internal calibration used, and the model's score.

    Raises:
        ValueError: the segmentation does not lie on the image's grid, or an
            unknown profile or level name.
    """
    for what, labels in (("vertebrae", seg.vertebrae), ("bodies", seg.bodies), ("compartments", seg.compartments)):
        if labels.GetSize() != image.GetSize():
            raise ValueError(f"segmentation {what} grid {labels.GetSize()} does not match the image {image.GetSize()}")
    profile = get_profile(extract_all) if extract_all is not None else None
    hu = sitk.GetArrayViewFromImage(image)
    bodies = sitk.GetArrayViewFromImage(seg.bodies)
    compartments = sitk.GetArrayViewFromImage(seg.compartments)
    spacing_zyx = tuple(reversed(image.GetSpacing()))
    voxel_ml = math.prod(image.GetSpacing()) / 1000.0
    boxes = ndimage.find_objects(bodies.astype(np.int32, copy=False))
    remarks: list[str] = []

    measurable = [name for name in seg.complete_levels(levels) if _box(boxes, verse_id(name))]
    measured: dict[str, LevelMeasurement] = {}
    trabecular_hu: dict[str, float] = {}
    for name in levels:
        found = seg.levels.get(name)
        level = LevelMeasurement(name=name, verse_id=verse_id(name), complete=name in measurable,
                                 anchors=list(found.anchors) if found is not None else [])
        if found is None:
            level.remarks.append("not found in the scan")
        elif name not in measurable:
            level.remarks.append(found.reason or "vertebral body not completely in view")
        else:
            trabecular_hu[name] = _measure_density(level, hu, bodies, compartments, boxes, spacing_zyx, voxel_ml)
            level.trabecular_hu = trabecular_hu[name]
        measured[name] = level

    _measure_heights(measured, image, bodies, boxes, seg)
    calibration = _calibrate(image, hu, seg, bodies, measurable, remarks)
    if calibration is not None:
        for name, value in trabecular_hu.items():
            measured[name].vbmd_mg_cm3 = calibration.vbmd(value)

    for name in measurable:
        wanted = dict(model.features) if model is not None else {}
        for voi in (profile.vois if profile is not None else ()):
            wanted.setdefault(voi, ())
        _extract(measured[name], image, seg, boxes, wanted, model, profile)
        if model is not None:
            measured[name].radscores = model.level_radscores(measured[name].features)

    study = StudyMeasurements(levels=measured, remarks=remarks, level_identification=seg.level_identification)
    if "L1" in trabecular_hu:
        study.l1_attenuation_hu = trabecular_hu["L1"]
        study.l1_attenuation_category = l1_attenuation_category(trabecular_hu["L1"])
    vbmds = [lv.vbmd_mg_cm3 for lv in measured.values() if lv.vbmd_mg_cm3 is not None]
    if vbmds:
        study.vbmd_mg_cm3 = float(np.mean(vbmds))
        study.vbmd_category = vbmd_category(study.vbmd_mg_cm3)
    grades = [lv.genant_grade for lv in measured.values() if lv.genant_grade is not None]
    study.max_genant_grade = max(grades) if grades else None
    if calibration is not None:
        study.calibration = calibration.as_dict()
    if model is not None:
        study.score = model.score({n: measured[n].features for n in measurable}, vbmd_mg_cm3=study.vbmd_mg_cm3)
    return study


def _box(boxes: list, vid: int) -> tuple[slice, ...] | None:
    return boxes[vid - 1] if vid - 1 < len(boxes) else None


def _measure_density(level: LevelMeasurement, hu: np.ndarray, bodies: np.ndarray, compartments: np.ndarray,
                     boxes: list, spacing_zyx: tuple[float, ...], voxel_ml: float) -> float:
    """Fill the compartment statistics of a level; return its trabecular mean HU."""
    box = _box(boxes, level.verse_id)
    body = bodies[box] == level.verse_id
    crop_hu, crop_comp = hu[box], compartments[box]
    cancellous = body & (crop_comp == Compartment.CANCELLOUS)
    level.body = compartment_stats(crop_hu, body, voxel_ml)
    level.cortical = compartment_stats(crop_hu, body & (crop_comp == Compartment.CORTICAL), voxel_ml)
    level.cancellous = compartment_stats(crop_hu, cancellous, voxel_ml)
    region = trabecular_region(cancellous, spacing_zyx) if cancellous.any() else body
    if not cancellous.any():
        level.remarks.append("no cancellous compartment: density read on the whole body")
    return float(crop_hu[region].mean(dtype=np.float64))


def _measure_heights(levels: dict[str, LevelMeasurement], image: sitk.Image, bodies: np.ndarray,
                     boxes: list, seg: SegmentationResult) -> None:
    """Heights and Genant grades of the target levels, with every complete neighbour as context."""
    geometries: dict[int, BodyGeometry] = {}
    for index, box in enumerate(boxes):
        vid, name = index + 1, LEVEL_NAMES.get(index + 1)
        if box is None or name is None or (name in seg.levels and not seg.levels[name].complete):
            continue
        geometries[vid] = body_geometry(bodies[box] == vid, tuple(s.start for s in box), image.GetOrigin(),
                                        image.GetSpacing(), image.GetDirection())
    for vid, (heights, grade) in measure_heights(geometries).items():
        name = LEVEL_NAMES[vid]
        if name in levels and levels[name].complete:
            levels[name].heights, levels[name].genant_grade = heights, grade


def _calibrate(image: sitk.Image, hu: np.ndarray, seg: SegmentationResult, bodies: np.ndarray,
               measurable: list[str], remarks: list[str]) -> InternalCalibration | None:
    if not measurable:
        return None
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    if abs(direction[2, 2]) < 0.9:
        remarks.append("no vBMD: internal calibration needs axial slices")
        return None
    ids = [verse_id(n) for n in measurable]
    try:
        return internal_calibration(
            hu, sitk.GetArrayViewFromImage(seg.vertebrae) > 0, np.isin(bodies, ids),
            tuple(reversed(image.GetSpacing())),
            direction_sign_yx=(float(np.sign(direction[1, 1]) or 1.0), float(np.sign(direction[0, 0]) or 1.0)),
        )
    except CalibrationError as exc:
        remarks.append(f"no vBMD: {exc}")
        return None


def _extract(level: LevelMeasurement, image: sitk.Image, seg: SegmentationResult, boxes: list,
             wanted: dict[str, tuple[str, ...]], model: RadscoreModel | None,
             profile: Profile | None) -> None:
    """Radiomics of a level's VOIs: the model's features, and a whole profile when asked."""
    if not wanted:
        return
    box = _box(boxes, level.verse_id)
    # The body's box plus PAD_MM holds the crop extract_features takes around each VOI, so features
    # are those of the whole image; cropping here only spares building whole-CT masks per VOI.
    pad = [math.ceil(PAD_MM / s) for s in reversed(image.GetSpacing())]
    lo = [max(s.start - p, 0) for s, p in zip(box, pad, strict=True)]
    hi = [min(s.stop + p, n) for s, p, n in zip(box, pad, reversed(image.GetSize()), strict=True)]
    crop = image[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
    body = seg.bodies[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]] == level.verse_id
    comps = seg.compartments[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
    masks = {"cortical": body & (comps == Compartment.CORTICAL),
             "cancellous": body & (comps == Compartment.CANCELLOUS), "body": body}
    for voi, names in wanted.items():
        if voi not in masks:
            level.remarks.append(f"radiomics: unknown VOI {voi!r}")
            continue
        try:
            values: dict[str, float] = {}
            if profile is not None and voi in profile.vois:
                values.update(extract_features(crop, masks[voi], profile))
            missing = [n for n in names if n not in values]
            if missing and model is not None:
                values.update(extract_features(crop, masks[voi], model.profile, features=missing))
        except RadiomicsError as exc:
            level.remarks.append(f"radiomics {voi}: {exc}")
            continue
        level.features[voi] = values
