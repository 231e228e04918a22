"""Selection rules: each rule passes and fails for the right reason; the rule tester command."""

from __future__ import annotations

import dataclasses
import math

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from scpnode.cli import main
from scpnode.config import SelectionSettings
from scpnode.pipeline.selection import evaluate
from scpnode.storage.index import InstanceMeta


def series(count: int = 60, spacing: float = 2.5, **changes) -> list[InstanceMeta]:
    base = InstanceMeta(sop_instance_uid="1", sop_class_uid="1.2.840.10008.5.1.4.1.1.2", study_instance_uid="1.2",
                        series_instance_uid="1.2.3", modality="CT", image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
                        series_description="Abdomen 2.5 B30f", slice_thickness=2.5, pixel_spacing=(0.75, 0.75),
                        orientation=(1, 0, 0, 0, 1, 0), gantry_tilt=0.0, rows=512, columns=512)
    return [dataclasses.replace(base, sop_instance_uid=f"1.{i}", positions=((0.0, 0.0, -i * spacing),), **changes)
            for i in range(count)]


def failed_rules(instances, **settings) -> dict[str, str]:
    decision = evaluate(instances, SelectionSettings(**settings))
    return {r.rule: r.detail for r in decision.failed}


def test_a_regular_axial_ct_is_selected():
    decision = evaluate(series(), SelectionSettings())
    assert decision.selected and decision.reason is None
    assert len(decision.results) == 11


@pytest.mark.parametrize("changes, rule, detail", [
    ({"modality": "MR"}, "modality", "MR not in ['CT']"),
    ({"image_type": ("DERIVED", "SECONDARY", "AXIAL")}, "image_type", "DERIVED\\SECONDARY\\AXIAL: missing ORIGINAL/PRIMARY"),
    ({"slice_thickness": 6.0}, "slice_thickness", "6 mm > 5 mm"),
    ({"pixel_spacing": (2.0, 2.0)}, "pixel_spacing", "2-2 mm outside 0.3-1.5 mm"),
    ({"series_description": "Thorax LUNG 1.0"}, "exclude_keywords", "excluded keyword ['LUNG']"),
    ({"series_description": "Patient Dose Report"}, "exclude_keywords", "excluded keyword ['DOSE REPORT']"),
])
def test_each_rule_rejects_with_its_reason(changes, rule, detail):
    assert failed_rules(series(**changes)) == {rule: detail}


def test_a_localizer_fails_image_type_and_the_keyword_rule():
    assert failed_rules(series(image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))) == {
        "image_type": "ORIGINAL\\PRIMARY\\LOCALIZER: a localizer", "exclude_keywords": "excluded keyword ['LOCALIZER']"}


def test_low_dose_ct_is_not_excluded_by_the_dose_report_keyword():
    assert failed_rules(series(series_description="Low dose chest-abdomen 2.5")) == {}


def test_derived_series_pass_only_when_allowed():
    derived = series(image_type=("DERIVED", "PRIMARY", "AXIAL"))
    assert "image_type" in failed_rules(derived)
    assert failed_rules(derived, allow_derived=True) == {}


def test_slices_coverage_and_spacing_limits():
    assert failed_rules(series(count=10)) == {"slices": "10 slices < 20", "coverage": "22 mm craniocaudal < 100 mm"}
    assert failed_rules(series(spacing=6.0, slice_thickness=5.0)) == {
        "geometry": "slice spacing 6 mm > 5 mm"}


def test_geometry_irregular_duplicate_and_mixed_orientation():
    irregular = series()
    irregular[10] = dataclasses.replace(irregular[10], positions=((0.0, 0.0, -26.5),))
    assert failed_rules(irregular)["geometry"].startswith("irregular slice spacing")
    duplicate = series()
    duplicate[3] = dataclasses.replace(duplicate[3], positions=duplicate[2].positions)
    assert failed_rules(duplicate)["geometry"] == "two slices at the same location"
    mixed = series()
    mixed[0] = dataclasses.replace(mixed[0], orientation=(1, 0, 0, 0, 0, -1))
    assert failed_rules(mixed)["geometry"] == "more than one image orientation"


def test_gantry_tilt_from_the_header_and_from_the_geometry():
    assert failed_rules(series(gantry_tilt=12.0))["gantry_tilt"] == "12 deg > 0.5 deg"
    tilted = [dataclasses.replace(m, positions=((0.0, m.positions[0][2] * math.tan(math.radians(10)),
                                                 m.positions[0][2]),)) for m in series()]
    assert failed_rules(tilted)["gantry_tilt"] == "10 deg > 0.5 deg"


def test_include_keywords_and_contrast():
    assert failed_rules(series(), include_keywords=["SPINE"]) == {
        "include_keywords": "none of ['SPINE'] in descriptions/body part"}
    assert failed_rules(series(body_part_examined="SPINE"), include_keywords=["SPINE"]) == {}
    assert failed_rules(series(contrast_agent="IOMERON 350"), allow_contrast=False) == {
        "contrast": "contrast agent ['IOMERON 350'] (not allowed)"}
    assert failed_rules(series(contrast_agent="NONE"), allow_contrast=False) == {}


def test_enhanced_ct_frames_are_judged_like_slices():
    ds = Dataset()
    ds.SOPInstanceUID, ds.SOPClassUID = "1.9", "1.2.840.10008.5.1.4.1.1.2.1"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = "1.2", "1.2.9", "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.Rows = ds.Columns = 512
    shared = Dataset()
    measures, plane = Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = [0.7, 0.7], 2.0
    plane.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = Sequence([measures]), Sequence([plane])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for i in range(80):
        frame, position = Dataset(), Dataset()
        position.ImagePositionPatient = [0, 0, -2.0 * i]
        frame.PlanePositionSequence = Sequence([position])
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    meta = InstanceMeta.from_dataset(ds)
    assert len(meta.positions) == 80 and meta.slice_thickness == 2.0 and meta.pixel_spacing == (0.7, 0.7)
    assert evaluate([meta], SelectionSettings()).selected


def test_rules_test_command_shows_every_rule_for_the_real_pet_ct_slices(shared_data, capsys):
    code = main(["rules", "test", str(shared_data / "real_ct" / "pet_ct_slices")])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  coverage          38 mm craniocaudal < 100 mm" in out
    assert "pass  image_type        ORIGINAL\\PRIMARY\\AXIAL\\CT_SOM5 SPI" in out
    assert "=> rejected: coverage: 38 mm craniocaudal < 100 mm" in out


def test_rules_test_command_on_a_folder_without_dicom(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["rules", "test", str(tmp_path)]) == 2
    assert "no DICOM files" in capsys.readouterr().err


def test_rules_test_command_ranks_the_selected_series_of_a_study(tmp_path, capsys):
    import SimpleITK as sitk

    from inference.phantom import write_ct_series
    from inference.phantom.dicom import SeriesInfo, StudyInfo

    study = StudyInfo(study_uid="1.2.826.0.1.3680043.8.498.77")
    for number, (slices, spacing, kernel, description) in enumerate(
            [(40, 3.0, "B30f", "Abdomen 3.0"), (60, 2.0, "B30f", "Abdomen 2.0"), (60, 2.0, "B70f", "Abdomen 2.0 bone")],
            start=2):
        image = sitk.Image(64, 64, slices, sitk.sitkInt16)
        image.SetSpacing((0.8, 0.8, spacing))
        write_ct_series(image, tmp_path / description, study=study, seed=number,
                        series=SeriesInfo(series_number=number, description=description, convolution_kernel=kernel))
    assert main(["rules", "test", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "study 1.2.826.0.1.3680043.8.498.77: 3 selected series, ranked by coverage, kernel, phase, thickness" in out
    ranking = [line.strip() for line in out.splitlines() if line.strip()[:2] in ("1.", "2.", "3.")]
    assert ranking[0].startswith("1. Abdomen 2.0:") and ranking[0].endswith("=> analysed")
    assert ranking[1].startswith("2. Abdomen 3.0:") and "thickness: 2 mm slices preferred to 3 mm slices" in ranking[1]
    assert ranking[2].startswith("3. Abdomen 2.0 bone:") and "sharp kernel (B70f)" in ranking[2]
