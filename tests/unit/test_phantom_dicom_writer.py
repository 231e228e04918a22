"""write_ct_series as a generic writer: geometry for HFS/FFS, repeatable UIDs, clear refusals."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import JPEG2000Lossless, RLELossless

from inference.phantom import SeriesInfo, StudyInfo, write_ct_series
from inference.volume import load_volume


def _ramp_volume() -> sitk.Image:
    """A small HU volume stored feet-first in RAS order (like many NIfTI files), with distinct corners."""
    array = np.full((12, 40, 48), -1000.0, np.float32)
    array[:, 5:15, 6:18] = 40.0
    array[:, 8:10, 2:4] = 900.0  # bone marker near the first column
    array += np.arange(12, dtype=np.float32)[:, None, None] * 10  # slices differ
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 0.9, 2.5))
    image.SetOrigin((120.0, 95.0, -300.0))
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    return image


@pytest.mark.parametrize("position, orientation", [("HFS", [1, 0, 0, 0, 1, 0]), ("FFS", [-1, 0, 0, 0, 1, 0])])
def test_geometry_follows_patient_position_and_round_trips(tmp_path, position, orientation):
    image = _ramp_volume()
    written = write_ct_series(image, tmp_path, position=position, seed=5)
    assert len(written.files) == 12
    first = pydicom.dcmread(written.files[0])
    assert [float(v) for v in first.ImageOrientationPatient] == orientation
    assert [float(v) for v in first.PixelSpacing] == [0.9, 0.8]
    assert float(first.SliceThickness) == 2.5 and first.PatientPosition == position
    assert float(first.ImagePositionPatient[2]) == pytest.approx(-300.0 + 11 * 2.5)  # superior slice first
    back = load_volume(tmp_path)
    resampled = sitk.Resample(back, image, sitk.Transform(), sitk.sitkNearestNeighbor)
    assert np.array_equal(sitk.GetArrayFromImage(resampled), sitk.GetArrayFromImage(image))


def test_uids_repeat_with_a_seed_and_differ_without(tmp_path):
    image = _ramp_volume()
    a = write_ct_series(image, tmp_path / "a", seed=3, transfer_syntax=RLELossless)
    b = write_ct_series(image, tmp_path / "b", seed=3, transfer_syntax=JPEG2000Lossless)
    c = write_ct_series(image, tmp_path / "c")
    uids = [[pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in w.files] for w in (a, b, c)]
    assert uids[0] == uids[1] and not set(uids[0]) & set(uids[2])
    assert a.study.study_uid == b.study.study_uid != c.study.study_uid
    assert all(uid.startswith("2.25.") and len(uid) <= 64 for uid in uids[0])


def test_given_identifiers_are_used(tmp_path):
    written = write_ct_series(_ramp_volume(), tmp_path, study=StudyInfo(study_uid="1.2.3.4", accession_number="A77"),
                              series=SeriesInfo(series_uid="1.2.3.4.5", series_number=7, description="given"))
    header = pydicom.dcmread(written.files[3], stop_before_pixels=True)
    assert (header.StudyInstanceUID, header.SeriesInstanceUID, header.AccessionNumber) == ("1.2.3.4", "1.2.3.4.5", "A77")
    assert header.SeriesNumber == 7 and header.SeriesDescription == "given"


def test_bad_requests_are_refused(tmp_path):
    with pytest.raises(ValueError, match="transfer syntax"):
        write_ct_series(_ramp_volume(), tmp_path, transfer_syntax="1.2.840.10008.1.2.4.50")
    with pytest.raises(ValueError, match="HFS"):
        write_ct_series(_ramp_volume(), tmp_path, position="PRONE")
    with pytest.raises(ValueError, match="3D"):
        write_ct_series(sitk.Image(8, 8, sitk.sitkFloat32), tmp_path)
    with pytest.raises(ValueError, match="at least 32"):
        write_ct_series(sitk.Image(16, 16, 4, sitk.sitkFloat32), tmp_path, transfer_syntax=JPEG2000Lossless)
    assert not list(tmp_path.iterdir())  # nothing half-written
