"""One result per study, end to end: a PACS sends a routine study as many series, the node analyses one.

Orthanc holds an abdominal CT as a hospital's scanner leaves it: a localizer,
a thin and a thick soft-tissue reconstruction, a thin bone-kernel one and a
dose report. It sends the study to the node; the node must send back one SEG,
one SR and one report, made from the series its preference picks, and keep
one worklist row. The same study sent again adds nothing; a better series sent
later supersedes the first analysis once.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
import SimpleITK as sitk

from inference.phantom import abdominal_ct, generate_phantom, write_ct_series
from inference.phantom.dicom import PatientInfo, SeriesInfo, StudyInfo
from scpnode import worklist
from scpnode.delivery import outbox
from scpnode.schema import open_node_database
from scpnode.storage import index
from scpnode.storage.index import SeriesState
from tests.e2e.conftest import PHANTOM_SHAPE, push_study, series_of_study

pytestmark = pytest.mark.e2e

PATIENT = PatientInfo(name="CHOICE^STUDY", patient_id="CHOICE0001")
STUDY = StudyInfo(study_uid=pydicom.uid.generate_uid(), accession_number="CHOICE1", description="CT ABDOMEN")


def _series(image: sitk.Image, folder: Path, number: int, description: str, **values) -> list[Path]:
    info = SeriesInfo(series_number=number, description=description, body_part="ABDOMEN", **values)
    return write_ct_series(image, folder, patient=PATIENT, study=STUDY, series=info, seed=number).files


def _sr_source_series(pacs, study_uid: str) -> set[str]:
    """Series Instance UIDs of the CT images the study's SRs in the PACS reference as evidence."""
    found = set()
    orthanc_id = pacs.find_study(study_uid)
    for series in pacs.get(f"/studies/{orthanc_id}/series?expand"):
        if series["MainDicomTags"].get("Modality") != "SR":
            continue
        for instance in series["Instances"]:
            ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(pacs.get(f"/instances/{instance}/file")))
            found |= {s.SeriesInstanceUID for study in ds.CurrentRequestedProcedureEvidenceSequence
                      for s in study.ReferencedSeriesSequence if s.ReferencedSOPSequence[0].ReferencedSOPClassUID
                      == pydicom.uid.CTImageStorage}
    return found


def test_one_study_many_series_one_result_then_resend_and_a_better_series_later(node_and_pacs, tmp_path) -> None:
    thin = generate_phantom(abdominal_ct(31, shape=PHANTOM_SHAPE)).image          # ~2.1 mm slices
    thick = generate_phantom(abdominal_ct(31, shape=(288, 288, 125))).image       # 3.0 mm slices
    middle = thin[:, :, thin.GetSize()[2] // 2:thin.GetSize()[2] // 2 + 1]
    files = {
        "localizer": _series(middle, tmp_path / "loc", 1, "Topogram 0.6 T20s",
                             image_type=("ORIGINAL", "PRIMARY", "LOCALIZER")),
        "thin": _series(thin, tmp_path / "thin", 2, "Abdomen 2.0 soft tissue", convolution_kernel="B30f"),
        "thick": _series(thick, tmp_path / "thick", 3, "Abdomen 3.0 soft tissue", convolution_kernel="B30f"),
        "bone": _series(thin, tmp_path / "bone", 4, "Abdomen 2.0 bone", convolution_kernel="B70f"),
        "dose": _series(middle, tmp_path / "dose", 999, "Dose Report", image_type=("DERIVED", "SECONDARY", "OTHER")),
    }
    uids = {name: pydicom.dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID
            for name, paths in files.items()}
    push_study(node_and_pacs.pacs, [p for paths in files.values() for p in paths], STUDY.study_uid)

    jobs = node_and_pacs.wait_for_jobs(1)
    assert [(job.series_uid, job.state) for job in jobs] == [(uids["thin"], "done")], jobs[0].error or jobs[0].reason
    node_and_pacs.wait_for_outbox_empty()
    pacs = node_and_pacs.pacs
    assert {k: v for k, v in series_of_study(pacs, STUDY.study_uid).items() if k != "CT"} == {
        "SEG": 1, "SR": 1, "OT": 1}
    assert _sr_source_series(pacs, STUDY.study_uid) == {uids["thin"]}

    db = open_node_database(node_and_pacs.settings.node.database)
    states = {name: index.series_ref(db, uid) for name, uid in uids.items()}
    assert states["thin"].state is SeriesState.SELECTED
    assert states["thick"].state is SeriesState.NOT_CHOSEN and "2.13 mm slices preferred to 3 mm" in (
        states["thick"].reason)
    assert states["bone"].state is SeriesState.NOT_CHOSEN and "sharp kernel (B70f)" in states["bone"].reason
    assert states["localizer"].state is SeriesState.REJECTED and "localizer" in states["localizer"].reason
    assert states["dose"].state is SeriesState.REJECTED
    rows = worklist.query_worklist(db, worklist.parse_query({})).rows
    assert [(row.study_uid, row.series_uid) for row in rows] == [(STUDY.study_uid, uids["thin"])]
    sent = len(outbox.items(db))

    # The same study again (a PACS resending): nothing new.
    push_study(pacs, [p for paths in files.values() for p in paths], STUDY.study_uid)
    jobs = node_and_pacs.wait_for_jobs(1)
    assert len(jobs) == 1 and len(outbox.items(db)) == sent

    # A better series later (thinner slices): analysed once, its SR names the first; one worklist row.
    finer = generate_phantom(abdominal_ct(31, shape=(288, 288, 250))).image      # 1.5 mm slices
    later = _series(finer, tmp_path / "fine", 5, "Abdomen 1.5 soft tissue", convolution_kernel="B30f")
    fine_uid = pydicom.dcmread(later[0], stop_before_pixels=True).SeriesInstanceUID
    push_study(pacs, later, STUDY.study_uid)
    jobs = node_and_pacs.wait_for_jobs(2)
    assert [(job.series_uid, job.state) for job in jobs] == [(uids["thin"], "done"), (fine_uid, "done")]
    node_and_pacs.wait_for_outbox_empty()
    assert len(outbox.items(db)) == 2 * sent, "the first results are not sent again"
    assert _sr_source_series(pacs, STUDY.study_uid) == {uids["thin"], fine_uid}
    new_sr = pydicom.dcmread(jobs[1].output_dir / "sr.dcm")
    first_sr = pydicom.dcmread(jobs[0].output_dir / "sr.dcm")
    predecessor = new_sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert predecessor.ReferencedSOPInstanceUID == first_sr.SOPInstanceUID
    superseded = index.series_ref(db, uids["thin"])
    assert superseded.state is SeriesState.NOT_CHOSEN and "series 'Abdomen 1.5 soft tissue' analysed instead" in (
        superseded.reason)
    rows = worklist.query_worklist(db, worklist.parse_query({})).rows
    assert [(row.study_uid, row.series_uid) for row in rows] == [(STUDY.study_uid, fine_uid)]
