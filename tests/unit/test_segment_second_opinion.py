"""Second opinion: a check backend that disagrees at a level flags the study, with both answers recorded.

Two test backends are registered on a phantom: one answers with the phantom's
true vertebrae and bodies, the other with the same labels moved one level
cranially (the mistake a miscounted rib makes). Where the two agree nothing is
flagged; where they are made to disagree every target level is named with its
centroid distance and Dice, in the warnings, ``segmentation.json`` and the SR's
algorithm notes. ``scpnode segment-validate`` reports each backend on its own.
"""

from __future__ import annotations

import csv
import json
import re
from io import BytesIO

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from dicom_sr import encode_seg, encode_sr
from inference.levels import TARGET_LEVELS
from inference.phantom import abdominal_ct, generate_phantom
from inference.segment import BackendOutput, api
from inference.segment.io import read_segmentation, write_segmentation
from inference.segment.relabel import shift_levels
from inference.segment.second_opinion import MAX_CENTROID_DISTANCE_MM, segment_with_second_opinion
from scpnode.cli import main
from scpnode.config import ConfigError, settings_from_dict
from scpnode.pipeline.analysis import algorithm_info
from tests.unit.test_dicom_sr_inputs import make_study


@pytest.fixture(scope="module")
def phantom():
    return generate_phantom(abdominal_ct(seed=3, shape=(112, 112, 64), pixel_spacing_mm=2.0,
                                         slice_spacing_mm=4.0, slice_thickness_mm=4.0))


@pytest.fixture
def backends(phantom, monkeypatch):
    """``truth`` and ``truth-again`` answer with the phantom's labels; ``shifted`` one level too high."""
    def truth(image, *, device, model_dir, lowest_level=None):
        return BackendOutput(phantom.vertebrae, phantom.bodies, version="true labels")

    def shifted(image, *, device, model_dir, lowest_level=None):
        return BackendOutput(shift_levels(phantom.vertebrae, -1), shift_levels(phantom.bodies, -1), version="one up")

    for name, backend in (("truth", truth), ("truth-again", truth), ("shifted", shifted)):
        monkeypatch.setitem(api._registered, name, backend)


def test_agreeing_backends_raise_no_flag(phantom, backends):
    result = segment_with_second_opinion(phantom.image, "truth", "truth-again")
    assert not result.needs_review
    assert not any("second opinion" in warning for warning in result.warnings)
    opinion = result.second_opinion
    assert opinion is not None and opinion.agrees and opinion.backend == "truth-again"
    assert [level.level for level in opinion.levels] == list(TARGET_LEVELS)
    assert all(level.centroid_distance_mm == 0.0 and level.body_dice == 1.0 for level in opinion.levels)


def test_backends_a_level_apart_flag_every_target_level(phantom, backends):
    result = segment_with_second_opinion(phantom.image, "truth", "shifted")
    assert result.needs_review
    assert result.levels["L1"].centroid_lps == segment_with_second_opinion(phantom.image, "truth", None
                                                                           ).levels["L1"].centroid_lps
    for name in TARGET_LEVELS:
        (warning,) = [w for w in result.warnings if f"disagrees with truth at {name}:" in w]
        found = re.fullmatch(rf"second opinion \(shifted\) disagrees with truth at {name}: "
                             r"body centroids (\d+\.\d) mm apart, body Dice (\d\.\d\d)", warning)
        assert found, warning
        assert float(found[1]) > 2 * MAX_CENTROID_DISTANCE_MM and float(found[2]) < 0.3
    assert not result.second_opinion.agrees


def test_only_one_backend_labelling_a_level_is_a_disagreement(phantom, backends, monkeypatch):
    def without_l2(image, *, device, model_dir, lowest_level=None):
        vertebrae = sitk.GetArrayFromImage(phantom.vertebrae)
        bodies = sitk.GetArrayFromImage(phantom.bodies)
        vertebrae[vertebrae == 21], bodies[bodies == 21] = 0, 0
        return BackendOutput(*[_like(array, phantom.vertebrae) for array in (vertebrae, bodies)])

    monkeypatch.setitem(api._registered, "no-l2", without_l2)
    result = segment_with_second_opinion(phantom.image, "truth", "no-l2")
    assert result.needs_review
    assert [w for w in result.warnings if "second opinion" in w] == [
        "second opinion (no-l2) disagrees with truth at L2: no-l2 labelled no L2"]


def _like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def test_both_answers_are_in_segmentation_json_and_the_sr_notes(phantom, backends, tmp_path):
    result = segment_with_second_opinion(phantom.image, "truth", "shifted")
    write_segmentation(result, tmp_path)
    document = json.loads((tmp_path / "segmentation.json").read_text())
    l1 = next(level for level in document["second_opinion"]["levels"] if level["level"] == "L1")
    assert l1["primary_centroid_lps"] == list(result.levels["L1"].centroid_lps)
    assert l1["check_centroid_lps"] != l1["primary_centroid_lps"] and l1["agrees"] is False
    assert document["second_opinion"]["backend"] == "shifted" and document["needs_review"] is True
    assert read_segmentation(tmp_path).second_opinion == result.second_opinion

    algorithm = algorithm_info(result)
    assert algorithm.notes == ("second_opinion=shifted one up: disagrees at T11, T12, L1, L2",)
    (note,) = algorithm.level_notes["L1"]
    assert note.startswith("second_opinion_L1=truth body centroid (") and " mm apart; body Dice 0." in note
    source, segmentation, measurements = make_study((24, 48, 48))
    seg = encode_seg(source, segmentation, algorithm)
    buffer = BytesIO()
    encode_sr(source, seg, segmentation, measurements, algorithm).save_as(buffer, enforce_file_format=True)
    texts = _text_values(pydicom.dcmread(BytesIO(buffer.getvalue())))
    assert algorithm.notes[0] in texts and note in texts


def _text_values(dataset: pydicom.Dataset) -> list[str]:
    found = []
    for item in dataset.get("ContentSequence", []):
        if "TextValue" in item:
            found.append(str(item.TextValue))
        found.extend(_text_values(item))
    return found


def test_agreeing_check_leaves_a_note_and_no_level_notes(phantom, backends):
    algorithm = algorithm_info(segment_with_second_opinion(phantom.image, "truth", "truth-again"))
    assert algorithm.notes == ("second_opinion=truth-again true labels: agrees",) and not algorithm.level_notes


@pytest.mark.parametrize(("pipeline", "message"), [
    ({"segmentation_check_backend": "nnunet"}, 'segmentation_check_backend "nnunet" needs segmentation_check_model_dir'),
    ({"segmentation_backend": "nnunet"}, 'segmentation_backend "nnunet" needs segmentation_model_dir'),
    ({"segmentation_check_backend": "anatomical"}, "the segmentation backend itself with the same model"),
])
def test_check_backend_settings_are_validated(pipeline, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        settings_from_dict({"pipeline": pipeline})


def test_check_backend_settings_load(tmp_path):
    settings = settings_from_dict({"pipeline": {"segmentation_check_backend": "nnunet",
                                                "segmentation_check_model_dir": str(tmp_path)}})
    assert settings.pipeline.segmentation_check_backend == "nnunet"
    assert settings.pipeline.segmentation_check_model_dir == tmp_path
    assert settings_from_dict({}).pipeline.segmentation_check_backend is None


def test_segment_validate_reports_each_backend(phantom, backends, tmp_path, capsys):
    sitk.WriteImage(phantom.image, str(tmp_path / "ct.nii.gz"))
    sitk.WriteImage(phantom.vertebrae, str(tmp_path / "reference.nii.gz"))
    with (tmp_path / "cases.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["image", "reference"], ["ct.nii.gz", "reference.nii.gz"]])
    out = tmp_path / "validation"
    rc = main(["segment-validate", str(tmp_path / "cases.csv"), "--out", str(out),
               "--backend", "truth", "--backend", "shifted"])
    assert rc == 1  # the shifted backend is confidently wrong
    summary = json.loads((out / "summary.json").read_text())
    truth, shifted = summary["backends"]["truth"], summary["backends"]["shifted"]
    assert (truth["target_levels_right"], truth["target_levels"], truth["confident_wrong"]) == (4, 4, 0)
    assert (shifted["target_levels_right"], shifted["confident_wrong"]) == (0, 4)
    assert truth["median_vertebra_dice"] == 1.0
    printed = capsys.readouterr().out
    assert "[truth] 1 studies, 0 flagged for review; target levels right 4/4" in printed
    assert "[shifted] 1 studies, 0 flagged for review; target levels right 0/4" in printed
    for model_dir, error in (("shifted=/nonexistent", "backend 'shifted' is not among those validated"),
                             ("truth=/nonexistent", "model folder not found: /nonexistent")):
        assert main(["segment-validate", str(tmp_path / "cases.csv"), "--out", str(out), "--backend", "truth",
                     "--model-dir", model_dir]) == 2
        assert error in capsys.readouterr().err


def test_segment_command_takes_a_check_backend(phantom, backends, tmp_path, capsys):
    sitk.WriteImage(phantom.image, str(tmp_path / "ct.nii.gz"))
    out = tmp_path / "seg"
    assert main(["segment", str(tmp_path / "ct.nii.gz"), "--out", str(out), "--backend", "truth",
                 "--check-backend", "shifted"]) == 0
    printed = capsys.readouterr().out
    assert "NEEDS REVIEW" in printed and "warning: second opinion (shifted) disagrees with truth at L1" in printed
    document = json.loads((out / "segmentation.json").read_text())
    assert document["backend"] == "truth" and document["second_opinion"]["agrees"] is False
