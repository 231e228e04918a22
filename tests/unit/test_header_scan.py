"""The single-pass header reader gives what pydicom gives, or hands the data set to pydicom.

Every case runs the receiver's check twice: as deployed (plain data sets read
by ``scan_plain_header``) and with the scanner switched off (pydicom reads
everything). Both must agree on the index attributes, the study attributes
and the refusal (status and reason) for real vendor files, third-party
objects, pydicom's own test files and thousands of corrupted copies.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pydicom.data
import pytest
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.tag import BaseTag
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from scpnode.network import instance_checks
from scpnode.network.header_scan import scan_plain_header
from tests.integration.node_helpers import ct_slice, dataset_bytes

Case = tuple[str, bytes, UID, str, str]
"""name, encoded data set, transfer syntax, SOP Class UID and SOP Instance UID of the request."""


def encode(ds: Dataset, transfer_syntax: UID) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, transfer_syntax.is_implicit_VR
    write_dataset(buffer, ds)
    return buffer.getvalue()


def synthetic_case(name: str, transfer_syntax: UID = ExplicitVRLittleEndian, **changes) -> Case:
    ds = ct_slice(generate_uid(), generate_uid(), 3, size=32)
    request = ds.SOPClassUID, ds.SOPInstanceUID
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        elif isinstance(value, bytes):  # as sent, even when invalid for its VR
            tag = tag_for_keyword(keyword)
            ds[tag] = RawDataElement(BaseTag(tag), dictionary_VR(tag), len(value), value, 0, False, True)
        else:
            setattr(ds, keyword, value)
    return name, encode(ds, transfer_syntax), transfer_syntax, *request


def file_case(path: Path, root: Path) -> Case | None:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        encoded = dataset_bytes(path)
    except Exception:  # noqa: BLE001 - not a Part 10 file with File Meta Information
        return None
    meta = ds.file_meta
    if "TransferSyntaxUID" not in meta:
        return None
    return (str(path.relative_to(root)), encoded, UID(meta.TransferSyntaxUID),
            str(meta.get("MediaStorageSOPClassUID", "")), str(meta.get("MediaStorageSOPInstanceUID", "")))


def checked(case: Case, scanner_on: bool, monkeypatch: pytest.MonkeyPatch) -> object:
    """What the receiver's check returns or refuses (status and reason)."""
    _, encoded, transfer_syntax, sop_class, sop_instance = case
    with monkeypatch.context() as patch:
        if not scanner_on:
            patch.setattr(instance_checks, "scan_plain_header", lambda *args: None)
        try:
            return instance_checks.checked_attributes(encoded, transfer_syntax, sop_class, sop_instance)
        except instance_checks.RejectedInstance as exc:
            return exc.status, str(exc)


def assert_same_as_pydicom(case: Case, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Check one case; return whether the scanner read it (rather than handing it to pydicom)."""
    fast = checked(case, True, monkeypatch)
    assert fast == checked(case, False, monkeypatch), case[0]
    return scan_plain_header(case[1], case[2]) is not None


def real_cases(shared_data: Path) -> Iterator[Case]:
    for path in sorted(shared_data.rglob("*")):
        if path.is_file() and not path.name.endswith((".gz", ".json", ".md", ".txt", ".nrrd")):
            case = file_case(path, shared_data)
            if case is not None:
                yield case


def test_real_vendor_files_are_read_by_the_scanner_as_pydicom_reads_them(shared_data, monkeypatch):
    scanned = {case[0]: assert_same_as_pydicom(case, monkeypatch) for case in real_cases(shared_data)}
    # The real CT slices (Siemens JPEG 2000, GE explicit VR) take the fast path...
    ct = [name for name in scanned if "pet_ct_slices" in name or "ct-3slice" in name]
    assert len(ct) == 23 and all(scanned[name] for name in ct)
    # ...multi-frame SEGs (functional groups) go to pydicom, and agree all the same.
    assert not scanned["interop/highdicom/seg_image_ct_binary.dcm"]


def test_pydicom_test_files_agree(monkeypatch):
    root = Path(pydicom.data.__file__).parent / "test_files"
    cases = [case for path in sorted(root.rglob("*")) if path.is_file()
             for case in [file_case(path, root)] if case is not None]
    assert len(cases) > 50
    scanned = sum(assert_same_as_pydicom(case, monkeypatch) for case in cases)
    assert scanned >= 10  # e.g. CT_small.dcm, MR_small.dcm, the JPEG/RLE variants


@pytest.mark.parametrize("case", [
    synthetic_case("explicit VR"),
    synthetic_case("implicit VR", ImplicitVRLittleEndian),
    synthetic_case("no optional attributes", SeriesDescription=None, BodyPartExamined=None,
                   GantryDetectorTilt=None, SliceThickness=None, PixelSpacing=None),
    synthetic_case("padded and spaced values", SliceThickness=" 2.5 ", InstanceNumber=" 12 ",
                   ImageType=["ORIGINAL", "PRIMARY", "AXIAL", ""], SeriesDescription=" leading space"),
    synthetic_case("empty values", SeriesDescription="", PatientName="", InstanceNumber="", SliceThickness=""),
    synthetic_case("single-valued ImageType", ImageType="ORIGINAL"),
    synthetic_case("nested sequence", ReferencedImageSequence=[Dataset(), Dataset()]),
    synthetic_case("multi-frame", NumberOfFrames="2"),
], ids=lambda case: case[0])
def test_plain_data_sets_take_the_fast_path(case, monkeypatch):
    assert assert_same_as_pydicom(case, monkeypatch)


@pytest.mark.parametrize("case", [
    synthetic_case("non-ASCII name", PatientName="Müller^Jürgen", SpecificCharacterSet="ISO_IR 100"),
    synthetic_case("ISO 2022 character set", SpecificCharacterSet=["", "ISO 2022 IR 87"]),
    synthetic_case("backslash makes two descriptions", SeriesDescription="A\\B"),
    synthetic_case("decimal InstanceNumber", InstanceNumber=b"3.0 "),
    synthetic_case("DS that is not a number", SliceThickness=b"thick "),
    synthetic_case("enhanced CT functional groups", SharedFunctionalGroupsSequence=[Dataset()]),
], ids=lambda case: case[0])
def test_anything_unusual_goes_to_pydicom(case, monkeypatch):
    assert not assert_same_as_pydicom(case, monkeypatch)


def test_refusals_are_the_same(monkeypatch):
    name, encoded, syntax, sop_class, sop_instance = synthetic_case("short pixel data")
    short = encoded[:-100]
    # Pixel Data's length now runs past the end: truncated, refused alike by both readers.
    assert checked((name, short, syntax, sop_class, sop_instance), True, monkeypatch)[0] == 0xC000
    assert not assert_same_as_pydicom((name, short, syntax, sop_class, sop_instance), monkeypatch)
    for changed in (synthetic_case("0-byte pixel data", PixelData=b""), synthetic_case("no rows", Rows=None),
                    synthetic_case("pixel data too short", Rows=64), synthetic_case("no UID", SOPInstanceUID=None)):
        assert_same_as_pydicom(changed, monkeypatch)
        assert checked(changed, True, monkeypatch)[0] == 0xA900


def corrupted(case: Case, rng: random.Random) -> Case:
    name, encoded, syntax, sop_class, sop_instance = case
    data = bytearray(encoded)
    action = rng.choice(("truncate", "flip", "insert", "delete"))
    position = rng.randrange(min(len(data), 2048))  # the header: where the structure is
    if action == "truncate":
        data = data[:position]
    elif action == "flip":
        data[position] = rng.randrange(256)
    elif action == "insert":
        data[position:position] = bytes(rng.randrange(256) for _ in range(rng.choice((1, 2, 4, 8))))
    else:
        del data[position:position + rng.choice((1, 2, 4, 8))]
    return f"{name} {action}@{position}", bytes(data), syntax, sop_class, sop_instance


def test_corrupted_copies_agree(shared_data, monkeypatch):
    rng = random.Random(20261121)
    real_jpeg2000 = next(case for case in real_cases(shared_data) if "pet_ct_slices" in case[0])
    sources = [synthetic_case("explicit"), synthetic_case("implicit", ImplicitVRLittleEndian),
               synthetic_case("nested", ReferencedImageSequence=[Dataset()]), real_jpeg2000]
    scanned = 0
    for source in sources:
        for _ in range(750):
            scanned += assert_same_as_pydicom(corrupted(source, rng), monkeypatch)
    assert 0 < scanned < 3000  # some copies stay readable (e.g. a changed pixel value), most do not
