"""Levels on the research side: mean, concatenated or per-vertebra rows, fractured vertebrae left
out on request, and a patient's rows never split between training and test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from inference.cohort.export import ExportError, export_model
from inference.cohort.fit import fit_cohort
from inference.cohort.recipe import recipe_from_dict
from inference.cohort.split import holdout_split, kfold_splits
from inference.cohort.table import combine_levels
from scpnode.cli import main

LEVELS = ("L1", "L2", "L3", "L4")
FEATURES = 12


def extraction(n_patients: int = 60, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(long, levels, studies) as 'cohort extract' writes them: two studies for some patients, four
    lumbar levels each, one body VOI whose first features carry the outcome, a few fractured levels."""
    rng = np.random.default_rng(seed)
    long, levels, studies = [], [], []
    for p in range(n_patients):
        label = int(rng.random() < 0.4)
        for s in range(1 + (p % 3 == 0)):
            study = f"P{p:03d}-{s}"
            studies.append({"study_id": study, "patient_id": f"P{p:03d}", "label": label,
                            "age": float(rng.normal(65, 8)), "vbmd": float(rng.normal(110, 25))})
            for level in LEVELS:
                values = rng.normal(0, 1, FEATURES)
                values[:3] += 1.2 * label
                long.append({"study_id": study, "level": level, "voi": "body",
                             **{f"original_f{j:02d}": float(v) for j, v in enumerate(values)}})
                levels.append({"study_id": study, "level": level, "vbmd": float(rng.normal(110, 25)),
                               "genant_grade": int(rng.random() < 0.08) * int(rng.integers(1, 4))})
    return pd.DataFrame(long), pd.DataFrame(levels), pd.DataFrame(studies)


def test_the_three_combinations_and_the_exclusions():
    long, levels, studies = extraction()
    mean, _ = combine_levels(long, levels, studies, "mean")
    assert len(mean) == len(studies) and sum(c.startswith("body:") for c in mean.columns) == FEATURES
    first = long[long.study_id == studies.study_id[0]]
    assert mean.loc[studies.study_id[0], "body:original_f00"] == pytest.approx(first.original_f00.mean())

    concatenated, _ = combine_levels(long, levels, studies, "concatenate")
    assert sum(c.startswith("body:") for c in concatenated.columns) == len(LEVELS) * FEATURES
    assert concatenated.loc[studies.study_id[0], "body:L3_original_f05"] == first[first.level == "L3"].original_f05.item()

    rows, _ = combine_levels(long, levels, studies, "per-vertebra", levels=("L1", "L2"))
    assert len(rows) == 2 * len(studies) and set(rows.level) == {"L1", "L2"}
    assert rows.loc[f"{studies.study_id[0]}:L2", "patient_id"] == studies.patient_id[0]

    kept, notes = combine_levels(long, levels, studies, "per-vertebra", exclude_fractured=True)
    fractured = int((levels.genant_grade >= 1).sum())
    assert fractured and len(kept) == len(levels) - fractured and (kept.genant_grade == 0).all()
    assert f"{fractured} fractured vertebra(e)" in notes[0]
    gap = (long.study_id == studies.study_id[0]) & (long.level == "L4")
    partial, notes = combine_levels(long[~gap], levels, studies, "concatenate", levels=LEVELS)
    assert "1 stud(ies) without all of L1, L2, L3, L4 left out" in notes
    assert studies.study_id[0] not in partial.index and len(partial) == len(studies) - 1
    with pytest.raises(ValueError, match="level combination 'median'"):
        combine_levels(long, levels, studies, "median")


@pytest.mark.parametrize("method", ["holdout", "kfold"])
def test_a_patients_vertebrae_never_cross_the_split(method):
    long, levels, studies = extraction()
    rows, _ = combine_levels(long, levels, studies, "per-vertebra")
    recipe = recipe_from_dict({
        "data": {"outcome": "label", "level_combination": "per-vertebra", "covariates": ["age"]},
        "split": {"method": method, "test_size": 0.25, "folds": 4, "seed": 3},
        "selection": [{"method": "lasso", "rule": "min", "folds": 4, "n_lambdas": 10}],
        "radscore": {"vois": ["body"]},
        "models": [{"name": "vertebral", "inputs": ["body"]}], "export": {"primary": "vertebral"},
    })
    assert recipe.data.group == "patient_id"
    fit = fit_cohort(rows, recipe)
    patient = rows["patient_id"]
    test = fit.predictions[fit.predictions.partition == "test"]
    for fold, part in test.groupby("fold"):
        train_ids = (fit.predictions.id[(fit.predictions.partition == "train")] if method == "holdout"
                     else rows.index.difference(part.id))
        assert set(patient[part.id]).isdisjoint(set(patient[train_ids])), fold
    assert any("rows grouped by patient_id" in note for note in fit.notes)
    with pytest.raises(ExportError, match="per vertebra"):
        export_model(fit, "x")


def test_group_splits_keep_groups_whole_and_close_to_the_asked_size():
    y = np.tile([0, 0, 1, 1, 0, 1], 20)
    groups = np.repeat(np.arange(60), 2)
    split = holdout_split(y, 0.25, seed=1, groups=groups)
    assert set(groups[split.train]).isdisjoint(groups[split.test])
    assert 0.2 <= len(split.test) / len(y) <= 0.3
    tested = np.concatenate([s.test for s in kfold_splits(y, 5, seed=1, groups=groups)])
    assert sorted(tested) == list(range(len(y)))


def _write_extraction(folder, **kwargs) -> None:
    folder.mkdir()
    for name, frame in zip(("features_long.csv", "levels.csv", "studies.csv"), extraction(**kwargs), strict=True):
        frame.to_csv(folder / name, index=False)


def test_per_vertebra_fit_and_external_validation_from_extraction_folders(tmp_path, capsys):
    _write_extraction(tmp_path / "train", n_patients=80, seed=1)
    _write_extraction(tmp_path / "external", n_patients=40, seed=2)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text("""
[data]
outcome = "label"
covariates = ["age"]
level_combination = "per-vertebra"
exclude_fractured = true
[[selection]]
method = "lasso"
folds = 4
n_lambdas = 10
[radscore]
vois = ["body"]
[[models]]
name = "vertebral"
inputs = ["body"]
""")
    assert main(["cohort", "fit", str(tmp_path / "train"), str(recipe), "--out", str(tmp_path / "fit")]) == 0
    assert "rows grouped by patient_id" in capsys.readouterr().out
    assert main(["cohort", "validate", str(tmp_path / "fit"), str(tmp_path / "external"), "--bootstrap", "20",
                 "--out", str(tmp_path / "val")]) == 0
    predictions = pd.read_csv(tmp_path / "val" / "predictions.csv")
    external = predictions[predictions.partition == "external"]
    assert external.id.str.contains(":L").all() and external.id.nunique() == len(external)
    assert main(["cohort", "fit", str(tmp_path / "train" / "studies.csv"), str(recipe),
                 "--out", str(tmp_path / "x")]) == 2
    assert "give the extraction folder" in capsys.readouterr().err
