"""``scpnode cohort extract`` on small phantoms: features per level and VOI, failures listed
not fatal, resumable, and a mask-perturbed second extraction for the ICC reliability filter."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from inference.cohort.preprocess import reliable_features
from inference.cohort.table import read_feature_table
from inference.phantom.cohort import generate_cohort
from scpnode.cli import main

FEATURES = ("original_firstorder_Mean", "original_firstorder_StandardDeviation", "original_glcm_Contrast")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("extract")
    generated = generate_cohort(4, root, seed=5, shape=(96, 96, 56))
    labels = pd.read_csv(generated.labels)
    table = pd.DataFrame({"study_id": labels.patient_id, "image": labels.image_path, "mask": labels.mask_path,
                          "vertebrae": labels.vertebrae_path, "label": labels.outcome, "age": labels.age,
                          "vbmd": labels.vbmd_mg_cm3})
    broken = root / "broken.nii.gz"
    broken.write_bytes(b"not an image")
    table.loc[len(table)] = {"study_id": "BROKEN", "image": "broken.nii.gz", "mask": "", "vertebrae": "",
                             "label": 0, "age": 70, "vbmd": 100.0}
    table.to_csv(root / "cohort.csv", index=False)
    (root / "features.txt").write_text("# features\n" + "\n".join(FEATURES) + "\n")
    return root, labels


def _extract(root, out, *extra):
    return main(["cohort", "extract", str(root / "cohort.csv"), "--out", str(out), "--features",
                 str(root / "features.txt"), "--vois", "cortical", "cancellous", *extra])


def test_extract_writes_tables_lists_failures_and_resumes(cohort, capsys):
    root, labels = cohort
    assert _extract(root, root / "f") == 0
    out = capsys.readouterr().out
    assert "extracted 4 of 5 studies" in out and "failed BROKEN" in out
    table = read_feature_table(root / "f" / "features.csv")
    assert list(table.index) == list(labels.patient_id)
    assert {"label", "age", "vbmd", "node_vbmd", "patient_id", "cancellous:original_firstorder_Mean",
            "cortical:original_glcm_Contrast"} <= set(table.columns)
    # the cohort's own vbmd column keeps its name and values; the node's estimate follows it
    assert list(table["vbmd"]) == list(labels.vbmd_mg_cm3)
    assert (table["node_vbmd"] - table["vbmd"]).abs().max() < 20
    levels = pd.read_csv(root / "f" / "levels.csv")
    assert set(levels.level) == {"T11", "T12", "L1", "L2"} and levels.genant_grade.notna().all()
    provenance = json.loads((root / "f" / "features.provenance.json").read_text())
    assert set(provenance["failures"]) == {"BROKEN"} and provenance["done"] == 4
    before = {p.name: p.stat().st_mtime_ns for p in (root / "f" / "studies").iterdir()}
    assert _extract(root, root / "f") == 0
    after = {p.name: p.stat().st_mtime_ns for p in (root / "f" / "studies").iterdir()}
    assert before == after  # done studies are not recomputed; the broken one is retried


def test_shifted_masks_give_a_reliability_table(cohort):
    root, _ = cohort
    assert _extract(root, root / "f", "--workers", "2") == 0
    assert _extract(root, root / "shift", "--perturb", "shift", "--workers", "2") == 0
    base = read_feature_table(root / "f" / "features.csv")
    shifted = read_feature_table(root / "shift" / "features.csv")
    features = [c for c in base.columns if ":" in c]
    assert not base[features].equals(shifted[features])
    kept = reliable_features([base[features], shifted[features]], threshold=0.75)
    assert "cancellous:original_firstorder_Mean" in kept


def test_studies_without_a_mask_are_segmented(cohort):
    root, labels = cohort
    no_mask = pd.DataFrame({"study_id": labels.patient_id[:2], "image": labels.image_path[:2],
                            "label": labels.outcome[:2]})
    no_mask.to_csv(root / "no_mask.csv", index=False)
    assert main(["cohort", "extract", str(root / "no_mask.csv"), "--out", str(root / "seg"), "--features",
                 str(root / "features.txt"), "--vois", "cancellous"]) == 0
    documents = [json.loads(p.read_text()) for p in sorted((root / "seg" / "studies").glob("*.json"))]
    assert [d["segmentation"] for d in documents] == ["anatomical", "anatomical"]
    segmented = read_feature_table(root / "seg" / "features.csv")
    given = read_feature_table(root / "f" / "features.csv")
    column = "cancellous:original_firstorder_Mean"
    assert (segmented[column] - given.loc[segmented.index, column]).abs().max() < 25  # HU, same bone


def test_other_levels_are_extracted_and_combined_per_vertebra(cohort):
    root, labels = cohort
    assert _extract(root, root / "lumbar", "--levels", "L1", "L2", "L3") == 0
    long = pd.read_csv(root / "lumbar" / "features_long.csv")
    assert set(long.level) <= {"L1", "L2", "L3"} and "L3" in set(long.level)
    from inference.cohort.extract import table_from_extraction
    rows, _ = table_from_extraction(root / "lumbar", "per-vertebra")
    assert set(rows.index) == {f"{s}:{lv}" for s, lv in zip(long.study_id, long.level, strict=True)}
    assert {"study_id", "patient_id", "level", "level_vbmd", "genant_grade", "label"} <= set(rows.columns)
