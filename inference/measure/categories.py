"""Screening categories from attenuation, estimated vBMD and vertebral height loss."""

from __future__ import annotations

L1_HU_SPECIFIC = 110.0
"""L1 trabecular attenuation (HU) below which osteoporosis is likely: about 90 % specificity
(Pickhardt et al., Ann Intern Med 2013;158:588-595)."""
L1_HU_SENSITIVE = 160.0
"""L1 trabecular attenuation (HU) at or below which osteoporosis cannot be excluded: about 90 %
sensitivity (Pickhardt et al., Ann Intern Med 2013)."""

ACR_VBMD_NORMAL = 120.0
"""vBMD (mg/cm3) above which QCT of the spine is normal (ACR-SPR-SSR practice parameter for QCT, 2018)."""
ACR_VBMD_OSTEOPOROSIS = 80.0
"""vBMD (mg/cm3) below which QCT of the spine indicates osteoporosis (ACR, same source)."""

GENANT_GRADE_LOSS: tuple[tuple[int, float], ...] = ((3, 0.40), (2, 0.25), (1, 0.20))
"""Smallest height loss of each semi-quantitative grade (Genant et al., J Bone Miner Res 1993;8:1137-1148):
grade 1 mild 20-25 %, grade 2 moderate 25-40 %, grade 3 severe > 40 %."""


def l1_attenuation_category(hu: float) -> str:
    """``osteoporosis likely`` (< 110 HU), ``indeterminate`` (110-160 HU) or ``normal likely`` (> 160 HU)."""
    if hu < L1_HU_SPECIFIC:
        return "osteoporosis likely"
    if hu <= L1_HU_SENSITIVE:
        return "indeterminate"
    return "normal likely"


def vbmd_category(vbmd_mg_cm3: float) -> str:
    """ACR QCT category: ``normal`` (> 120), ``low`` (80-120) or ``osteoporosis`` (< 80 mg/cm3)."""
    if vbmd_mg_cm3 > ACR_VBMD_NORMAL:
        return "normal"
    if vbmd_mg_cm3 >= ACR_VBMD_OSTEOPOROSIS:
        return "low"
    return "osteoporosis"


def genant_grade(height_loss: float) -> int:
    """Semi-quantitative fracture grade (0-3) of a fractional height loss (0..1)."""
    for grade, smallest in GENANT_GRADE_LOSS:
        if height_loss >= smallest:
            return grade
    return 0
