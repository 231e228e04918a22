"""Visual report: one Secondary Capture image for viewers that show neither SEG nor SR.

Left, a sagittal reformat of the CT through the vertebral bodies (bone
window) with the T11-L2 compartments overlaid in the SEG's colours and the
level names; right, per level the completeness, cancellous attenuation,
estimated vBMD, heights and Genant grade, then the study results (L1
attenuation, vBMD, radscores, fracture risk) and who computed them (model id
and version, segmentation algorithm). Until a calibrated model is loaded the
image says "research use" and "uncalibrated model". Rendered with matplotlib's
Agg backend (no display, safe in worker processes), encoded with
:class:`highdicom.sc.SCImage`.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
import SimpleITK as sitk
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pydicom.dataset import Dataset

from dicom_sr.algorithm import AlgorithmInfo
from dicom_sr.descriptions import series_description
from dicom_sr.errors import EncodeError
from dicom_sr.grid import SliceMap, map_slices
from dicom_sr.segments import plan_segments
from inference.levels import TARGET_LEVELS, verse_id
from inference.results import LevelIdentification, SegmentationResult, StudyMeasurements

REPORT_SERIES_KIND = "Osteoporosis screening report"

BONE_WINDOW = (300.0, 1500.0)
"""(centre, width) in HU for the reformat."""

MARGIN_MM = 25.0
"""Field shown around the T11-L2 bodies."""

OVERLAY_ALPHA = 0.55
FIGURE_SIZE_PX = (1280, 800)
DPI = 100


def render_visual_report(
    source_images: Sequence[Dataset],
    segmentation: SegmentationResult,
    measurements: StudyMeasurements,
    algorithm: AlgorithmInfo,
    *,
    ct: sitk.Image | None = None,
) -> np.ndarray:
    """Render the report as an RGB image, shape (rows, columns, 3), uint8.

    ``ct`` is the series as loaded (HU, on the segmentation grid); without it
    the reformat is read from the source instances' pixel data.
    """
    return _render(map_slices(segmentation.compartments, source_images), segmentation, measurements, algorithm, ct)


def _render(slice_map: SliceMap, segmentation: SegmentationResult, measurements: StudyMeasurements,
            algorithm: AlgorithmInfo, ct: sitk.Image | None) -> np.ndarray:
    ct_plane, overlay, extent, level_centres = _sagittal_reformat(slice_map, segmentation, ct)
    figure = Figure(figsize=(FIGURE_SIZE_PX[0] / DPI, FIGURE_SIZE_PX[1] / DPI), dpi=DPI, facecolor="black")
    canvas = FigureCanvasAgg(figure)
    image_axes = figure.add_axes((0.01, 0.03, 0.40, 0.90))
    centre, width = BONE_WINDOW
    image_axes.imshow(ct_plane, cmap="gray", vmin=centre - width / 2, vmax=centre + width / 2,
                      extent=extent, origin="lower", interpolation="bilinear")
    image_axes.imshow(overlay, extent=extent, origin="lower", interpolation="nearest")
    for level, z_mm in level_centres.items():
        image_axes.text(extent[0] + 2, z_mm, level, color="white", fontsize=13, fontweight="bold",
                        va="center", ha="left", bbox={"facecolor": "black", "alpha": 0.6, "pad": 2})
    image_axes.set_axis_off()
    image_axes.set_title("Sagittal reformat (A left, P right)", color="white", fontsize=11)
    _write_text(figure, measurements, algorithm, segmentation, slice_map.instances[0])
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()


def encode_visual_report(
    source_images: Sequence[Dataset],
    segmentation: SegmentationResult,
    measurements: StudyMeasurements,
    algorithm: AlgorithmInfo,
    *,
    series_number: int = 902,
    instance_number: int = 1,
    ct: sitk.Image | None = None,
) -> hd.sc.SCImage:
    """The visual report as a Secondary Capture in the source study (new series).

    ``ct``: see :func:`render_visual_report`; pass it when the source
    instances were read without their pixel data.
    """
    slice_map = map_slices(segmentation.compartments, source_images)
    pixels = _render(slice_map, segmentation, measurements, algorithm, ct)
    report = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=slice_map.instances[0],
        pixel_array=pixels,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=instance_number,
        manufacturer=algorithm.manufacturer,
        patient_orientation=("P", "F"),
        transfer_syntax_uid="1.2.840.10008.1.2.1",
    )
    calibrated = measurements.score is not None and measurements.score.calibrated
    report.SeriesDescription = series_description(REPORT_SERIES_KIND, segmentation.level_identification,
                                                  research_use=not calibrated)
    report.BurnedInAnnotation = "NO"  # the burned-in text holds no patient identity
    report.Laterality = ""  # General Series Type 2C: the spine is not a paired structure
    report.ManufacturerModelName = algorithm.name
    report.SoftwareVersions = algorithm.software_version
    return report


def _sagittal_reformat(
    slice_map: SliceMap, segmentation: SegmentationResult, ct_volume: sitk.Image | None
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float, float], dict[str, float]]:
    """CT and RGBA overlay on the sagittal plane through the bodies' centre.

    Returns (ct (z, y), overlay (z, y, 4), imshow extent in mm, level -> height of its centre in mm).
    """
    bodies = sitk.GetArrayViewFromImage(segmentation.bodies)
    compartments = sitk.GetArrayViewFromImage(segmentation.compartments)
    is_target = np.zeros(256, dtype=bool)
    is_target[[verse_id(name) for name in TARGET_LEVELS]] = True
    # Slices without compartments cannot hold the plane's centre: skip them.
    occupied = np.flatnonzero(compartments.reshape(compartments.shape[0], -1).any(axis=1))
    block = slice(int(occupied[0]), int(occupied[-1]) + 1) if occupied.size else slice(0, 0)
    in_target = is_target[bodies[block]] & (compartments[block] > 0)
    per_column = in_target.sum(axis=(0, 1))
    x = int(round(np.average(np.arange(per_column.size), weights=per_column))) if per_column.any() else bodies.shape[2] // 2
    spacing = segmentation.compartments.GetSpacing()
    z_mm_step, y_mm_step = spacing[2], spacing[1]

    plane_hits = is_target[bodies[:, :, x]] & (compartments[:, :, x] > 0)
    if plane_hits.any():
        zs, ys = np.nonzero(plane_hits)
        z0 = max(0, zs.min() - int(MARGIN_MM / z_mm_step))
        z1 = min(bodies.shape[0], zs.max() + 1 + int(MARGIN_MM / z_mm_step))
        y0 = max(0, ys.min() - int(2 * MARGIN_MM / y_mm_step))
        y1 = min(bodies.shape[1], ys.max() + 1 + int(2 * MARGIN_MM / y_mm_step))
    else:
        z0, z1, y0, y1 = 0, bodies.shape[0], 0, bodies.shape[1]

    if ct_volume is not None:
        if ct_volume.GetSize() != segmentation.compartments.GetSize():
            raise EncodeError("the CT volume and the segmentation are not on the same grid")
        ct = sitk.GetArrayViewFromImage(ct_volume)[z0:z1, y0:y1, x].astype(np.float32)
    else:
        ct = np.stack([_hu_column(slice_map.instances[k], x)[y0:y1] for k in range(z0, z1)])
    overlay = np.zeros((*ct.shape, 4), dtype=float)
    body_plane = bodies[z0:z1, y0:y1, x]
    compartment_plane = compartments[z0:z1, y0:y1, x]
    for spec in plan_segments(list(TARGET_LEVELS)):
        mask = (body_plane == spec.verse_id) & (compartment_plane == int(spec.compartment))
        overlay[mask] = (*[c / 255 for c in spec.colour], OVERLAY_ALPHA)

    # CT series are acquired axially: grid rows (index y) run along the
    # patient's A-P axis and slices (index z) along S-I. Flip each so that
    # anterior is left and the head is at the top (origin="lower" below),
    # whichever way the series' direction cosines point.
    direction = segmentation.compartments.GetDirection()
    if direction[4] < 0:
        ct, overlay, body_plane = ct[:, ::-1], overlay[:, ::-1], body_plane[:, ::-1]
    if direction[8] < 0:
        ct, overlay, body_plane = ct[::-1], overlay[::-1], body_plane[::-1]
    height_mm, width_mm = ct.shape[0] * z_mm_step, ct.shape[1] * y_mm_step
    extent = (0.0, width_mm, 0.0, height_mm)
    centres: dict[str, float] = {}
    for name in TARGET_LEVELS:
        zs = np.nonzero((body_plane == verse_id(name)).any(axis=1))[0]
        if zs.size:
            centres[name] = (zs.mean() + 0.5) * z_mm_step
    return ct, overlay, extent, centres


def _hu_column(ds: Dataset, x: int) -> np.ndarray:
    """Column ``x`` of one CT slice in HU (Modality LUT: rescale slope and intercept)."""
    if "PixelData" not in ds:
        raise EncodeError(f"source instance {ds.SOPInstanceUID} was read without pixel data; pass the CT volume as ct=")
    column = ds.pixel_array[:, x].astype(np.float32)
    return column * float(getattr(ds, "RescaleSlope", 1)) + float(getattr(ds, "RescaleIntercept", 0))


def _fmt(value: float | int | None, pattern: str = "{:.0f}") -> str:
    return "-" if value is None else pattern.format(value)


def _level_identification_text(segmentation: SegmentationResult) -> str:
    identification = segmentation.level_identification
    if identification is LevelIdentification.CONFIRMED:
        return f"confirmed by {segmentation.confirmed_by}"
    if identification is LevelIdentification.NEEDS_REVIEW:
        return "NEED REVIEW (anchors conflict or few)"
    anchors = sorted({kind for level in segmentation.levels.values() for kind in level.anchors})
    return "identified automatically" + (f" ({', '.join(anchors)})" if anchors else "")


def _series_name(source: Dataset) -> str:
    """Which series of the study was measured: number, description and slice thickness."""
    parts = [f"#{source.SeriesNumber}" if source.get("SeriesNumber") is not None else "",
             str(source.get("SeriesDescription", "") or "")[:40],
             f"({float(source.SliceThickness):g} mm)" if source.get("SliceThickness") else ""]
    return " ".join(p for p in parts if p) or "(no series number or description)"


def _write_text(figure: Figure, measurements: StudyMeasurements, algorithm: AlgorithmInfo,
                segmentation: SegmentationResult, source: Dataset) -> None:
    score = measurements.score
    clinical = score is not None and not score.research_use
    if score is not None and score.class_probabilities:
        banner = "RESEARCH USE ONLY - multi-class research model, not for diagnosis"
    elif clinical:
        banner = "Calibrated site model"
    else:
        banner = "RESEARCH USE ONLY - uncalibrated model, not for diagnosis"
    figure.text(0.43, 0.95, "Opportunistic osteoporosis screening, T11-L2", color="white", fontsize=16,
                fontweight="bold")
    figure.text(0.43, 0.91, banner, color="#7fd67f" if clinical else "#ff6b6b", fontsize=13, fontweight="bold")

    header = f"{'Level':<6}{'In view':<10}{'HU core':>8}{'vBMD':>7}{'Ant':>6}{'Mid':>6}{'Post':>6}{'Genant':>8}"
    lines = [header, "-" * len(header)]
    for name in TARGET_LEVELS:
        level = measurements.levels.get(name)
        if level is None:
            lines.append(f"{name:<6}{'not found':<10}")
            continue
        h = level.heights
        lines.append(
            f"{name:<6}{'complete' if level.complete else 'PARTIAL':<10}"
            f"{_fmt(level.cancellous.mean_hu if level.cancellous else None):>8}"
            f"{_fmt(level.vbmd_mg_cm3):>7}"
            f"{_fmt(h.anterior_mm if h else None, '{:.1f}'):>6}{_fmt(h.middle_mm if h else None, '{:.1f}'):>6}"
            f"{_fmt(h.posterior_mm if h else None, '{:.1f}'):>6}{_fmt(level.genant_grade):>8}"
        )
    lines.append("HU core: cancellous mean attenuation, HU")
    lines.append("vBMD: estimated volumetric BMD, mg/cm3; heights: mm")
    lines.append("")
    lines.append(f"L1 attenuation   {_fmt(measurements.l1_attenuation_hu)} HU  "
                 f"({measurements.l1_attenuation_category or 'not assessed'})")
    lines.append(f"Mean vBMD        {_fmt(measurements.vbmd_mg_cm3)} mg/cm3  "
                 f"({measurements.vbmd_category or 'not assessed'})")
    lines.append(f"Highest Genant   {_fmt(measurements.max_genant_grade)}")
    if score is not None and score.class_probabilities:
        classes = ", ".join(f"{name} {value:.0%}" for name, value in score.class_probabilities.items())
        lines.append(f"Classes          {classes}")
        lines.append("Fracture risk    not computed (multi-class research model)")
        lines.append(f"Model            {score.model_id} {score.model_version}")
    elif score is not None:
        radscores = ", ".join(f"{key} {value:+.3f}" for key, value in score.radscores.items()) or "-"
        lines.append(f"Radscores        {radscores}")
        if score.probability is not None:
            lines.append(f"Fracture risk    {score.probability:.0%}  ({score.category or 'no category'})")
        else:
            lines.append("Fracture risk    not computed (uncalibrated model)")
        lines.append(f"Model            {score.model_id} {score.model_version}"
                     f" ({'calibrated' if score.calibrated else 'uncalibrated model'})")
    else:
        lines.append("Fracture risk    not computed (no radscore model)")
    lines.append(f"Series           {_series_name(source)}")
    lines.append(f"Segmentation     {algorithm.name} {algorithm.version}, model {algorithm.model_id}")
    lines.append(f"Levels           {_level_identification_text(segmentation)}")
    if segmentation.level_identification is LevelIdentification.NEEDS_REVIEW:
        figure.text(0.43, 0.875, "LEVELS UNCONFIRMED - a person must check the vertebral labels", color="#ffb347",
                    fontsize=12, fontweight="bold")
    figure.text(0.43, 0.84, "\n".join(lines), color="white", fontsize=11.5, family="monospace", va="top",
                linespacing=1.45)
    figure.text(0.43, 0.03, "Overlay: cortical shell (darker) and cancellous core (lighter) per level; "
                "see the DICOM SEG and SR of this study.", color="#bbbbbb", fontsize=9)
