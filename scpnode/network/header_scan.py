"""The index attributes of a received data set, read straight from its encoded bytes.

Why not pydicom: the receiver must check every instance (complete encoding,
UIDs, pixel data) and index a few dozen attributes before it answers, and
doing that through a pydicom ``Dataset`` costs about 1 ms per CT slice
(``read_dataset``, a separate walk for truncation, then lazy conversion of
each value: ~0.2 + 0.1 + 0.5 ms), as much as everything else the node does
for an instance together. This module walks the top-level elements once with
``struct`` (about 0.05 ms) and decodes only the attributes the index needs.

It is deliberately narrow. It reads only what it can read exactly as pydicom
would: little-endian, not deflated, complete and well formed, no functional
groups (Enhanced CT), a character set whose ASCII range is ASCII, and values
that are printable ASCII (no backslash in a single-valued attribute). For
anything else :func:`scan_plain_header` returns None and the receiver reads
the data set with pydicom, which also produces the error a malformed data set
deserves. ``tests/unit/test_header_scan.py`` holds both readers to the same
result on real and synthetic data and on thousands of corrupted copies.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.uid import UID

_DEFLATED = "1.2.840.10008.1.2.1.99"
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_MAX_DEPTH = 16

_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
"""Explicit VRs with 2 reserved bytes and a 4-byte length (PS3.5 7.1.2)."""
_SHORT_VRS = frozenset({b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"PN",
                        b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"})

INDEX_KEYWORDS: tuple[str, ...] = (
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "ImageType",
    "InstanceNumber", "SeriesDescription", "StudyDescription", "ProtocolName", "BodyPartExamined",
    "SliceThickness", "PixelSpacing", "ImageOrientationPatient", "ImagePositionPatient", "GantryDetectorTilt",
    "ContrastBolusAgent", "ConvolutionKernel", "Rows", "Columns", "PatientID", "PatientName", "PatientBirthDate",
    "PatientSex", "AccessionNumber", "StudyDate", "NumberOfFrames", "SamplesPerPixel", "BitsAllocated",
)
"""What :class:`scpnode.storage.index.InstanceMeta`, :class:`scpnode.storage.index.PatientStudy` and the pixel data check read."""

_MULTI_VALUED = frozenset({"ImageType", "PixelSpacing", "ImageOrientationPatient", "ImagePositionPatient",
                           "ConvolutionKernel"})

_ASCII_CHARACTER_SETS = frozenset({
    "", "ISO_IR 6", "ISO_IR 100", "ISO_IR 101", "ISO_IR 109", "ISO_IR 110", "ISO_IR 126", "ISO_IR 127",
    "ISO_IR 138", "ISO_IR 144", "ISO_IR 148", "ISO_IR 166", "ISO_IR 192", "ISO_IR 203", "GB18030", "GBK",
})
"""Specific Character Sets (PS3.3 C.12.1.1.2) whose bytes 0x20-0x7E decode as ASCII without code extensions."""

_WANTED = {tag_for_keyword(keyword): (keyword, dictionary_VR(keyword).encode()) for keyword in INDEX_KEYWORDS}
_CHARACTER_SET = tag_for_keyword("SpecificCharacterSet")
_PIXEL_DATA = tag_for_keyword("PixelData")
_FUNCTIONAL_GROUPS = frozenset({tag_for_keyword("SharedFunctionalGroupsSequence"),
                                tag_for_keyword("PerFrameFunctionalGroupsSequence")})
_RECORDED = frozenset(_WANTED) | {_CHARACTER_SET, _PIXEL_DATA} | _FUNCTIONAL_GROUPS
"""Top-level elements :func:`_walk` notes the place of."""
_PRINTABLE = bytes(range(0x20, 0x7F))
_PRINTABLE_SINGLE = _PRINTABLE.replace(b"\\", b"")


class _NotPlain(Exception):
    """Internal: the data set needs pydicom."""


@dataclass(frozen=True)
class PlainHeader:
    """The index attributes of a data set, as pydicom would give them, and its pixel data length.

    ``attributes`` maps keywords to values of pydicom's types for those VRs
    (``str``, ``list`` for multiple values, ``float`` for DS, ``int`` for IS
    and US, None when empty); absent attributes are absent.
    """

    attributes: dict[str, Any]
    pixel_data_length: int | None
    """Bytes in Pixel Data (fragments and item headers included when encapsulated); None without Pixel Data."""

    def get(self, keyword: str, default: Any = None) -> Any:
        """Like ``Dataset.get``: the value of an attribute, or ``default``."""
        return self.attributes.get(keyword, default)


def scan_plain_header(encoded: bytes, transfer_syntax: UID) -> PlainHeader | None:
    """Read the index attributes of an encoded data set, or None if pydicom must read it.

    Args:
        encoded: the data set without File Meta Information, as received.
        transfer_syntax: the transfer syntax it is encoded in.
    """
    if (not encoded or transfer_syntax == _DEFLATED or not transfer_syntax.is_transfer_syntax
            or not transfer_syntax.is_little_endian):  # one pydicom does not know (e.g. newer than it) included
        return None
    found: dict[int, tuple[bytes, int, int]] = {}
    try:
        end = _walk(encoded, 0, len(encoded), transfer_syntax.is_implicit_VR, found, depth=0)
        if end != len(encoded) or found.keys() & _FUNCTIONAL_GROUPS:
            return None
        character_set = found.pop(_CHARACTER_SET, None)
        if character_set is not None and _decode_text(encoded, character_set, True) not in _ASCII_CHARACTER_SETS:
            return None
        pixel = found.pop(_PIXEL_DATA, None)
        attributes = {_WANTED[tag][0]: _decode(encoded, tag, entry) for tag, entry in found.items()}
    except (_NotPlain, struct.error, ValueError):
        return None
    return PlainHeader(attributes, None if pixel is None else pixel[2])


def _walk(data: bytes, pos: int, end: int, implicit: bool, found: dict | None, depth: int) -> int:
    """Walk elements from ``pos``; stop at ``end`` or after an Item Delimitation; return where it stopped.

    ``found`` collects (VR, offset, length) of the wanted top-level elements; None inside sequences.
    """
    while pos < end:
        group, element = struct.unpack_from("<HH", data, pos)
        tag = group << 16 | element
        if tag == _ITEM_END:
            if found is not None or struct.unpack_from("<I", data, pos + 4)[0] != 0:
                raise _NotPlain
            return pos + 8
        if group == 0xFFFE:
            raise _NotPlain
        if implicit:
            vr = None
            length = struct.unpack_from("<I", data, pos + 4)[0]
            pos += 8
        else:
            vr = data[pos + 4:pos + 6]
            if vr in _LONG_VRS:
                length = struct.unpack_from("<I", data, pos + 8)[0]
                pos += 12
            elif vr in _SHORT_VRS:
                length = struct.unpack_from("<H", data, pos + 6)[0]
                pos += 8
            else:
                raise _NotPlain
        if length == _UNDEFINED:
            value_start = pos
            if tag == _PIXEL_DATA and vr in (b"OB", b"OW"):
                pos = _skip_fragments(data, pos, end)
            elif vr in (None, b"SQ") and tag != _PIXEL_DATA and depth < _MAX_DEPTH:
                pos = _skip_sequence(data, pos, end, implicit, depth)
            else:
                raise _NotPlain
            length = pos - value_start - 8  # without the Sequence Delimitation Item
        else:
            value_start = pos
            pos += length
            if pos > end:
                raise _NotPlain
        if found is not None and tag in _RECORDED:
            found[tag] = (vr, value_start, length)
    if found is None and pos == end:
        raise _NotPlain  # a nested data set of undefined length must end with an Item Delimitation
    return pos


def _skip_sequence(data: bytes, pos: int, end: int, implicit: bool, depth: int) -> int:
    while True:
        tag, length = _item_header(data, pos, end)
        pos += 8
        if tag == _SEQUENCE_END:
            return pos
        if tag != _ITEM:
            raise _NotPlain
        if length == _UNDEFINED:
            pos = _walk(data, pos, end, implicit, None, depth + 1)
        else:
            pos += length
            if pos > end:
                raise _NotPlain


def _skip_fragments(data: bytes, pos: int, end: int) -> int:
    while True:
        tag, length = _item_header(data, pos, end)
        pos += 8
        if tag == _SEQUENCE_END:
            return pos
        if tag != _ITEM or length == _UNDEFINED or pos + length > end:
            raise _NotPlain
        pos += length


def _item_header(data: bytes, pos: int, end: int) -> tuple[int, int]:
    if pos + 8 > end:
        raise _NotPlain
    group, element, length = struct.unpack_from("<HHI", data, pos)
    tag = group << 16 | element
    if tag == _SEQUENCE_END and length != 0:
        raise _NotPlain
    return tag, length


def _decode(data: bytes, tag: int, entry: tuple[bytes | None, int, int]) -> Any:
    keyword, dictionary_vr = _WANTED[tag]
    vr, start, length = entry
    if vr is not None and vr != dictionary_vr:
        raise _NotPlain  # pydicom would go by the VR as sent (UN, or a wrong one)
    if dictionary_vr == b"US":
        if length == 0:
            return None
        if length != 2:
            raise _NotPlain
        return struct.unpack_from("<H", data, start)[0]
    text = _decode_text(data, (vr, start, length), keyword in _MULTI_VALUED)
    if dictionary_vr == b"DS":
        return _numbers(text, float)
    if dictionary_vr == b"IS":
        return _numbers(text, int)
    if keyword in _MULTI_VALUED and "\\" in text:
        return text.split("\\")
    return text


def _decode_text(data: bytes, entry: tuple[bytes | None, int, int], multi_valued: bool) -> str:
    _, start, length = entry
    raw = data[start:start + length].rstrip(b"\x00 ")
    if raw.translate(None, _PRINTABLE if multi_valued else _PRINTABLE_SINGLE):
        raise _NotPlain  # other bytes depend on the character set, or make several values
    return raw.decode("ascii")


def _numbers(text: str, kind: type) -> Any:
    text = text.strip()
    if not text:
        return None
    values = [kind(item) for item in text.split("\\")]  # ValueError: let pydicom judge the value
    return values[0] if len(values) == 1 else values
