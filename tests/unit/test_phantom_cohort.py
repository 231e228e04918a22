"""Synthetic cohort (labels.csv, risk model) and the ``scpnode phantom`` command."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict

from inference.phantom.cohort import LABEL_COLUMNS, draw_patients, fracture_risk, generate_cohort
from scpnode.cli import main


def test_cohort_writes_studies_and_labels(tmp_path):
    cohort = generate_cohort(5, tmp_path / "cohort", seed=3, shape=(64, 64, 48))
    with cohort.labels.open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == LABEL_COLUMNS
    assert len(rows) == 5 and len({row["patient_id"] for row in rows}) == 5
    for row in rows:
        image = sitk.ReadImage(str(cohort.folder / row["image_path"]))
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(cohort.folder / row["mask_path"])))
        assert image.GetSize() == (64, 64, 48)
        assert set(np.unique(mask)) == {0, 1, 2}
        truth = json.loads((cohort.folder / row["truth_path"]).read_text())
        assert truth["levels"]["L1"]["vbmd_mg_cm3"] == pytest.approx(float(row["vbmd_mg_cm3"]), abs=0.01)
        assert truth["spec"]["trabecular_heterogeneity"] == pytest.approx(float(row["heterogeneity"]), abs=1e-4)
        assert row["outcome"] in ("0", "1") and 0 < float(row["risk"]) < 1
        assert row["dicom_path"] == ""
    description = json.loads((cohort.folder / "cohort.json").read_text())
    assert description["risk_model"]["coefficients"]["vbmd_per_30"] < 0


def test_cohort_is_repeatable(tmp_path):
    first = generate_cohort(2, tmp_path / "a", seed=8, shape=(64, 64, 40))
    second = generate_cohort(2, tmp_path / "b", seed=8, shape=(64, 64, 40))
    assert first.members == second.members
    a = sitk.GetArrayFromImage(sitk.ReadImage(str(first.folder / first.members[1].image_path)))
    b = sitk.GetArrayFromImage(sitk.ReadImage(str(second.folder / second.members[1].image_path)))
    assert np.array_equal(a, b)


def test_risk_model_rewards_heterogeneity_beyond_density():
    drawn = draw_patients(6000, seed=1)
    outcome = drawn["outcome"]
    assert 0.1 < outcome.mean() < 0.35
    assert np.corrcoef(drawn["age"], drawn["vbmd"])[0, 1] < -0.3  # bone is lost with age
    density = drawn["vbmd"][:, None]
    both = np.column_stack([drawn["vbmd"], drawn["heterogeneity"]])
    auc = {name: roc_auc_score(outcome, cross_val_predict(LogisticRegression(), x, outcome, cv=5,
                                                          method="predict_proba")[:, 1])
           for name, x in (("density", density), ("both", both))}
    assert auc["both"] > auc["density"] + 0.02, auc
    assert fracture_risk(80.0, 0.6, 75, True) > fracture_risk(160.0, 0.2, 55, False)


def test_scpnode_phantom_writes_a_study(tmp_path, capsys):
    out = tmp_path / "study"
    code = main(["phantom", str(out), "--shape", "64", "64", "48", "--seed", "4", "--fracture", "L1:2:wedge",
                 "--transfer-syntax", "rle", "--position", "FFS"])
    assert code == 0
    assert len(list((out / "dicom").glob("*.dcm"))) == 48
    truth = json.loads((out / "truth.json").read_text())
    assert truth["levels"]["L1"]["fracture"] == {"grade": 2, "type": "wedge"}
    assert truth["dicom"]["patient_position"] == "FFS" and truth["dicom"]["files"] == 48
    assert "wrote 48 DICOM slices" in capsys.readouterr().out


def test_scpnode_phantom_writes_a_cohort(tmp_path):
    assert main(["phantom", str(tmp_path / "c"), "--cohort", "2", "--shape", "64", "64", "32"]) == 0
    assert (tmp_path / "c" / "labels.csv").read_text().count("\n") == 3


@pytest.mark.parametrize("arguments, message", [
    (["--fracture", "L1-2"], "LEVEL:GRADE:TYPE"),
    (["--fracture", "L1:5:wedge"], "grade 1-3"),
    (["--vbmd", "-3"], "vBMD"),
    (["--cohort", "0"], "at least one"),
])
def test_scpnode_phantom_refuses_bad_arguments_in_one_line(tmp_path, capsys, arguments, message):
    assert main(["phantom", str(tmp_path / "x"), "--shape", "64", "64", "48", *arguments]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
