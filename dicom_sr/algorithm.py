"""Identification of the algorithm that produced a result.

DICOM records it twice: in the SEG as the Segment Description's Algorithm
Identification Sequence (PS3.3 C.8.20.2 / Algorithm Identification Macro
10-19) and in the SR as TID 4019 "Algorithm Identification".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import highdicom as hd
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid


@dataclass(frozen=True)
class AlgorithmInfo:
    """Who made the segmentation and measurements.

    Attributes:
        name: algorithm name, e.g. ``"scpnode anatomical"``.
        version: software version of the algorithm.
        model_id: identifier of the segmentation model or backend (weights,
            rule set); recorded as an algorithm parameter.
        manufacturer: who makes the software (Manufacturer (0008,0070)).
        notes: further ``name=value`` algorithm parameters of every SR group (e.g. that a
            second segmentation backend checked this one, and whether it agreed).
        level_notes: per level name, ``name=value`` parameters of that level's body group
            only (e.g. both backends' answers where they disagree at that level).
    """

    name: str
    version: str
    model_id: str
    manufacturer: str = "scpnode"
    notes: tuple[str, ...] = ()
    level_notes: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for field_name in ("name", "version", "model_id", "manufacturer"):
            if not str(getattr(self, field_name)).strip():
                raise ValueError(f"AlgorithmInfo.{field_name} must not be empty")

    @property
    def software_version(self) -> str:
        """Software Versions (0018,1020): version and model, e.g. ``"1.2 (model unet-3)"``."""
        return f"{self.version} (model {self.model_id})"

    def seg_identification(self) -> hd.AlgorithmIdentificationSequence:
        """The SEG Algorithm Identification Sequence (family: Artificial Intelligence)."""
        return hd.AlgorithmIdentificationSequence(
            name=self.name,
            family=codes.cid7162.ArtificialIntelligence,
            version=self.version,
            parameters={"model_id": self.model_id},
        )

    def sr_identification(self, notes: Sequence[str] = ()) -> hd.sr.AlgorithmIdentification:
        """TID 4019 Algorithm Identification for SR measurement groups; ``notes`` are further
        ``name=value`` parameters (e.g. the anatomical anchors a level's label rests on)."""
        return hd.sr.AlgorithmIdentification(
            name=self.name, version=self.version, parameters=[f"model_id={self.model_id}", *self.notes, *notes]
        )

    @property
    def device_uid(self) -> str:
        """A stable Device Observer UID for this algorithm and version.

        Derived from name, version and model id so that every report made by
        the same algorithm names the same observer device (TID 1004).
        """
        return generate_uid(entropy_srcs=[self.manufacturer, self.name, self.version, self.model_id])
