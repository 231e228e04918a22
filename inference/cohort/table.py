"""The cohort table (what to extract) and the feature tables (what was extracted).

Cohort table (CSV, one row per study)::

    study_id,image,mask,label,age,sex,vbmd,centre
    S001,images/S001,,1,71,F,92.5,A
    S002,images/S002.nii.gz,masks/S002_compartments.nii.gz,0,64,M,131.0,B

``study_id``, ``image`` and ``label`` are required; ``mask`` (a ``scpnode
segment`` folder, or a compartments label image - 1 cortical / 2 cancellous
- with ``vertebrae`` naming the whole-vertebra VerSe label image) is
optional; every other column is a covariate. Paths are relative to the CSV.

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

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("study_id", "image", "label")
OPTIONAL_PATHS = ("mask", "vertebrae")


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


def read_cohort_table(path: str | Path) -> list[CohortRow]:
    """Read and validate a cohort CSV.

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
    covariate_columns = [c for c in frame.columns if c not in (*REQUIRED_COLUMNS, *OPTIONAL_PATHS)]
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
        if paths["mask"] is not None and paths["mask"].is_file() and paths["vertebrae"] is None:
            problems.append(f"line {line} ({sid}): a mask image needs a vertebrae label image")
        covariates = {c: _number_or_text(record[c]) for c in covariate_columns}
        rows.append(CohortRow(sid, image or Path(), paths["mask"], paths["vertebrae"],
                              _number_or_text(record["label"]), covariates))
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
