"""Vertebra segmentation: backends behind one interface, shared compartments and levels.

Use :func:`segment_volume`; it runs a registered backend (``"anatomical"``, the
weight-free default, ``"unet"`` or ``"nnunet"``), splits the vertebral bodies into cortical
shell and cancellous core (:mod:`inference.segment.compartments`) and describes
each level found (:mod:`inference.segment.levels`). :mod:`inference.segment.io`
writes and reads the ``scpnode segment`` output folder.
:mod:`inference.segment.second_opinion` checks one backend against another.
"""

from inference.segment.api import (
    BackendOutput,
    SegmentationBackend,
    available_backends,
    register_backend,
    segment_volume,
)

__all__ = [
    "BackendOutput",
    "SegmentationBackend",
    "available_backends",
    "register_backend",
    "segment_volume",
]
