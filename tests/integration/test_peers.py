"""The peer fixtures later tests build on: Orthanc from Debian, DCMTK against it."""

import subprocess

import pytest

pytestmark = pytest.mark.integration


def test_orthanc_starts_on_free_loopback_port(orthanc):
    system = orthanc.get("/system")
    assert system["DicomAet"] == "ORTHANC"
    assert system["DicomPort"] == orthanc.dicom_port
    assert orthanc.studies() == []


def test_dcmtk_echoscu_against_orthanc(orthanc, require_tool):
    echoscu = require_tool("echoscu")
    result = subprocess.run(
        [echoscu, "-v", "-aet", "TESTSCU", "-aec", orthanc.aet, "127.0.0.1", str(orthanc.dicom_port)],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "Received Echo Response (Success)" in result.stderr


def test_dcmtk_storescu_to_orthanc(orthanc, require_tool, shared_data):
    storescu = require_tool("storescu")
    folder = shared_data / "interop" / "dcmqi" / "segmentations" / "ct-3slice"
    result = subprocess.run(
        [storescu, "-aet", "TESTSCU", "-aec", orthanc.aet, "+sd", "+r", "127.0.0.1",
         str(orthanc.dicom_port), str(folder)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert orthanc.get("/statistics")["CountInstances"] == len(list(folder.iterdir()))
