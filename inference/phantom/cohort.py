"""A synthetic screening cohort: patients, their phantom CTs and a fracture outcome from a known risk model.

Patients are drawn as follows (one generator seeded by ``seed``):

- age ~ Normal(66, 9) years, clipped to 45-90; sex female with probability 0.6;
- vBMD (mg/cm3) = 185 - 1.1 (age - 40) - 0.9 max(age - 50, 0) [women only]
  + Normal(0, 25), clipped to 40-260: the age and sex trend of QCT reference
  data (about 180 at 40, 85-110 at 75 in women; ACR-SPR-SSR QCT guideline);
- trabecular heterogeneity ~ Beta(2.5, 4) + 0.002 (120 - vBMD), clipped to
  0.02-0.98 (rarefied bone is also less homogeneous);
- fracture outcome ~ Bernoulli(p) with the risk model

      logit p = b0 + b_bmd (vBMD - 120) / 30 + b_het (heterogeneity - 0.4) / 0.15
                   + b_age (age - 65) / 10 + b_female [female]

  (:data:`RISK_MODEL`). Density and heterogeneity both carry risk, so a model
  using texture features can beat one using density alone, as the radiomics
  papers report. The outcome is incident (future) fracture: it is not drawn
  into the image.

Each patient's phantom has these parameters (vBMD varying slightly between
levels, as in real spines); labels.csv lists them with the image and mask paths.

For the three-class fracture-type study, ``fracture_types`` gives every
patient one prevalent L1 fracture drawn into the image: its type cycles
through the types given (balanced classes) and its Genant grade is drawn 1-3;
labels.csv then names it in ``fracture_type`` (the class to predict).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inference.phantom.generate import generate_phantom
from inference.phantom.spec import FractureType, PhantomSpec
from inference.phantom.study import write_phantom_study

RISK_MODEL: dict[str, float] = {
    "intercept": -1.0, "vbmd_per_30": -1.1, "heterogeneity_per_0.15": 1.0, "age_per_10": 0.3, "female": 0.2,
}
"""Coefficients of the logistic fracture-risk model (see the module docstring)."""
LEVEL_VBMD_OFFSET: dict[str, float] = {"T10": 6.0, "T11": 4.0, "T12": 2.0, "L1": 0.0, "L2": -2.0, "L3": -4.0}
"""Typical cranio-caudal vBMD gradient (mg/cm3 relative to L1)."""
LABEL_COLUMNS = ("patient_id", "age", "sex", "vbmd_mg_cm3", "heterogeneity", "risk", "outcome",
                 "image_path", "mask_path", "vertebrae_path", "truth_path", "dicom_path", "fracture_type",
                 "fracture_grade")
FRACTURE_LEVEL = "L1"


@dataclass(frozen=True)
class CohortMember:
    """One synthetic patient: parameters, true risk and drawn outcome; paths relative to the cohort folder."""

    patient_id: str
    age: int
    sex: str
    vbmd_mg_cm3: float
    heterogeneity: float
    risk: float
    outcome: int
    image_path: str
    mask_path: str
    vertebrae_path: str
    truth_path: str
    dicom_path: str
    fracture_type: str = ""
    """Type of the prevalent L1 fracture drawn into the image (``wedge``, ``biconcave``, ``crush``), or ""."""
    fracture_grade: int = 0
    """Its Genant grade (0: none)."""


@dataclass(frozen=True)
class Cohort:
    """A written cohort: its folder, labels.csv and members."""

    folder: Path
    labels: Path
    members: tuple[CohortMember, ...]


def fracture_risk(vbmd_mg_cm3: np.ndarray | float, heterogeneity: np.ndarray | float, age: np.ndarray | float,
                  female: np.ndarray | bool, model: dict[str, float] = RISK_MODEL) -> np.ndarray:
    """True fracture probability of the cohort's risk model."""
    logit = (model["intercept"] + model["vbmd_per_30"] * (np.asarray(vbmd_mg_cm3) - 120.0) / 30.0
             + model["heterogeneity_per_0.15"] * (np.asarray(heterogeneity) - 0.4) / 0.15
             + model["age_per_10"] * (np.asarray(age) - 65.0) / 10.0 + model["female"] * np.asarray(female, float))
    return 1.0 / (1.0 + np.exp(-logit))


def draw_patients(n: int, seed: int) -> dict[str, np.ndarray]:
    """Draw age, sex, vBMD, heterogeneity, risk and outcome of ``n`` patients."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 404]))
    age = np.clip(np.rint(rng.normal(66.0, 9.0, n)), 45, 90).astype(int)
    female = rng.random(n) < 0.6
    vbmd = 185.0 - 1.1 * (age - 40) - 0.9 * np.maximum(age - 50, 0) * female + rng.normal(0.0, 25.0, n)
    vbmd = np.clip(vbmd, 40.0, 260.0)
    heterogeneity = np.clip(rng.beta(2.5, 4.0, n) + 0.002 * (120.0 - vbmd), 0.02, 0.98)
    risk = fracture_risk(vbmd, heterogeneity, age, female)
    outcome = (rng.random(n) < risk).astype(int)
    return {"age": age, "female": female, "vbmd": vbmd, "heterogeneity": heterogeneity, "risk": risk,
            "outcome": outcome, "body_scale": np.clip(rng.normal(1.0, 0.07, n), 0.85, 1.2),
            "noise": np.clip(rng.normal(12.0, 2.5, n), 6.0, 20.0)}


def generate_cohort(n: int, out_dir: str | Path, seed: int = 0, *, shape: tuple[int, int, int] = (160, 160, 88),
                    field_of_view_mm: tuple[float, float] = (400.0, 220.0), slice_thickness_mm: float | None = None,
                    dicom: bool = False, fracture_types: Sequence[FractureType] = ()) -> Cohort:
    """Write ``n`` synthetic patients (T10-L3 phantoms) and ``labels.csv`` into ``out_dir``.

    Args:
        n: number of patients.
        out_dir: cohort folder; each patient gets a sub-folder named by its id.
        seed: seeds the patient draw and every phantom (repeatable).
        shape: matrix (columns, rows, slices) of each study; small for CI.
        field_of_view_mm: in-plane and cranio-caudal field of view.
        slice_thickness_mm: reconstructed thickness (default: the slice spacing).
        dicom: also write each study as a DICOM series (slower, larger).
        fracture_types: give each patient an L1 fracture of these types in turn (see the module docstring).
    """
    if n < 1:
        raise ValueError("a cohort needs at least one patient")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    drawn = draw_patients(n, seed)
    pixel = field_of_view_mm[0] / max(shape[0], shape[1])
    spacing = field_of_view_mm[1] / shape[2]
    grades = np.random.default_rng(np.random.SeedSequence([seed, 505])).integers(1, 4, n)
    members = []
    for i in range(n):
        patient_id = f"SYN{seed:03d}{i + 1:05d}"
        fracture = (int(grades[i]), fracture_types[i % len(fracture_types)]) if fracture_types else None
        vbmd = float(drawn["vbmd"][i])
        spec = PhantomSpec(
            seed=seed * 100_000 + i + 1, top_level="T10", bottom_level="L3", shape=shape,
            pixel_spacing_mm=round(pixel, 4), slice_spacing_mm=round(spacing, 4),
            slice_thickness_mm=round(slice_thickness_mm or spacing, 4),
            vbmd_mg_cm3={level: max(vbmd + offset, 5.0) for level, offset in LEVEL_VBMD_OFFSET.items()},
            trabecular_heterogeneity=float(drawn["heterogeneity"][i]), noise_hu=float(drawn["noise"][i]),
            body_scale=float(drawn["body_scale"][i]), age=int(drawn["age"][i]),
            sex="F" if drawn["female"][i] else "M",
            fractures={FRACTURE_LEVEL: fracture} if fracture else {},
        )
        study = write_phantom_study(generate_phantom(spec), out / patient_id, dicom=dicom)
        members.append(CohortMember(
            patient_id=patient_id, age=spec.age, sex=spec.sex, vbmd_mg_cm3=round(vbmd, 2),
            heterogeneity=round(spec.trabecular_heterogeneity, 4), risk=round(float(drawn["risk"][i]), 4),
            outcome=int(drawn["outcome"][i]), image_path=_relative(study.ct, out),
            mask_path=_relative(study.compartments, out), vertebrae_path=_relative(study.vertebrae, out),
            truth_path=_relative(study.truth, out),
            dicom_path=_relative(study.dicom_folder, out) if study.dicom_folder else "",
            fracture_type=fracture[1] if fracture else "", fracture_grade=fracture[0] if fracture else 0))
    labels = out / "labels.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LABEL_COLUMNS)
        writer.writeheader()
        writer.writerows(asdict(member) for member in members)
    (out / "cohort.json").write_text(json.dumps(_description(n, seed, shape, field_of_view_mm), indent=1))
    return Cohort(out, labels, tuple(members))


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _description(n: int, seed: int, shape: tuple[int, int, int], fov: tuple[float, float]) -> dict[str, Any]:
    return {"patients": n, "seed": seed, "shape": list(shape), "field_of_view_mm": list(fov), "levels": "T10-L3",
            "risk_model": {"formula": "logit p = intercept + vbmd_per_30*(vbmd-120)/30 + "
                                      "heterogeneity_per_0.15*(het-0.4)/0.15 + age_per_10*(age-65)/10 + female",
                           "coefficients": RISK_MODEL},
            "level_vbmd_offset_mg_cm3": LEVEL_VBMD_OFFSET,
            "mask_values": {"1": "cortical shell", "2": "cancellous core"}}
