"""Writing a phantom to disk: DICOM series, NIfTI copies of image and labels, truth JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk
from pydicom.uid import ExplicitVRLittleEndian

from inference.phantom.dicom import PatientInfo, SeriesInfo, StudyInfo, WrittenSeries, write_ct_series
from inference.phantom.generate import Phantom

NIFTI_COMPRESSION_LEVEL = 1
"""gzip level of the NIfTI files: level 1 is several times faster than 6 and only a little larger."""


@dataclass(frozen=True)
class PhantomStudy:
    """Paths of a written phantom study and the DICOM identifiers used."""

    folder: Path
    dicom_folder: Path | None
    ct: Path
    vertebrae: Path
    bodies: Path
    compartments: Path
    truth: Path
    series: WrittenSeries | None


def patient_for(phantom: Phantom) -> PatientInfo:
    """Synthetic patient identity of a phantom (derived from its seed, age and sex)."""
    spec = phantom.spec
    return PatientInfo(name=f"PHANTOM^S{spec.seed:06d}", patient_id=f"PH{spec.seed:08d}",
                       birth_date=f"{2025 - spec.age:04d}0101", sex=spec.sex, age_years=spec.age)


def write_phantom_study(phantom: Phantom, out_dir: str | Path, *, dicom: bool = True,
                        transfer_syntax: str = ExplicitVRLittleEndian, patient: PatientInfo | None = None,
                        study: StudyInfo | None = None, series: SeriesInfo | None = None) -> PhantomStudy:
    """Write ``phantom`` into ``out_dir``.

    Layout: ``dicom/`` (CT series, one file per slice, when ``dicom``),
    ``ct.nii.gz`` (HU, int16), ``vertebrae.nii.gz`` (VerSe ids),
    ``bodies.nii.gz`` (VerSe ids of the bodies only), ``compartments.nii.gz``
    (1 cortical, 2 cancellous) and ``truth.json`` (the phantom's truth plus
    the DICOM UIDs used). UIDs derive from the phantom's seed unless given.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = phantom.spec
    written = None
    if dicom:
        body_part = "CHEST" if spec.top_level in ("T1", "T2", "T3", "T4", "T5") else "ABDOMEN"
        if spec.top_level.startswith("C"):
            body_part = "NECK"
        series = series or SeriesInfo(description=f"{body_part.title()} {spec.slice_thickness_mm:g}mm phantom",
                                      body_part=body_part, slice_thickness_mm=spec.slice_thickness_mm)
        study = study or StudyInfo(accession_number=f"PHA{spec.seed:07d}", description=f"CT {body_part}")
        written = write_ct_series(phantom.image, out / "dicom", patient=patient or patient_for(phantom), study=study,
                                  series=series, position=spec.patient_position, transfer_syntax=transfer_syntax,
                                  seed=spec.seed)
    paths = {name: out / f"{name}.nii.gz" for name in ("ct", "vertebrae", "bodies", "compartments")}
    ct = sitk.Cast(sitk.Round(phantom.image), sitk.sitkInt16)
    for name, image in (("ct", ct), ("vertebrae", phantom.vertebrae), ("bodies", phantom.bodies),
                        ("compartments", phantom.compartments)):
        sitk.WriteImage(image, str(paths[name]), True, NIFTI_COMPRESSION_LEVEL)
    truth = dict(phantom.truth)
    if written is not None:
        truth["dicom"] = {"study_instance_uid": written.study.study_uid,
                          "series_instance_uid": written.series.series_uid,
                          "frame_of_reference_uid": written.series.frame_of_reference_uid,
                          "transfer_syntax": written.transfer_syntax, "files": len(written.files),
                          "patient_position": spec.patient_position}
    truth_path = out / "truth.json"
    truth_path.write_text(json.dumps(truth, indent=1))
    return PhantomStudy(out, out / "dicom" if written else None, paths["ct"], paths["vertebrae"], paths["bodies"],
                        paths["compartments"], truth_path, written)
