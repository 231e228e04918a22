"""DICOM Segmentation (PS3.3 A.51) of the T11-L2 cortical and cancellous compartments.

A BINARY segmentation on the source CT grid, one segment per level and
compartment (see :mod:`dicom_sr.segments`), empty frames omitted, written by
highdicom into the source study as a new series.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset

from dicom_sr import codes
from dicom_sr.algorithm import AlgorithmInfo
from dicom_sr.descriptions import series_description
from dicom_sr.errors import EncodeError
from dicom_sr.grid import map_slices
from dicom_sr.segments import SegmentSpec, identify_segment, plan_segments
from inference.levels import TARGET_LEVELS, Compartment
from inference.results import SegmentationResult

SEG_SERIES_KIND = "T11-L2 compartments SEG"

_KEY_STRIDE = 3
"""Voxel key = body label * 3 + compartment value (compartment values are 0, 1, 2)."""


def encode_seg(
    source_images: Sequence[Dataset],
    segmentation: SegmentationResult,
    algorithm: AlgorithmInfo,
    *,
    series_number: int = 900,
    instance_number: int = 1,
) -> hd.seg.Segmentation:
    """Encode the compartments of the target levels as a DICOM SEG.

    Args:
        source_images: the CT instances of the series ``segmentation`` was
            computed on, in any order.
        segmentation: the compartments (1 cortical, 2 cancellous) with the
            level of each voxel in ``bodies`` (VerSe ids).
        algorithm: recorded as AUTOMATIC algorithm identification per segment.
        series_number: Series Number of the new series.

    Returns:
        A BINARY :class:`highdicom.seg.Segmentation` in the source study.

    Raises:
        EncodeError: the images do not share the source grid, or no target
            level has any compartment voxel.
    """
    bodies, compartments = _arrays_on_grid(segmentation)
    slice_map = map_slices(segmentation.compartments, source_images)
    # Only the slices holding compartment voxels become source images of the
    # SEG (empty frames are omitted anyway); cropping first keeps the label
    # arithmetic and highdicom's per-source-image work proportional to the
    # spine in view rather than to the whole series.
    occupied = np.flatnonzero(compartments.reshape(compartments.shape[0], -1).any(axis=1))
    if occupied.size == 0:
        raise EncodeError(f"no compartment voxels of {', '.join(TARGET_LEVELS)} to encode")
    first, last = int(occupied[0]), int(occupied[-1]) + 1
    key = bodies[first:last].astype(np.uint8) * _KEY_STRIDE + compartments[first:last].astype(np.uint8)
    present = np.bincount(key.ravel(), minlength=256)
    specs = [spec for spec in plan_segments(list(TARGET_LEVELS))
             if present[spec.verse_id * _KEY_STRIDE + int(spec.compartment)]]
    if not specs:
        raise EncodeError(f"no compartment voxels of {', '.join(TARGET_LEVELS)} to encode")
    lookup = np.zeros(256, dtype=np.uint8)
    for number, spec in enumerate(specs, start=1):
        lookup[spec.verse_id * _KEY_STRIDE + int(spec.compartment)] = number
    label_map = lookup[key]

    seg = hd.seg.Segmentation(
        source_images=list(slice_map.instances[first:last]),
        pixel_array=label_map,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_describe(number, spec, algorithm) for number, spec in enumerate(specs, start=1)],
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=instance_number,
        manufacturer=algorithm.manufacturer,
        manufacturer_model_name=algorithm.name,
        software_versions=algorithm.software_version,
        device_serial_number=algorithm.model_id,
        content_label="VERTEBRAE",
        content_description="Cortical shell and cancellous core of vertebral bodies T11-L2",
        omit_empty_frames=True,
    )
    seg.SeriesDescription = series_description(SEG_SERIES_KIND, segmentation.level_identification,
                                               research_use=True)
    codes.add_coding_scheme_identification(seg)
    return seg


def segment_numbers(seg: Dataset) -> dict[tuple[str, Compartment], int]:
    """Map (level, compartment) -> Segment Number for a SEG written by :func:`encode_seg`."""
    found: dict[tuple[str, Compartment], int] = {}
    for item in seg.SegmentSequence:
        spec = identify_segment(item)
        if spec is not None:
            found[(spec.level, spec.compartment)] = int(item.SegmentNumber)
    return found


def segment_source_instances(seg: Dataset) -> dict[int, list[str]]:
    """Segment Number -> SOP Instance UIDs of the source images its frames were derived from.

    Read from the Per-Frame Functional Groups (Segment Identification and
    Derivation Image sequences), i.e. only the slices where the segment is
    present, in frame order.
    """
    found: dict[int, list[str]] = {}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        number = int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        for derivation in frame.DerivationImageSequence:
            for source in derivation.SourceImageSequence:
                uids = found.setdefault(number, [])
                if source.ReferencedSOPInstanceUID not in uids:
                    uids.append(source.ReferencedSOPInstanceUID)
    return found


def _arrays_on_grid(segmentation: SegmentationResult) -> tuple[np.ndarray, np.ndarray]:
    """``bodies`` and ``compartments`` as array views (z, y, x), checked to share one grid."""
    bodies, compartments = segmentation.bodies, segmentation.compartments
    if (bodies.GetSize() != compartments.GetSize()
            or not np.allclose(bodies.GetOrigin(), compartments.GetOrigin(), atol=1e-3)
            or not np.allclose(bodies.GetSpacing(), compartments.GetSpacing(), atol=1e-4)
            or not np.allclose(bodies.GetDirection(), compartments.GetDirection(), atol=1e-4)):
        raise EncodeError("segmentation.bodies and segmentation.compartments are not on the same grid")
    body_labels = sitk.GetArrayViewFromImage(bodies)
    compartment_labels = sitk.GetArrayViewFromImage(compartments)
    if body_labels.min(initial=0) < 0 or body_labels.max(initial=0) > (255 - max(Compartment)) // _KEY_STRIDE:
        raise EncodeError("segmentation.bodies holds values outside the VerSe id range")
    if compartment_labels.min(initial=0) < 0 or compartment_labels.max(initial=0) > max(Compartment):
        raise EncodeError("segmentation.compartments holds values other than 0, 1 (cortical), 2 (cancellous)")
    return body_labels, compartment_labels


def _describe(number: int, spec: SegmentSpec, algorithm: AlgorithmInfo) -> hd.seg.SegmentDescription:
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=spec.label,
        segmented_property_category=codes.ANATOMICAL_STRUCTURE,
        segmented_property_type=codes.VERTEBRA_CODES[spec.level],
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm.seg_identification(),
        tracking_uid=hd.UID(),
        tracking_id=spec.tracking_id,
        display_color=hd.color.CIELabColor.from_rgb(*spec.colour),
    )
    # The compartment qualifies the vertebra (Segmented Property Type Modifier,
    # PS3.3 C.8.20.2); see dicom_sr.codes for why it is a private code.
    description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
        hd.sr.CodedConcept.from_code(codes.COMPARTMENT_CODES[spec.compartment])
    ]
    return description
