"""Pixel frames of a Segmentation in any transfer syntax we meet in practice.

pydicom decodes native (little and big endian), JPEG 2000 and JPEG-LS pixel
data. Two encodings of single-bit (BINARY) segmentations it does not decode
(pydicom 3.0) are handled here:

- RLE Lossless with Bits Allocated 1: each frame is one PackBits byte
  segment of the bit-packed frame (PS3.5 G.2 applied to the packed bytes, as
  dcmqi, dcmjs and pydicom-data write it), while pydicom's and pylibjpeg's
  RLE decoders expect one byte per pixel and refuse the shorter segment;
- Deflated Image Frame Compression (1.2.840.10008.1.2.8.1, PS3.5 A.4.11,
  added in 2024): each frame is a raw deflate stream of the bit-packed frame,
  a transfer syntax pydicom 3.0 does not know yet.

Both are a few lines over :mod:`zlib` and :func:`numpy.unpackbits`, which is
why they are written here rather than waiting for a pydicom release.
"""

from __future__ import annotations

import zlib

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import RLELossless

DEFLATED_IMAGE_FRAME_COMPRESSION = "1.2.840.10008.1.2.8.1"
"""Transfer Syntax UID of Deflated Image Frame Compression (PS3.5 A.4.11)."""


class FrameDecodeError(ValueError):
    """The pixel data of an object cannot be decoded; the message says why."""


def decode_frames(ds: Dataset) -> np.ndarray:
    """All frames of ``ds`` as an array (frames, rows, columns).

    Raises:
        FrameDecodeError: the pixel data is missing, truncated or in an
            encoding that neither pydicom nor this module decodes.
    """
    if "PixelData" not in ds:
        raise FrameDecodeError("the object has no Pixel Data")
    syntax = str(ds.file_meta.TransferSyntaxUID)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if int(ds.BitsAllocated) == 1 and syntax in (RLELossless, DEFLATED_IMAGE_FRAME_COMPRESSION):
        decode = _packbits_decode if syntax == RLELossless else _deflate_decode
        try:
            packed = [decode(fragment) for fragment in generate_frames(ds.PixelData, number_of_frames=frames)]
        except (ValueError, zlib.error) as exc:
            raise FrameDecodeError(f"cannot decode {syntax} pixel data: {exc}") from None
        return np.stack([_unpack_bits(data, int(ds.Rows), int(ds.Columns)) for data in packed])
    try:
        array = ds.pixel_array
    except (NotImplementedError, RuntimeError, ValueError, AttributeError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise FrameDecodeError(f"cannot decode pixel data in transfer syntax {syntax}: {reason}") from None
    return array.reshape(frames, int(ds.Rows), int(ds.Columns))


def _unpack_bits(data: bytes, rows: int, columns: int) -> np.ndarray:
    """Single-bit pixels, least significant bit first (PS3.5 8.1.1)."""
    pixels = rows * columns
    if len(data) * 8 < pixels:
        raise FrameDecodeError(f"a frame holds {len(data) * 8} bits, {pixels} are needed")
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=pixels, bitorder="little").reshape(rows, columns)


def _deflate_decode(fragment: bytes) -> bytes:
    return zlib.decompress(fragment, wbits=-15)


def _packbits_decode(fragment: bytes) -> bytes:
    """Decode an RLE Lossless frame that holds exactly one byte segment (PS3.5 G.3.1)."""
    header = np.frombuffer(fragment[:64], dtype="<u4")
    if header.size != 16 or header[0] != 1:
        raise ValueError(f"expected one RLE segment per single-bit frame, found {int(header[0]) if header.size else 0}")
    source = fragment[int(header[1]):]
    out = bytearray()
    i = 0
    while i < len(source):
        n = source[i]
        if n < 128:  # literal run of n + 1 bytes
            out += source[i + 1:i + 2 + n]
            i += 2 + n
        elif n > 128:  # replicate the next byte 257 - n times
            if i + 1 < len(source):
                out += bytes([source[i + 1]]) * (257 - n)
            i += 2
        else:  # 128 is a no-op
            i += 1
    return bytes(out)
