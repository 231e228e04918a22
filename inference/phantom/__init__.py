"""Synthetic thoracolumbar CT phantoms with ground truth, and cohorts of them.

Used by ``scpnode demo``, the installation self-test, every end-to-end test
and the research side::

    from inference.phantom import abdominal_ct, generate_phantom, write_phantom_study
    phantom = generate_phantom(abdominal_ct(seed=7, shape=(256, 256, 150)))
    write_phantom_study(phantom, "out/study")
"""

from inference.phantom.dicom import (
    PatientInfo,
    SeriesInfo,
    StudyInfo,
    WrittenSeries,
    write_ct_series,
)
from inference.phantom.generate import Phantom, generate_phantom
from inference.phantom.physics import hu_from_vbmd, vbmd_from_hu
from inference.phantom.spec import PhantomSpec, abdominal_ct, chest_ct, neck_ct
from inference.phantom.study import PhantomStudy, write_phantom_study

__all__ = [
    "PatientInfo", "Phantom", "PhantomSpec", "PhantomStudy", "SeriesInfo", "StudyInfo", "WrittenSeries",
    "abdominal_ct", "chest_ct", "generate_phantom", "hu_from_vbmd", "neck_ct", "vbmd_from_hu",
    "write_ct_series", "write_phantom_study",
]
