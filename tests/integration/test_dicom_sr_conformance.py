"""Our SEG, SR and visual report against real peers: dicom3tools' dciodvfy,
a real Orthanc (C-STORE with DCMTK's storescu, then retrieved over REST), and
a visual report rendered on real CT anatomy.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image

from dicom_sr import AlgorithmInfo, ResultObjects, encode_results
from dicom_sr import codes
from dicom_sr.readers import read_seg, read_sr
from inference.levels import TARGET_LEVELS
from inference.measure import measure_study
from inference.models import load_model
from inference.phantom import abdominal_ct, generate_phantom, write_phantom_study
from inference.results import LevelIdentification, SegmentationResult, StudyScore
from inference.segment.levels import describe_levels
from inference.volume import load_volume
from tests.unit.test_dicom_sr_inputs import make_measurements, make_segmentation, make_study, write_ct_datasets

pytestmark = pytest.mark.integration

ALGORITHM = AlgorithmInfo(name="scpnode anatomical", version="0.3.1", model_id="anatomical-rules-2")


@dataclass(frozen=True)
class Validation:
    """What dciodvfy said about one file."""

    errors: list[str]
    warnings: list[str]


@pytest.fixture(scope="module")
def dciodvfy(require_tool: Callable[[str], str]) -> Callable[[Path], Validation]:
    """Validate a DICOM file against its IOD with dicom3tools' ``dciodvfy``."""
    binary = require_tool("dciodvfy")

    def validate(path: Path) -> Validation:
        run = subprocess.run([binary, str(path)], capture_output=True, text=True, timeout=120)
        lines = [line.strip() for line in (run.stdout + run.stderr).splitlines()]
        return Validation(errors=[line for line in lines if line.startswith("Error")],
                          warnings=[line for line in lines if line.startswith("Warning")])

    return validate


def _save(objects: ResultObjects, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind, dataset in (("seg", objects.seg), ("sr", objects.sr), ("report", objects.report)):
        paths[kind] = folder / f"{kind}.dcm"
        dataset.save_as(paths[kind], enforce_file_format=True)
    return paths


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory):
    source, segmentation, measurements = make_study((40, 96, 96))
    objects = encode_results(source, segmentation, measurements, ALGORITHM)
    return source, objects, _save(objects, tmp_path_factory.mktemp("dicom_sr"))


def test_every_object_passes_dciodvfy_without_errors(synthetic, dciodvfy, output_dir: Path) -> None:
    _, _, paths = synthetic
    notes = []
    for kind, path in paths.items():
        result = dciodvfy(path)
        assert result.errors == [], f"{kind}: {result.errors}"
        notes += [f"{kind}: {warning}" for warning in sorted(set(result.warnings))]
    (output_dir / "dciodvfy_warnings.txt").write_text("\n".join(notes) + "\n")
    print("\n".join(notes))


def test_dcmtk_renders_the_sr_as_text_that_names_every_number(synthetic, require_tool, output_dir: Path) -> None:
    """Many PACS show an SR as text: dsrdump and dsr2html must read it, each number under its concept name."""
    _, _, paths = synthetic
    dump = subprocess.run([require_tool("dsrdump"), str(paths["sr"])], capture_output=True, text=True, timeout=60)
    assert dump.returncode == 0 and "Warning" not in dump.stderr and "Error" not in dump.stderr, dump.stderr
    html = subprocess.run([require_tool("dsr2html"), str(paths["sr"])], capture_output=True, text=True, timeout=60)
    assert html.returncode == 0, html.stderr
    (output_dir / "sr_dsrdump.txt").write_text(dump.stdout)
    (output_dir / "sr_dsr2html.html").write_text(html.stdout)
    text = " ".join(re.sub(r"<[^>]+>", " ", html.stdout).split())
    assert '<contains NUM:(,,"Attenuation Coefficient")="151.3"' in dump.stdout
    for phrase in ("Attenuation Coefficient: 151.3 [hnsf&#39;U]", "Volume: 9.87654321 mL",
                   "Finding Site = L1 vertebra", "Derived Imaging Measurements", "Qualitative Evaluations",
                   "Vertebral level identification:", "Tracking Identifier = \"L2 vertebral body\""):
        assert phrase in text, phrase


def test_a_multiclass_research_score_is_coded_validated_and_rendered(tmp_path: Path, dciodvfy, require_tool,
                                                                     output_dir: Path) -> None:
    """Class probabilities of a multi-class model: one NUM per class under the model's algorithm, the
    most probable class and "research use only" as coded evaluations, no fracture-risk category."""
    source, segmentation, measurements = make_study((40, 96, 96))
    measurements.score = StudyScore(model_id="fracture-type-site", model_version="1.0.0", calibrated=True,
                                    class_probabilities={"biconcave": 0.25, "crush": 0.125, "wedge": 0.625},
                                    predicted_class="wedge")
    objects = encode_results(source, segmentation, measurements, ALGORITHM)
    paths = _save(objects, tmp_path)
    assert dciodvfy(paths["sr"]).errors == []
    sr = read_sr(paths["sr"])
    assert {m.name.meaning: m.value for m in sr.derived if m.name.value.startswith("C-")} == {
        "Class probability, biconcave (research use)": 0.25, "Class probability, crush (research use)": 0.125,
        "Class probability, wedge (research use)": 0.625}
    evaluations = {name.meaning: value.meaning for name, value in sr.evaluations}
    assert evaluations[codes.PREDICTED_CLASS.meaning] == "wedge"
    assert evaluations[codes.INTENDED_USE.meaning] == codes.RESEARCH_USE_ONLY.meaning
    assert evaluations[codes.FRACTURE_RISK_CATEGORY.meaning] == codes.RISK_NOT_COMPUTED.meaning
    html = subprocess.run([require_tool("dsr2html"), str(paths["sr"])], capture_output=True, text=True, timeout=60)
    assert html.returncode == 0, html.stderr
    text = " ".join(re.sub(r"<[^>]+>", " ", html.stdout).split())
    assert "Class probability, wedge (research use): 0.625" in text and "Research use only" in text
    Image.fromarray(objects.report.pixel_array).save(output_dir / "visual_report_multiclass.png")


def test_our_readers_load_our_objects(synthetic) -> None:
    source, objects, paths = synthetic
    seg = read_seg(paths["seg"])
    assert [s.label for s in seg.segments] == [f"{lv} {c}" for lv in TARGET_LEVELS for c in ("cortical", "cancellous")]
    sr = read_sr(paths["sr"])
    # The compartment findings are the SEG's segments: the same Tracking UIDs.
    segment_uids = {s.tracking_uid for s in seg.segments}
    assert len(segment_uids) == 8 and segment_uids <= {g.tracking_uid for g in sr.groups}
    assert {g.template for g in sr.groups} == {"TID 1410"}


def test_orthanc_stores_and_returns_all_three_objects(synthetic, orthanc, require_tool) -> None:
    source, objects, paths = synthetic
    storescu = require_tool("storescu")
    sent = subprocess.run(
        [storescu, "--required", "-aet", "SCPNODE", "-aec", orthanc.aet, orthanc.host, str(orthanc.dicom_port),
         *[str(p) for p in paths.values()]],
        capture_output=True, text=True, timeout=120,
    )
    assert sent.returncode == 0, sent.stderr
    stored = {item["MainDicomTags"]["SOPInstanceUID"]: item for item in orthanc.study_instances(source[0].StudyInstanceUID)}
    expected = {ds.SOPInstanceUID: ds for ds in objects}
    assert set(stored) == set(expected)
    for uid, original in expected.items():
        data = orthanc.get(f"/instances/{stored[uid]['ID']}/file")
        retrieved = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
        assert retrieved.SOPClassUID == original.SOPClassUID
        assert retrieved.StudyInstanceUID == source[0].StudyInstanceUID
        assert retrieved.SeriesDescription == original.SeriesDescription
    seg_file = orthanc.get(f"/instances/{stored[objects.seg.SOPInstanceUID]['ID']}/file")
    seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(pydicom.filebase.DicomBytesIO(seg_file)))
    assert seg.number_of_segments == 8
    series = {orthanc.get(f"/series/{s}")["MainDicomTags"].get("Modality") for s in
              orthanc.get(f"/studies/{orthanc.find_study(source[0].StudyInstanceUID)}")["Series"]}
    assert series == {"SEG", "SR", "OT"}


def _real_ct_study(shared_data: Path) -> tuple[list[pydicom.Dataset], SegmentationResult]:
    """The TotalSegmentator abdomen CT (3 mm) with compartments made from its body labels.

    Cancellous core = vertebral body eroded by one voxel; cortical shell = the rest.
    """
    folder = shared_data / "real_ct" / "abdomen_3mm"
    ct = sitk.Cast(sitk.ReadImage(str(folder / "ct.nii.gz")), sitk.sitkFloat32)
    vertebrae = sitk.ReadImage(str(folder / "reference_vertebrae.nii.gz"))
    in_body = sitk.ReadImage(str(folder / "reference_vertebrae_body.nii.gz")) == 1
    bodies = sitk.Cast(vertebrae * sitk.Cast(in_body, vertebrae.GetPixelID()), sitk.sitkUInt8)
    core = sitk.BinaryErode(sitk.Cast(in_body, sitk.sitkUInt8), [1, 1, 1])
    compartments = sitk.Cast(in_body, sitk.sitkUInt8) + sitk.Cast(core, sitk.sitkUInt8)
    return write_ct_datasets(ct), make_segmentation(bodies, compartments)


def test_visual_report_on_real_ct(shared_data: Path, output_dir: Path, dciodvfy) -> None:
    source, segmentation = _real_ct_study(shared_data)
    measurements = make_measurements()
    labels = set(np.unique(sitk.GetArrayViewFromImage(segmentation.bodies)))
    measurements.levels = {name: lv for name, lv in measurements.levels.items() if lv.verse_id in labels}
    objects = encode_results(source, segmentation, measurements, ALGORITHM)
    paths = _save(objects, output_dir)
    pixels = objects.report.pixel_array
    Image.fromarray(pixels).save(output_dir / "visual_report_real_ct.png")
    assert pixels.shape == (800, 1280, 3)
    for kind, path in paths.items():
        assert dciodvfy(path).errors == [], kind
    assert np.ptp(pixels[:, :500]) > 100


def test_phantom_study_measured_and_scored_encodes_and_validates(tmp_path: Path, output_dir: Path, dciodvfy) -> None:
    """The pipeline's path on a phantom: DICOM files -> load_volume -> measure_study -> encode_results."""
    phantom = generate_phantom(abdominal_ct(seed=11, shape=(160, 160, 120)))
    written = write_phantom_study(phantom, tmp_path / "study")
    volume = load_volume(written.dicom_folder)
    description = describe_levels(phantom.vertebrae, phantom.bodies)
    segmentation = SegmentationResult(vertebrae=phantom.vertebrae, bodies=phantom.bodies,
                                      compartments=phantom.compartments, levels=description.levels,
                                      backend="phantom-truth")
    measurements = measure_study(volume, segmentation, load_model("che2025-published"))
    headers = [pydicom.dcmread(path, stop_before_pixels=True) for path in sorted(written.dicom_folder.iterdir())]
    objects = encode_results(headers, segmentation, measurements, ALGORITHM, ct=volume)
    paths = _save(objects, output_dir)
    Image.fromarray(objects.report.pixel_array).save(output_dir / "visual_report_phantom.png")
    for kind, path in paths.items():
        assert dciodvfy(path).errors == [], kind
    sr = read_sr(paths["sr"])
    measured = [name for name in TARGET_LEVELS if measurements.levels[name].cancellous is not None]
    assert measured and {g.tracking_id for g in sr.groups} >= {
        f"{name} cancellous core of vertebral body" for name in measured}
    assert objects.sr.StudyInstanceUID == headers[0].StudyInstanceUID


def test_unconfirmed_and_corrected_results_say_so_and_validate(tmp_path: Path, dciodvfy) -> None:
    """Labels that need review are named in every object; the corrected SR names the reviewer and its
    predecessor, and all of them pass dciodvfy."""
    source, segmentation, measurements = make_study((40, 96, 96))
    segmentation.needs_review = True
    measurements.level_identification = LevelIdentification.NEEDS_REVIEW
    unconfirmed = encode_results(source, segmentation, measurements, ALGORITHM)
    first = _save(unconfirmed, tmp_path / "unconfirmed")

    segmentation.confirmed_by = "rad.reviewer"
    measurements.level_identification = LevelIdentification.CONFIRMED
    corrected = encode_results(source, segmentation, measurements, ALGORITHM, predecessor=unconfirmed.sr)
    second = _save(corrected, tmp_path / "corrected")

    for paths in (first, second):
        for kind, path in paths.items():
            assert dciodvfy(path).errors == [], f"{path.parent.name} {kind}"
    assert all("LEVELS UNCONFIRMED" in ds.SeriesDescription for ds in unconfirmed)
    assert all("levels confirmed" in ds.SeriesDescription for ds in corrected)

    def identification(path: Path) -> str:
        return read_sr(path).evaluation(codes.LEVEL_IDENTIFICATION.meaning).meaning

    assert identification(first["sr"]) == codes.LEVEL_IDENTIFICATION_VALUES["needs_review"].meaning
    assert identification(second["sr"]) == codes.LEVEL_IDENTIFICATION_VALUES["confirmed"].meaning
    predecessor = corrected.sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert predecessor.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == unconfirmed.sr.SOPInstanceUID
    observers = [item for item in pydicom.dcmread(second["sr"]).ContentSequence if "PersonName" in item]
    assert [item.PersonName.family_name for item in observers] == ["rad.reviewer"]
    assert "PredecessorDocumentsSequence" not in unconfirmed.sr
