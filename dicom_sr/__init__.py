"""Encoders from screening results to DICOM objects (SEG, SR, visual report).

Built on highdicom; pure functions, no networking. Never imports :mod:`scpnode`.

    objects = encode_results(source_images, segmentation, measurements, algorithm)
    objects.seg.save_as(...); objects.sr.save_as(...); objects.report.save_as(...)

All three objects go into the source study (same Study Instance UID, patient
and study modules copied from the source images) as new series numbered
``series_number_base`` (SEG), ``+1`` (SR) and ``+2`` (visual report).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import SimpleITK as sitk
from pydicom.dataset import Dataset

from dicom_sr.algorithm import AlgorithmInfo
from dicom_sr.errors import EncodeError, NonConformantObjectError
from dicom_sr.report import encode_visual_report, render_visual_report
from dicom_sr.seg import encode_seg
from dicom_sr.sr import encode_sr
from inference.results import SegmentationResult, StudyMeasurements

__all__ = [
    "AlgorithmInfo",
    "EncodeError",
    "NonConformantObjectError",
    "ResultObjects",
    "encode_results",
    "encode_seg",
    "encode_sr",
    "encode_visual_report",
    "render_visual_report",
]


@dataclass(frozen=True)
class ResultObjects:
    """The DICOM objects of one study's results, ready to save or send."""

    seg: Dataset
    sr: Dataset
    report: Dataset

    def __iter__(self) -> Iterator[Dataset]:
        """SEG, SR, report: in the order a receiver can resolve their references."""
        return iter((self.seg, self.sr, self.report))


def encode_results(
    source_images: Sequence[Dataset],
    segmentation: SegmentationResult,
    measurements: StudyMeasurements,
    algorithm: AlgorithmInfo,
    *,
    series_number_base: int = 900,
    ct: sitk.Image | None = None,
    predecessor: Dataset | None = None,
) -> ResultObjects:
    """Encode SEG, TID 1500 SR and visual report of one study.

    Args:
        source_images: the CT instances of the series that was segmented and
            measured (any order; placed on the grid by Image Position).
        segmentation: compartments and body labels on that series' grid.
        measurements: per-level measurements and the study score.
        algorithm: the segmentation/measurement algorithm to record.
        series_number_base: Series Number of the SEG; SR and report follow.
        ct: the CT volume (HU) on the segmentation grid, for the visual
            report's reformat; needed only when ``source_images`` were read
            without pixel data.
        predecessor: the SR of this study sent earlier that these results
            correct (e.g. after a person corrected the level labels).

    Raises:
        EncodeError: inputs inconsistent with each other or the source images.
    """
    seg = encode_seg(source_images, segmentation, algorithm, series_number=series_number_base)
    sr = encode_sr(source_images, seg, segmentation, measurements, algorithm,
                   series_number=series_number_base + 1, predecessor=predecessor)
    report = encode_visual_report(source_images, segmentation, measurements, algorithm,
                                  series_number=series_number_base + 2, ct=ct)
    return ResultObjects(seg=seg, sr=sr, report=report)
