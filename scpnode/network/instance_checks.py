"""The checks a received data set passes before it is stored (PS3.4 B.2.3 statuses when it fails).

Complete encoding (truncated anywhere: ``0xC000``), SOP Class and Instance
UIDs present and equal to the request's, study/series UIDs usable, pixel data
present for image objects and as long as Rows x Columns x Samples x Bits
Allocated x frames declare (``0xA900``), deflated data inflating within a
bound (``0xA700``). Plain data sets are read in a single pass over their
bytes (:mod:`scpnode.network.header_scan`), all others by pydicom.
"""

from __future__ import annotations

import io
import zlib

from pydicom.dataset import Dataset
from pydicom.filereader import data_element_generator, read_dataset
from pydicom.uid import UID

from scpnode.network.header_scan import PlainHeader, scan_plain_header
from scpnode.storage.instance_meta import InstanceMeta, PatientStudy
from scpnode.storage.store import is_valid_uid

NON_IMAGE_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.88.22", "1.2.840.10008.5.1.4.1.1.88.33",
    "1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.104.1",
})

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_DOES_NOT_MATCH_SOP_CLASS = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC000
_UNDEFINED_LENGTH = 0xFFFFFFFF
_DEFLATED = "1.2.840.10008.1.2.1.99"
_INFLATE_PIECE = 16 * 2**20
DEFAULT_MAX_INFLATED_BYTES = 512 * 2**20
"""``[node] max_inflated_mb`` by default: far above a CT slice, bounded for eight associations at once."""


class RejectedInstance(ValueError):
    """A received data set the node refuses; carries the DIMSE status to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def checked_attributes(encoded: bytes, transfer_syntax: UID, sop_class_uid: str, sop_instance_uid: str, *,
                       max_inflated_bytes: int = DEFAULT_MAX_INFLATED_BYTES
                       ) -> tuple[InstanceMeta, PatientStudy]:
    """Check a received data set against its request; return its index attributes.

    Plain data sets are read by :func:`scan_plain_header`, all others by pydicom;
    a deflated one is inflated to at most ``max_inflated_bytes``.

    Raises:
        RejectedInstance: undecodable or incomplete, UIDs missing, invalid or not
            those of the request, image without (enough) pixel data.
    """
    source: Dataset | PlainHeader | None = scan_plain_header(encoded, transfer_syntax)
    if source is None:
        source = _decode(encoded, transfer_syntax, max_inflated_bytes)
    try:
        meta = InstanceMeta.from_dataset(source)
        study = PatientStudy.from_dataset(source)
        pixels = _pixel_data_shape(source)
    except Exception as exc:  # noqa: BLE001 - pydicom converts values lazily; malformed ones raise here
        raise RejectedInstance(STATUS_CANNOT_UNDERSTAND, f"undecodable attribute: {exc}") from None
    _check_identity(meta, sop_class_uid, sop_instance_uid)
    if meta.sop_class_uid not in NON_IMAGE_SOP_CLASSES:
        _check_pixel_data(*pixels, transfer_syntax)
    return meta, study


def _decode(encoded: bytes, transfer_syntax: UID, max_inflated_bytes: int) -> Dataset:
    if not encoded:
        raise RejectedInstance(STATUS_CANNOT_UNDERSTAND, "empty data set")
    try:
        if transfer_syntax == _DEFLATED:
            return read_dataset(io.BytesIO(_inflate(encoded, max_inflated_bytes)), False, True)
        _check_complete(encoded, transfer_syntax)
        return read_dataset(io.BytesIO(encoded), transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian)
    except RejectedInstance:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom and zlib raise many types on malformed input
        raise RejectedInstance(STATUS_CANNOT_UNDERSTAND, f"undecodable data set: {exc}") from None


def _inflate(encoded: bytes, limit: int) -> bytes:
    """Inflate a Deflated Explicit VR Little Endian data set (raw deflate, PS3.5 A.5), to ``limit`` bytes at most.

    A few MB of deflate stream can inflate to GBs ("zip bomb"): the output is
    capped as it is produced, so memory stays bounded whatever the peer sends.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    inflated = bytearray()
    pending = encoded
    while not inflater.eof:
        # In pieces: one call with max_length still grows its output buffer by doubling.
        piece = inflater.decompress(pending, _INFLATE_PIECE)
        inflated += piece
        if len(inflated) > limit:
            raise RejectedInstance(STATUS_OUT_OF_RESOURCES,
                                   f"deflated data set inflates beyond max_inflated_mb ({limit // 2**20} MB)")
        pending = inflater.unconsumed_tail
        if not piece and not pending:
            raise RejectedInstance(STATUS_CANNOT_UNDERSTAND, "truncated deflate stream")
    return bytes(inflated)


def _check_complete(encoded: bytes, transfer_syntax: UID) -> None:
    # pydicom tolerates truncation (it drops the cut element with a warning);
    # a receiver must not, so walk the top-level elements and check that each
    # value is whole and that the walk ends exactly at the end of the bytes.
    # The walk must also end on an element boundary: pydicom's generator stops
    # quietly at a last element header cut short (fewer than 8 bytes left).
    stream = io.BytesIO(encoded)
    last_end = 0
    try:
        for element in data_element_generator(stream, transfer_syntax.is_implicit_VR,
                                              transfer_syntax.is_little_endian, defer_size=None):
            length = getattr(element, "length", None)
            value = getattr(element, "value", None)
            if (length not in (None, _UNDEFINED_LENGTH) and isinstance(value, bytes)
                    and len(value) != length):
                raise RejectedInstance(STATUS_CANNOT_UNDERSTAND, "truncated data set")
            last_end = stream.tell()
    except EOFError:
        raise RejectedInstance(STATUS_CANNOT_UNDERSTAND, "truncated data set") from None
    except RejectedInstance:
        raise
    except Exception as exc:  # noqa: BLE001
        raise RejectedInstance(STATUS_CANNOT_UNDERSTAND, f"undecodable data set: {exc}") from None
    if last_end != len(encoded):
        raise RejectedInstance(STATUS_CANNOT_UNDERSTAND, "truncated data set")


def _check_identity(meta: InstanceMeta, sop_class_uid: str, sop_instance_uid: str) -> None:
    if not meta.sop_class_uid:
        raise RejectedInstance(STATUS_DOES_NOT_MATCH_SOP_CLASS, "SOP Class UID missing from data set")
    if meta.sop_class_uid != sop_class_uid:
        raise RejectedInstance(STATUS_DOES_NOT_MATCH_SOP_CLASS, "SOP Class UID differs from request")
    if not meta.sop_instance_uid:
        raise RejectedInstance(STATUS_DOES_NOT_MATCH_SOP_CLASS, "SOP Instance UID missing from data set")
    if meta.sop_instance_uid != sop_instance_uid:
        raise RejectedInstance(STATUS_DOES_NOT_MATCH_SOP_CLASS, "SOP Instance UID differs from request")
    for name, uid in (("SOP Instance", meta.sop_instance_uid), ("Study Instance", meta.study_instance_uid),
                      ("Series Instance", meta.series_instance_uid)):
        if not is_valid_uid(uid):
            raise RejectedInstance(STATUS_DOES_NOT_MATCH_SOP_CLASS, f"{name} UID missing or invalid")


def _pixel_data_shape(source: Dataset | PlainHeader) -> tuple[int | None, tuple]:
    """Bytes in Pixel Data (None without it) and (frames, rows, columns, samples, bits allocated) as found."""
    if isinstance(source, PlainHeader):
        length = source.pixel_data_length
    else:
        length = len(source.PixelData or b"") if "PixelData" in source else None
    keywords = ("NumberOfFrames", "Rows", "Columns", "SamplesPerPixel", "BitsAllocated")
    return length, tuple(source.get(keyword) for keyword in keywords)


def _check_pixel_data(length: int | None, shape: tuple, transfer_syntax: UID) -> None:
    if length is None:
        raise RejectedInstance(STATUS_DOES_NOT_MATCH_SOP_CLASS, "image without Pixel Data")
    if length == 0:
        raise RejectedInstance(STATUS_DOES_NOT_MATCH_SOP_CLASS, "Pixel Data is empty")
    if transfer_syntax.is_encapsulated:
        return
    frames, rows, columns, samples, bits_allocated = shape
    try:
        expected = (int(frames or 1) * int(rows) * int(columns) * int(samples or 1) * int(bits_allocated) + 7) // 8
    except (TypeError, ValueError):
        raise RejectedInstance(STATUS_DOES_NOT_MATCH_SOP_CLASS, "image without Rows/Columns/Bits Allocated") from None
    if length != expected + expected % 2:  # OB/OW values are padded to an even length (PS3.5 6.2)
        raise RejectedInstance(STATUS_DOES_NOT_MATCH_SOP_CLASS, f"Pixel Data has {length} bytes, {expected} expected")
