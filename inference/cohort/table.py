"""The cohort table (what to extract) and the feature tables (what was extracted).

Cohort table (CSV, one row per study)::

    study_id,image,mask,label,age,sex,vbmd,centre
    S001,images/S001,,1,71,F,92.5,A
    S002,images/S002.nii.gz,masks/S002_compartments.nii.gz,0,64,M,131.0,B

``study_id``, ``image`` and ``label`` are required; ``mask`` (a ``scpnode
segment`` folder, or a compartments label image - 1 cortical / 2 cancellous
- with ``vertebrae`` naming the whole-vertebra VerSe label image) is
optional, and so is ``patient_id`` (default: the study id; the rows of one
patient are never split between training and test). Every other column is
a covariate or a reference standard (a QCT vBMD, a DXA T-score) and keeps
its name. Paths are relative to the CSV.

Feature tables:

- *long* (what extraction writes): one row per study, level and VOI,
  columns ``study_id, level, voi`` then one column per feature;
- *study-level* (what ``cohort fit`` reads): one row per study, the outcome
  and covariates, and ``"<voi>:<feature>"`` columns holding the mean of the
  feature over the levels measured - the same mean the node takes of the
  per-level radscores, so a linear radscore on study-level features equals
  the node's study radscore.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from inference.levels import VERSE_IDS as VERSE_ORDER

REQUIRED_COLUMNS = ("study_id", "image", "label")
OPTIONAL_PATHS = ("mask", "vertebrae")
PATIENT_COLUMN = "patient_id"
ROI_VOI = "roi"
"""The VOI (and level) name of a reader's ROI in ROI-mode extraction (any modality)."""
NODE_VBMD = "node_vbmd"
"""The node's own vBMD estimate in the feature tables: what a model's ``vbmd`` input gets when the node scores."""


class CohortTableError(ValueError):
    """A cohort table that cannot be used; the message lists every problem found."""


@dataclass(frozen=True)
class CohortRow:
    study_id: str
    image: Path
    mask: Path | None
    vertebrae: Path | None
    label: object
    covariates: dict[str, object]
    patient_id: str = ""
    """The patient the study belongs to (the study id when the cohort table has no ``patient_id``)."""


def read_cohort_table(path: str | Path, *, roi: bool = False) -> list[CohortRow]:
    """Read and validate a cohort CSV.

    With ``roi`` every row's ``mask`` is an ROI label image of its own (any
    modality, no ``vertebrae`` image) and is required.

    Raises:
        CohortTableError: listing (up to 10) problems by CSV line: missing
            columns, empty or duplicate ids, missing labels, image or mask
            paths that do not exist.
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise CohortTableError(f"{path}: not a readable CSV ({exc})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise CohortTableError(f"{path}: missing column(s) {', '.join(missing)} "
                               f"(required: {', '.join(REQUIRED_COLUMNS)})")
    problems: list[str] = []
    rows: list[CohortRow] = []
    seen: set[str] = set()
    base = path.parent
    covariate_columns = [c for c in frame.columns if c not in (*REQUIRED_COLUMNS, *OPTIONAL_PATHS, PATIENT_COLUMN)]
    for i, record in frame.iterrows():
        line = int(i) + 2  # header is line 1
        sid = record["study_id"].strip()
        if not sid:
            problems.append(f"line {line}: empty study_id")
            continue
        if sid in seen:
            problems.append(f"line {line}: duplicate study_id {sid!r}")
            continue
        seen.add(sid)
        if not record["label"].strip():
            problems.append(f"line {line} ({sid}): missing label")
        image = _resolve(base, record["image"])
        if image is None or not image.exists():
            problems.append(f"line {line} ({sid}): image {record['image']!r} not found")
        paths = {}
        for column in OPTIONAL_PATHS:
            paths[column] = _resolve(base, record.get(column, ""))
            if paths[column] is not None and not paths[column].exists():
                problems.append(f"line {line} ({sid}): {column} {record[column]!r} not found")
        if roi and (paths["mask"] is None or not paths["mask"].is_file()):
            problems.append(f"line {line} ({sid}): no ROI mask image")
        elif not roi and paths["mask"] is not None and paths["mask"].is_file() and paths["vertebrae"] is None:
            problems.append(f"line {line} ({sid}): a mask image needs a vertebrae label image")
        covariates = {c: _number_or_text(record[c]) for c in covariate_columns}
        patient = str(record.get(PATIENT_COLUMN, "")).strip() or sid
        rows.append(CohortRow(sid, image or Path(), paths["mask"], paths["vertebrae"],
                              _number_or_text(record["label"]), covariates, patient))
    if problems:
        shown = "; ".join(problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise CohortTableError(f"{path}: {len(problems)} problem(s): {shown}{more}")
    if not rows:
        raise CohortTableError(f"{path}: no studies")
    return rows


def _resolve(base: Path, value: str | None) -> Path | None:
    if value is None or not str(value).strip():
        return None
    p = Path(str(value).strip())
    return p if p.is_absolute() else base / p


def _number_or_text(value: str) -> object:
    text = value.strip()
    if text == "":
        return np.nan
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text else number


def read_feature_table(path: str | Path, id_column: str = "study_id") -> pd.DataFrame:
    """A study-level feature table (CSV or Parquet) indexed by ``id_column``.

    A *long* table (with ``level`` and ``voi`` columns) is converted with
    :func:`study_level`.

    Raises:
        ValueError: unreadable file, no id column, duplicate ids.
    """
    path = Path(path)
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except (OSError, ValueError, ImportError) as exc:
        raise ValueError(f"{path}: cannot read feature table ({exc})") from None
    if id_column not in frame.columns:
        raise ValueError(f"{path}: no {id_column!r} column")
    frame[id_column] = frame[id_column].astype(str)
    if {"level", "voi"} <= set(frame.columns):
        frame = study_level(frame, id_column=id_column).reset_index()
    if frame[id_column].duplicated().any():
        dup = frame.loc[frame[id_column].duplicated(), id_column].iloc[0]
        raise ValueError(f"{path}: duplicate {id_column} {dup!r}")
    return frame.set_index(id_column)


def study_level(long: pd.DataFrame, id_column: str = "study_id",
                levels: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Long per-level features -> one row per study with ``"<voi>:<feature>"`` level means.

    Every column other than the id, ``level`` and ``voi`` must be a numeric
    feature; outcome and covariates come from the cohort table.
    """
    frame = long if levels is None else long[long["level"].isin(levels)]
    features = [c for c in frame.columns if c not in (id_column, "level", "voi")]
    text = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
    if text:
        raise ValueError(f"long feature table: non-numeric feature column(s) {text[:3]}")
    means = frame.groupby([id_column, "voi"])[features].mean().unstack("voi")
    means.columns = [f"{voi}:{feature}" for feature, voi in means.columns]
    return means.dropna(axis=1, how="all")


LEVEL_COMBINATIONS = ("mean", "concatenate", "per-vertebra")
"""How per-level features make the rows of a model's table (:func:`combine_levels`)."""


def combine_levels(long: pd.DataFrame, levels_table: pd.DataFrame, studies: pd.DataFrame, how: str = "mean", *,
                   levels: Sequence[str] | None = None, exclude_fractured: bool = False,
                   id_column: str = "study_id") -> tuple[pd.DataFrame, list[str]]:
    """The table ``cohort fit`` models, from the per-level features of an extraction; and notes.

    - ``mean``: one row per study, each ``"<voi>:<feature>"`` the mean over its
      levels (the thoracolumbar study, and what the node takes when it scores);
    - ``concatenate``: one row per study, ``"<voi>:<level>_<feature>"`` for each
      level (the 1,197-feature lumbar study: 4 x 1,197 features); a study
      without every level is left out;
    - ``per-vertebra``: one row per study and level, id ``"<study>:<level>"``,
      with ``study_id``, ``level``, that vertebra's ``level_vbmd`` and
      ``genant_grade`` (the postmenopausal OVCF study; ``patient_id`` keeps a
      patient's vertebrae on one side of every split).

    ``levels`` keeps only those levels; ``exclude_fractured`` leaves out every
    vertebra with a Genant grade of 1 or more (the lumbar studies' exclusion).
    ``studies`` holds one row per study: ``patient_id``, the label and the
    cohort's own columns.

    Raises:
        ValueError: an unknown combination or level, or no row left.
    """
    if how not in LEVEL_COMBINATIONS:
        raise ValueError(f"level combination {how!r}; one of {', '.join(LEVEL_COMBINATIONS)}")
    notes: list[str] = []
    keep = levels_table[[id_column, "level", "genant_grade"]]
    if levels is not None:
        unknown = sorted(set(levels) - set(levels_table["level"]))
        if unknown:
            notes.append(f"level(s) {', '.join(unknown)} not extracted in any study")
        keep = keep[keep["level"].isin(levels)]
    if exclude_fractured:
        fractured = keep["genant_grade"].fillna(0) >= 1
        notes.append(f"{int(fractured.sum())} fractured vertebra(e) (Genant grade >= 1) left out")
        keep = keep[~fractured]
    long = long.merge(keep[[id_column, "level"]], on=[id_column, "level"])
    attributes = studies.set_index(id_column)
    if how == "mean":
        table = attributes.join(study_level(long, id_column=id_column), how="inner")
    elif how == "concatenate":
        wanted = sorted(set(long["level"]), key=list(VERSE_ORDER).index) if levels is None else list(levels)
        complete = long.groupby(id_column)["level"].apply(lambda s: set(wanted) <= set(s))
        dropped = int((~complete).sum())
        if dropped:
            notes.append(f"{dropped} stud(ies) without all of {', '.join(wanted)} left out")
        frame = long[long[id_column].isin(complete.index[complete])]
        features = [c for c in frame.columns if c not in (id_column, "level", "voi")]
        wide = frame.set_index([id_column, "level", "voi"])[features].unstack(["voi", "level"])
        wide.columns = [f"{voi}:{level}_{feature}" for feature, voi, level in wide.columns]
        table = attributes.join(wide.dropna(axis=1, how="all"), how="inner")
    else:
        features = [c for c in long.columns if c not in (id_column, "level", "voi")]
        wide = long.set_index([id_column, "level", "voi"])[features].unstack("voi")
        wide.columns = [f"{voi}:{feature}" for feature, voi in wide.columns]
        per_level = levels_table.rename(columns={"vbmd": "level_vbmd"})
        rows = wide.reset_index().merge(per_level, on=[id_column, "level"]).merge(
            attributes, left_on=id_column, right_index=True)
        rows.index = rows[id_column].astype(str) + ":" + rows["level"].astype(str)
        rows.index.name = "row_id"
        table = rows
    if table.empty:
        raise ValueError("no row left to model (levels, exclusions or missing extractions)")
    return table, notes
