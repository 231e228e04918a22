import numpy as np
import pytest
import SimpleITK as sitk

from inference.volume import VolumeError, load_volume


def test_nifti_real_ct(shared_data):
    image = load_volume(shared_data / "real_ct" / "abdomen_3mm" / "ct.nii.gz")
    assert image.GetSize() == (122, 101, 112)
    assert image.GetPixelID() == sitk.sitkFloat32


def test_jpeg2000_dicom_series(shared_data):
    image = load_volume(shared_data / "real_ct" / "pet_ct_slices")
    assert image.GetSize()[:2] == (512, 512)
    assert image.GetSize()[2] == 20
    array = sitk.GetArrayViewFromImage(image)
    assert array.min() < -900 and array.max() > 500  # air and bone in HU


def _write(tmp_path, array, spacing=(1.0, 1.0, 1.0), name="v.nii.gz"):
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing(spacing)
    path = tmp_path / name
    sitk.WriteImage(image, str(path))
    return path


@pytest.mark.parametrize("array, match", [
    (np.zeros((20, 20, 20)), "empty"),
    (np.full((2, 20, 20), 100.0), "too small"),
    (np.random.default_rng(0).uniform(0, 50, (20, 20, 20)), "do not look like CT"),
])
def test_bad_volumes_get_clear_errors(tmp_path, array, match):
    with pytest.raises(VolumeError, match=match):
        load_volume(_write(tmp_path, array))


def test_broken_affine(tmp_path):
    path = tmp_path / "broken.nii"
    _write(tmp_path, np.random.default_rng(0).uniform(-1000, 1000, (10, 10, 10)), name="broken.nii")
    raw = bytearray(path.read_bytes())
    # zero the sform rows and set qform/sform codes so the affine is singular
    import struct
    struct.pack_into("<hh", raw, 252, 0, 1)          # qform_code 0, sform_code 1
    struct.pack_into("<12f", raw, 280, *([0.0] * 12))  # srow_x/y/z all zero
    path.write_bytes(bytes(raw))
    with pytest.raises(VolumeError):
        load_volume(path)


def test_missing_input(tmp_path):
    with pytest.raises(VolumeError, match="not found"):
        load_volume(tmp_path / "nothing.nii.gz")
