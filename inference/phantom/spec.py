"""What a synthetic CT study should contain: :class:`PhantomSpec` and presets.

A spec is a plain, JSON-able description (seed, levels, grid, tissue and
pathology parameters). :func:`inference.phantom.generate_phantom` turns it into
an image with ground truth; the same spec and seed always give the same study.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from inference.levels import VERSE_IDS

FractureType = Literal["wedge", "biconcave", "crush"]
PatientPosition = Literal["HFS", "FFS"]
ContrastPhase = Literal["portal", "arterial"]
Transition = Literal["none", "sacralized-L5"]

SPINE_ORDER: tuple[str, ...] = (
    *(f"C{i}" for i in range(1, 8)),
    *(f"T{i}" for i in range(1, 13)),
    "T13",
    *(f"L{i}" for i in range(1, 6)),
    "S",
)
"""Vertebrae from head to sacrum; T13 appears only in a spine with 13 rib pairs."""

GENANT_HEIGHT_LOSS: dict[int, float] = {1: 0.225, 2: 0.325, 3: 0.5}
"""Height reduction rendered per Genant grade, in the middle of each band (Genant et al.,
J Bone Miner Res 1993: grade 1 mild 20-25 %, grade 2 moderate 25-40 %, grade 3 severe > 40 %).
Wedge: anterior vs posterior height; biconcave: middle vs posterior; crush: every
height vs the unfractured body."""


@dataclass(frozen=True)
class PhantomSpec:
    """Parameters of one synthetic thoracolumbar CT study.

    Geometry is that of an axial CT series: ``shape`` is (columns, rows,
    slices), ``pixel_spacing_mm`` the in-plane spacing, ``slice_thickness_mm``
    the reconstructed slice thickness (it sets the partial-volume blur) and
    ``slice_spacing_mm`` the distance between slice centres.

    ``vbmd_mg_cm3`` is the volumetric BMD of the cancellous core (one value for
    every level, or a mapping level -> value); cancellous HU follow it through
    :func:`inference.phantom.physics.hu_from_vbmd`. ``trabecular_heterogeneity``
    (0-1) scales the coarse-scale variation and the contrast of the trabecular
    texture. ``fractures`` maps a level name to ``(Genant grade 1-3, type)``.

    ``rib_pairs`` 12 is the usual spine; 11 leaves T12 without ribs; 13 adds a
    thirteenth thoracic vertebra (VerSe id 28, T13) with ribs between T12 and
    L1. ``lumbar_rib`` adds short ribs on L1. ``contrast`` fills the aorta and
    enhances the kidneys and liver; ``contrast_phase`` "portal" is a portal-venous
    phase, "arterial" an arterial one (aorta and heart at 300-450 HU, brighter than
    the vertebral bodies). ``transition`` "sacralized-L5" fuses L5 with the sacrum (a
    lumbosacral transitional vertebra: four free lumbar vertebrae above the sacrum).

    Spine shape: ``kyphosis`` scales the sagittal curve (1 typical; 1.6 a marked
    thoracic kyphosis and lumbar lordosis), ``scoliosis_deg`` bends the trunk and spine
    into a thoracolumbar curve of that Cobb angle (apex at L1, convex to the left).
    ``arms_down`` puts the arms beside the trunk (humeri in the field of view), as when
    a patient cannot raise them.

    ``noise_hu`` is the image noise (standard deviation), ``beam_hardening_hu``
    the depth of a cupping bias at the body centre (0: none),
    ``cortical_thickness_mm`` the shell of the bodies, ``body_scale`` the
    patient's build (outline and fat grow with it, vertebrae a little), and
    ``age``/``sex`` go into the DICOM Patient module.
    """

    seed: int = 0
    top_level: str = "T10"
    bottom_level: str = "L3"
    shape: tuple[int, int, int] = (512, 512, 300)
    pixel_spacing_mm: float = 0.8
    slice_thickness_mm: float = 1.25
    slice_spacing_mm: float = 1.0
    patient_position: PatientPosition = "HFS"
    vbmd_mg_cm3: float | dict[str, float] = 120.0
    trabecular_heterogeneity: float = 0.3
    noise_hu: float = 12.0
    beam_hardening_hu: float = 0.0
    fractures: dict[str, tuple[int, FractureType]] = field(default_factory=dict)
    rib_pairs: int = 12
    lumbar_rib: bool = False
    contrast: bool = False
    contrast_phase: ContrastPhase = "portal"
    transition: Transition = "none"
    kyphosis: float = 1.0
    scoliosis_deg: float = 0.0
    arms_down: bool = False
    cortical_thickness_mm: float = 1.0
    body_scale: float = 1.0
    age: int = 65
    sex: Literal["F", "M"] = "F"

    def __post_init__(self) -> None:
        for name in (self.top_level, self.bottom_level):
            if name not in SPINE_ORDER:
                raise ValueError(f"unknown level {name!r}; known: {', '.join(SPINE_ORDER)}")
        if SPINE_ORDER.index(self.top_level) > SPINE_ORDER.index(self.bottom_level):
            raise ValueError(f"top_level {self.top_level} lies below bottom_level {self.bottom_level}")
        if len(self.shape) != 3 or min(self.shape) < 8:
            raise ValueError(f"shape must be (columns, rows, slices), each >= 8; got {self.shape}")
        # clinical series use 0.5-1 mm pixels and 0.6-5 mm slices; small test matrices need coarser ones
        if not 0.3 <= self.pixel_spacing_mm <= 8.0:
            raise ValueError(f"pixel_spacing_mm {self.pixel_spacing_mm} outside 0.3-8.0")
        if not 0.5 <= self.slice_thickness_mm <= 8.0 or not 0.3 <= self.slice_spacing_mm <= 8.0:
            raise ValueError(f"slice thickness {self.slice_thickness_mm} mm and spacing {self.slice_spacing_mm} mm "
                             "must lie within 0.5-8 mm and 0.3-8 mm (more slices for this field of view?)")
        if self.patient_position not in ("HFS", "FFS"):
            raise ValueError(f"patient_position must be HFS or FFS, got {self.patient_position!r}")
        if self.contrast_phase not in ("portal", "arterial"):
            raise ValueError(f"contrast_phase must be portal or arterial, got {self.contrast_phase!r}")
        if self.transition not in ("none", "sacralized-L5"):
            raise ValueError(f"transition must be none or sacralized-L5, got {self.transition!r}")
        if not 0.0 <= self.kyphosis <= 2.5:
            raise ValueError("kyphosis must lie within 0-2.5")
        if not 0.0 <= self.scoliosis_deg <= 45.0:
            raise ValueError("scoliosis_deg must lie within 0-45")
        if not 0.6 <= self.body_scale <= 1.6:
            raise ValueError("body_scale must lie within 0.6-1.6")
        if self.rib_pairs not in (11, 12, 13):
            raise ValueError(f"rib_pairs must be 11, 12 or 13, got {self.rib_pairs}")
        if not 0.0 <= self.trabecular_heterogeneity <= 1.0:
            raise ValueError("trabecular_heterogeneity must lie within 0-1")
        if not 0.3 <= self.cortical_thickness_mm <= 2.0:
            raise ValueError("cortical_thickness_mm must lie within 0.3-2.0")
        for level, value in self.vbmd_by_level().items():
            if not 0 <= value <= 400:
                raise ValueError(f"vBMD of {level} ({value} mg/cm3) outside 0-400")
        for level, (grade, kind) in self.fractures.items():
            if level not in VERSE_IDS and level != "T13":
                raise ValueError(f"fracture at unknown level {level!r}")
            if grade not in GENANT_HEIGHT_LOSS or kind not in ("wedge", "biconcave", "crush"):
                raise ValueError(f"fracture at {level}: need grade 1-3 and wedge/biconcave/crush, got {grade}, {kind}")

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel spacing (x, y, z) in mm."""
        return (self.pixel_spacing_mm, self.pixel_spacing_mm, self.slice_spacing_mm)

    def spine_levels(self) -> tuple[str, ...]:
        """Every vertebra of this spine from head to sacrum (T13 only with 13 rib pairs)."""
        return tuple(name for name in SPINE_ORDER if name != "T13" or self.rib_pairs == 13)

    def vbmd_by_level(self) -> dict[str, float]:
        """vBMD (mg/cm3) of every vertebra of the spine."""
        if isinstance(self.vbmd_mg_cm3, dict):
            base = sum(self.vbmd_mg_cm3.values()) / max(len(self.vbmd_mg_cm3), 1)
            return {name: float(self.vbmd_mg_cm3.get(name, base)) for name in self.spine_levels()}
        return {name: float(self.vbmd_mg_cm3) for name in self.spine_levels()}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy of the parameters."""
        data = asdict(self)
        data["shape"] = list(self.shape)
        data["fractures"] = {k: [g, t] for k, (g, t) in self.fractures.items()}
        return data

    def with_changes(self, **changes: Any) -> PhantomSpec:
        """A copy with some parameters changed (validated again)."""
        return replace(self, **changes)


def abdominal_ct(seed: int = 0, *, shape: tuple[int, int, int] = (512, 512, 300),
                 **overrides: Any) -> PhantomSpec:
    """An abdominal CT, T10 to the sacrum (S1), 512 x 512 x 300 at 0.78 x 0.78 x 1.25 mm by default.

    A smaller ``shape`` keeps the same field of view (coarser voxels), so that the
    levels stay in view; pass spacings in ``overrides`` to change that.
    """
    return _preset(seed, "T10", "S", shape, fov_xy_mm=400.0, fov_z_mm=375.0, overrides=overrides)


def chest_ct(seed: int = 0, *, shape: tuple[int, int, int] = (512, 512, 300),
             **overrides: Any) -> PhantomSpec:
    """A chest CT from T3 to L2 (lung bases and upper abdomen), 0.78 x 0.78 x 1.25 mm by default."""
    return _preset(seed, "T3", "L2", shape, fov_xy_mm=400.0, fov_z_mm=375.0, overrides=overrides)


def neck_ct(seed: int = 0, *, shape: tuple[int, int, int] = (512, 512, 160),
            **overrides: Any) -> PhantomSpec:
    """A neck CT, C3 to T2: it does not reach T11-L2 (a negative case for series selection)."""
    return _preset(seed, "C3", "T2", shape, fov_xy_mm=250.0, fov_z_mm=160.0, overrides=overrides)


def _preset(seed: int, top: str, bottom: str, shape: tuple[int, int, int], *, fov_xy_mm: float,
            fov_z_mm: float, overrides: dict[str, Any]) -> PhantomSpec:
    pixel = round(fov_xy_mm / max(shape[0], shape[1]), 4)
    spacing = round(fov_z_mm / shape[2], 4)
    params: dict[str, Any] = {
        "seed": seed, "top_level": top, "bottom_level": bottom, "shape": tuple(shape),
        "pixel_spacing_mm": pixel, "slice_spacing_mm": spacing,
        "slice_thickness_mm": max(spacing, 0.625),
    }
    params.update(overrides)
    return PhantomSpec(**params)
