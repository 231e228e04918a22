"""Phantom DICOM series against real readers and peers: pydicom, SimpleITK, DCMTK, dicom3tools, Orthanc."""

from __future__ import annotations

import subprocess

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from inference.phantom import PhantomSpec, generate_phantom, write_ct_series, write_phantom_study
from inference.phantom.dicom import PatientInfo, SeriesInfo, StudyInfo
from inference.volume import load_volume

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def phantom():
    spec = PhantomSpec(seed=12, top_level="T11", bottom_level="L2", shape=(96, 96, 40), pixel_spacing_mm=4.0,
                       slice_spacing_mm=3.5, slice_thickness_mm=3.5, patient_position="FFS")
    return generate_phantom(spec)


@pytest.fixture(scope="module")
def studies(phantom, tmp_path_factory):
    """The phantom written once per transfer syntax."""
    root = tmp_path_factory.mktemp("phantom_dicom")
    return {syntax: write_phantom_study(phantom, root / syntax.name.split()[0], transfer_syntax=syntax)
            for syntax in (ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless)}


def _resampled_back(volume: sitk.Image, like: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.Resample(volume, like, sitk.Transform(), sitk.sitkNearestNeighbor))


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless], ids=lambda s: s.name)
def test_pydicom_and_simpleitk_read_the_series_losslessly(studies, phantom, syntax):
    study = studies[syntax]
    files = study.series.files
    assert len(files) == 40
    first = pydicom.dcmread(files[0])
    assert first.file_meta.TransferSyntaxUID == syntax
    assert first.SOPClassUID == CTImageStorage
    assert first.PatientPosition == "FFS"
    assert [float(v) for v in first.ImageOrientationPatient] == [-1, 0, 0, 0, 1, 0]
    uids = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
    assert len(uids) == len(files)
    hu = first.pixel_array * float(first.RescaleSlope) + float(first.RescaleIntercept)
    assert hu.min() >= -1024 and hu.max() < 3000
    volume = load_volume(study.dicom_folder)
    expected = np.rint(sitk.GetArrayFromImage(phantom.image))
    assert np.abs(_resampled_back(volume, phantom.image) - expected).max() <= 1.0


def test_series_modules_and_uids_are_consistent(studies):
    study = studies[ExplicitVRLittleEndian]
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in study.series.files]
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "PatientID", "AccessionNumber"):
        assert len({getattr(h, key) for h in headers}) == 1, key
    assert headers[0].StudyInstanceUID == study.series.study.study_uid
    assert [int(h.InstanceNumber) for h in headers] == list(range(1, 41))
    z = [float(h.ImagePositionPatient[2]) for h in headers]
    assert np.all(np.diff(z) < 0)  # acquired head to feet
    assert np.allclose(-np.diff(z), float(headers[0].SliceThickness), atol=0.01)
    for h in headers:
        assert h.Modality == "CT" and h.ImageType == ["ORIGINAL", "PRIMARY", "AXIAL"]
        assert h.Manufacturer and h.StationName and h.KVP and h.ConvolutionKernel
        assert float(h.RescaleIntercept) == -1024 and float(h.RescaleSlope) == 1


def test_dciodvfy_finds_no_error_in_any_file(studies, require_tool):
    dciodvfy = require_tool("dciodvfy")
    for syntax, study in studies.items():
        for path in study.series.files:
            result = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
            report = result.stdout + result.stderr
            assert "Error" not in report, f"{syntax.name} {path.name}:\n{report}"


def test_dcmdump_reads_every_transfer_syntax(studies, require_tool):
    dcmdump = require_tool("dcmdump")
    for syntax, study in studies.items():
        result = subprocess.run([dcmdump, "-Un", "+P", "0002,0010", "+P", "0018,5100", str(study.series.files[5])],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert syntax in result.stdout and "FFS" in result.stdout


def test_orthanc_accepts_the_series_over_dicom(studies, orthanc, require_tool):
    storescu = require_tool("storescu")
    for syntax, propose in ((RLELossless, "-xr"), (JPEG2000Lossless, "-xv")):
        study = studies[syntax]
        result = subprocess.run(
            [storescu, "-aet", "PHANTOMSCU", "-aec", orthanc.aet, "+sd", "+r", propose, "127.0.0.1",
             str(orthanc.dicom_port), str(study.dicom_folder)],
            capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{syntax.name}: {result.stderr}"
    # the same phantom in two encodings is the same study with the same 40 instances
    instances = orthanc.study_instances(studies[RLELossless].series.study.study_uid)
    assert len(instances) == 40
    assert orthanc.get("/statistics")["CountInstances"] == 40
    # Orthanc decodes the stored pixels (the Debian build has no JPEG 2000 decoder, RLE it has)
    rle = next(i for i in instances
               if orthanc.get(f"/instances/{i['ID']}/metadata/TransferSyntax").decode() == RLELossless)
    assert orthanc.request("GET", f"/instances/{rle['ID']}/frames/0/preview").startswith(b"\x89PNG")


def test_generic_writer_turns_the_real_nifti_ct_into_a_series(shared_data, tmp_path, require_tool):
    real = sitk.ReadImage(str(shared_data / "real_ct" / "abdomen_3mm" / "ct.nii.gz"))
    written = write_ct_series(
        real, tmp_path / "real", patient=PatientInfo(name="REAL^ABDOMEN", patient_id="REAL0001"),
        study=StudyInfo(description="CT ABDOMEN real"), series=SeriesInfo(description="Abdomen 3mm"),
        transfer_syntax=RLELossless, seed=1)
    assert len(written.files) == real.GetSize()[2]
    volume = load_volume(tmp_path / "real")
    assert np.abs(_resampled_back(volume, real) - np.rint(sitk.GetArrayFromImage(real))).max() <= 1.0
    dciodvfy = require_tool("dciodvfy")
    report = subprocess.run([dciodvfy, str(written.files[10])], capture_output=True, text=True, timeout=60)
    assert "Error" not in report.stdout + report.stderr
