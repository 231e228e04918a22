"""Measurements of the T11-L2 vertebrae: density, estimated vBMD, heights, Genant grade, radiomics.

:func:`measure_study` is the entry point; the modules hold one job each:
:mod:`.density` (HU statistics), :mod:`.calibration` (phantomless internal
calibration -> estimated vBMD), :mod:`.heights` (heights along the local spine
axis, Genant grade), :mod:`.categories` (L1 attenuation, ACR QCT and Genant
cut-offs with their sources).
"""

from inference.measure.calibration import CalibrationError, InternalCalibration, internal_calibration
from inference.measure.categories import genant_grade, l1_attenuation_category, vbmd_category
from inference.measure.study import measure_study

__all__ = [
    "CalibrationError", "InternalCalibration", "genant_grade", "internal_calibration",
    "l1_attenuation_category", "measure_study", "vbmd_category",
]
