"""Code tables for the objects this package writes.

Standard codes first, private codes only where the standard has none:

- SNOMED CT (``SCT``) for the vertebrae: T11 12989004, T12 23215003,
  L1 66794005, L2 14293000. These are members of CID 7151 "Segmentation
  Property Types" (and CID 7192), so they are the SEG Segmented Property Type;
  the category is SCT 91723000 "Anatomical Structure" (CID 7150).
- DCM / SNOMED CT / UCUM for generic measurement concepts: DCM 112031
  "Attenuation Coefficient" with derivations SCT 373098007 "Mean",
  SCT 373099004 "Median", SCT 386136009 "Standard Deviation"; SCT 118565006
  "Volume" (the same concepts dcmqi and highdicom use in TID 1500 reports).
- The private scheme ``99SCPNODE`` for everything DICOM PS3.16 does not define:
  the cortical-shell / cancellous-core compartments, vertebral body heights and
  Genant ratios/grade, estimated vBMD, radscores, fracture-risk outputs,
  screening categories, the model calibration status and how the vertebral
  levels were identified (automatically, needing review, confirmed by a person).

Why the compartments are private codes: neither CID 7150/7151 nor the SNOMED CT
concepts that DICOM PS3.16 lists contain "cortical bone" or "cancellous
(trabecular) bone" structure concepts, and we could not verify SNOMED CT
identifiers for them from an authoritative source. Rather than guess SNOMED
identifiers, the SEG uses the verified vertebra code as Segmented Property
Type and qualifies it with a private Segmented Property Type *Modifier*
(PS3.3 C.8.20.2, Segment Description Macro) naming the compartment; the SR
uses the same private compartment code as the finding type and the vertebra
as finding site. Private codes follow PS3.16 section 8 (a ``99`` prefixed
designator) and every object that uses them carries a Coding Scheme
Identification Sequence entry (PS3.3 C.12.1.1.2) built by
:func:`coding_scheme_identification`.
"""

from __future__ import annotations

import re

from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from inference.levels import Compartment

PRIVATE_SCHEME = "99SCPNODE"
"""Coding Scheme Designator of this product's private codes (PS3.16 section 8)."""

PRIVATE_SCHEME_NAME = "scpnode osteoporosis screening codes"
PRIVATE_SCHEME_RESPONSIBLE = "scpnode project"
PRIVATE_SCHEME_VERSION = "1"


def _private(value: str, meaning: str) -> Code:
    return Code(value, PRIVATE_SCHEME, meaning)


def _ucum(value: str, meaning: str) -> Code:
    return Code(value, "UCUM", meaning)


# -- anatomy (SNOMED CT, CID 7150 / 7151) -----------------------------------
ANATOMICAL_STRUCTURE: Code = codes.SCT.AnatomicalStructure
"""SCT 91723000, CID 7150 Segmentation Property Categories."""

VERTEBRA_CODES: dict[str, Code] = {
    "T11": codes.SCT.T11Vertebra,  # 12989004
    "T12": codes.SCT.T12Vertebra,  # 23215003
    "L1": codes.SCT.L1Vertebra,  # 66794005
    "L2": codes.SCT.L2Vertebra,  # 14293000
}
"""Level name -> SNOMED CT vertebra code (CID 7151)."""

COMPARTMENT_CODES: dict[Compartment, Code] = {
    Compartment.CORTICAL: _private("C001", "Cortical shell of vertebral body"),
    Compartment.CANCELLOUS: _private("C002", "Cancellous core of vertebral body"),
}
"""Compartment -> private code (see the module docstring for why private)."""

COMPARTMENT_NAMES: dict[Compartment, str] = {
    Compartment.CORTICAL: "cortical",
    Compartment.CANCELLOUS: "cancellous",
}
"""Compartment -> the key used in :class:`inference.results.LevelMeasurement`."""

# -- generic measurement concepts (DCM / SCT) -------------------------------
ATTENUATION = codes.DCM.AttenuationCoefficient  # DCM 112031
MEAN = codes.SCT.Mean  # SCT 373098007
MEDIAN = codes.SCT.Median  # SCT 373099004
STANDARD_DEVIATION = codes.SCT.StandardDeviation  # SCT 386136009
VOLUME = codes.SCT.Volume  # SCT 118565006
IMAGING_PROCEDURE = codes.SCT.ImagingProcedure  # SCT 363679005
DEVICE_OBSERVER = codes.DCM.Device  # DCM 121007, CID 270 Observer Type
PERSON_OBSERVER = codes.DCM.Person  # DCM 121006, CID 270 Observer Type

# -- private measurement concepts -----------------------------------------
VBMD = _private("M001", "Estimated volumetric bone mineral density")
ANTERIOR_HEIGHT = _private("M002", "Anterior vertebral body height")
MIDDLE_HEIGHT = _private("M003", "Middle vertebral body height")
POSTERIOR_HEIGHT = _private("M004", "Posterior vertebral body height")
WEDGE_RATIO = _private("M005", "Anterior to posterior height ratio")
BICONCAVE_RATIO = _private("M006", "Middle to posterior height ratio")
CRUSH_RATIO = _private("M007", "Posterior to expected posterior height ratio")
GENANT_GRADE = _private("M008", "Genant semiquantitative fracture grade")
RADSCORE = _private("M009", "Radiomics score")
FRACTURE_RISK_PROBABILITY = _private("M010", "Fracture risk probability")
L1_ATTENUATION = _private("M011", "L1 trabecular attenuation")
MEAN_VBMD = _private("M012", "Mean estimated vBMD of measured levels")
MAX_GENANT_GRADE = _private("M013", "Highest Genant grade of measured levels")
MAX_HEIGHT_LOSS = _private("M014", "Largest fractional vertebral height loss")

RADSCORE_SCOPES: dict[str, Code] = {
    "cortical": _private("R001", "Cortical radscore"),
    "cancellous": _private("R002", "Cancellous radscore"),
    "vertebral": _private("R003", "Vertebral radscore"),
}
"""Radscore key (as in :class:`inference.results.StudyScore`) -> concept."""

# -- qualitative evaluations (private concept names and values) -----------
LEVEL_COMPLETENESS = _private("Q001", "Vertebral level completeness")
LEVEL_COMPLETE = _private("V001", "Complete vertebral body in field of view")
LEVEL_INCOMPLETE = _private("V002", "Incomplete vertebral body, not all of it measured")

MODEL_CALIBRATION = _private("Q002", "Radscore model calibration status")
MODEL_CALIBRATED = _private("V003", "Calibrated model")
MODEL_UNCALIBRATED = _private("V004", "Uncalibrated model, research use only")

FRACTURE_RISK_CATEGORY = _private("Q003", "Fracture risk category")
RISK_CATEGORIES: dict[str, Code] = {
    "low": _private("V005", "Low fracture risk"),
    "intermediate": _private("V006", "Intermediate fracture risk"),
    "high": _private("V007", "High fracture risk"),
}
FRACTURE_RISK_PROBABILITY_BY_OUTPUT = "Fracture risk probability, {name} model"
"""Code Meaning pattern of each logistic output of a model (codes ``P-<NAME>``)."""
RISK_NOT_COMPUTED = _private("V008", "Fracture risk not computed")

L1_ATTENUATION_CATEGORY = _private("Q004", "L1 attenuation category")
L1_CATEGORIES: dict[str, Code] = {
    "osteoporosis likely": _private("V009", "Osteoporosis likely (L1 below 110 HU)"),
    "indeterminate": _private("V010", "Indeterminate (L1 110 to 160 HU)"),
    "normal likely": _private("V011", "Normal bone density likely (L1 above 160 HU)"),
}

VBMD_CATEGORY = _private("Q005", "vBMD category (ACR QCT)")
VBMD_CATEGORIES: dict[str, Code] = {
    "normal": _private("V012", "Normal vBMD (above 120 mg/cm3)"),
    "low": _private("V013", "Low vBMD (80 to 120 mg/cm3)"),
    "osteoporosis": _private("V014", "Osteoporosis range vBMD (below 80 mg/cm3)"),
}

LEVEL_IDENTIFICATION = _private("Q006", "Vertebral level identification")
LEVEL_IDENTIFICATION_VALUES: dict[str, Code] = {
    "automatic": _private("V015", "Levels identified automatically from agreeing anatomical anchors"),
    "needs_review": _private("V016", "Level identification needs review by a person"),
    "confirmed": _private("V017", "Levels confirmed by a person"),
}
"""``inference.results.LevelIdentification`` value -> code."""

GENANT_GRADE_EVALUATION = _private("Q007", "Genant semiquantitative fracture grade")
GENANT_GRADES: dict[int, Code] = {
    0: _private("V018", "Genant grade 0, no fracture"),
    1: _private("V019", "Genant grade 1, mild (20 to 25% height loss)"),
    2: _private("V020", "Genant grade 2, moderate (25 to 40% height loss)"),
    3: _private("V021", "Genant grade 3, severe (over 40% height loss)"),
}

CLASS_PROBABILITY = "Class probability, {name} (research use)"
"""Code Meaning pattern of each class of a multi-class model (codes ``C-<NAME>``)."""
PREDICTED_CLASS = _private("Q008", "Most probable class of a multi-class model")
INTENDED_USE = _private("Q009", "Intended use of model output")
RESEARCH_USE_ONLY = _private("V022", "Research use only, not for clinical decisions")

# -- TID 1500 containers the highdicom builder does not add ---------------
DERIVED_IMAGING_MEASUREMENTS = codes.DCM.DerivedImagingMeasurements  # DCM 126011, TID 1500 row 10
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")  # TID 1500 row 12

# -- UCUM units ------------------------------------------------------------
HU = _ucum("[hnsf'U]", "Hounsfield unit")
MILLILITER = _ucum("mL", "milliliter")
MILLIMETER = _ucum("mm", "millimeter")
MG_PER_CM3 = _ucum("mg/cm3", "milligram per cubic centimeter")
RATIO = _ucum("{ratio}", "ratio")
NO_UNITS = _ucum("1", "no units")


def model_defined_code(kind: str, name: str, known: dict[str, Code], meaning: str) -> Code:
    """Code of a name that the radscore model defines (radscore, logistic output, risk category).

    Names in ``known`` keep their fixed codes. A site's model may name its
    outputs otherwise; such a name gets the private code ``<kind>-<NAME>``
    (upper case, other characters as ``-``, cut to the 16 characters of a
    Code Value (SH)), so that the same name is coded the same way in every
    report, with ``meaning`` as Code Meaning.
    """
    key = name.strip().lower()
    if key in known:
        return known[key]
    slug = re.sub(r"[^A-Z0-9]+", "-", key.upper()).strip("-")
    if not slug:
        raise ValueError(f"model-defined name {name!r} has no letters or digits to code")
    return _private(f"{kind}-{slug}"[:16], meaning[:64])


def category_code(table: dict[str, Code], value: str, what: str) -> Code:
    """The code of a category string such as ``"low"``.

    Raises:
        ValueError: ``value`` is not one of the categories this table codes.
    """
    try:
        return table[value.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown {what} {value!r}; known: {', '.join(table)}") from None


def coding_scheme_identification() -> Dataset:
    """One Coding Scheme Identification Sequence item for :data:`PRIVATE_SCHEME`."""
    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = PRIVATE_SCHEME_NAME
    item.CodingSchemeVersion = PRIVATE_SCHEME_VERSION
    item.CodingSchemeResponsibleOrganization = PRIVATE_SCHEME_RESPONSIBLE
    return item


def add_coding_scheme_identification(dataset: Dataset) -> None:
    """Declare :data:`PRIVATE_SCHEME` in ``dataset`` (PS3.3 C.12.1.1.2), once."""
    existing = list(getattr(dataset, "CodingSchemeIdentificationSequence", []))
    if any(item.CodingSchemeDesignator == PRIVATE_SCHEME for item in existing):
        return
    dataset.CodingSchemeIdentificationSequence = [*existing, coding_scheme_identification()]
