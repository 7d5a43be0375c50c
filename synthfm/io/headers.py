"""Image sizes from file headers, read before any pixel is decoded.

A file whose header promises a huge image (e.g. a 40-byte PNG declaring 20000 x 20000 pixels)
makes a decoder allocate the whole image before it finds the data missing.  Readers call
:func:`check_pixel_count` with the header's size first and refuse such files with one line.

Limits: :data:`MAX_IMAGE_PIXELS` = 2**28 pixels for a 2D image (16384 x 16384; 256 MiB as
8-bit grey, 768 MiB as RGB) and :data:`MAX_VOLUME_VOXELS` = 2**30 voxels for a volume
(e.g. 512 x 512 x 4096; 2 GiB as int16).
"""

from __future__ import annotations

import struct

from synthfm.errors import ImageReadError

MAX_IMAGE_PIXELS = 2**28
MAX_VOLUME_VOXELS = 2**30

# JPEG start-of-frame markers: SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC)
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_TIFF_WIDTH, _TIFF_LENGTH = 256, 257


def check_pixel_count(where: object, size: tuple[int, ...]) -> None:
    """Raise ImageReadError when ``size`` (any axis order) holds more pixels than allowed.

    Two axes are a 2D image (limit MAX_IMAGE_PIXELS); three or more a volume (MAX_VOLUME_VOXELS).
    """
    dims = [int(s) for s in size]
    total = 1
    for s in dims:
        total *= s
    volume = len(dims) >= 3
    limit = MAX_VOLUME_VOXELS if volume else MAX_IMAGE_PIXELS
    if total > limit:
        kind, unit, exp = ("volume", "voxels", 30) if volume else ("image", "pixels", 28)
        shown = " x ".join(str(s) for s in dims)
        raise ImageReadError(f"{where}: {kind} of {shown} = {total} {unit} exceeds the limit of {limit} (2**{exp}) {unit}")


def raster_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG, BMP or TIFF header in ``data``; None if not recognised."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    if data[:2] == b"BM" and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(width), abs(height)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_size(data)
    if data[:4] in (b"II+\x00", b"MM\x00+"):
        return _bigtiff_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _JPEG_SOF and i + 9 <= len(data):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        if marker == 0xDA:  # start of scan before any frame header
            return None
        i += 2 + length
    return None


def _bigtiff_size(data: bytes) -> tuple[int, int] | None:
    """Width and length of the first IFD of a BigTIFF (8-byte offsets, 20-byte entries).

    A BigTIFF whose size cannot be found is reported as unbounded (a huge size), so that the
    caller refuses it rather than letting the decoder allocate whatever the file promises.
    """
    end = "<" if data[:2] == b"II" else ">"
    unknown = (2**32, 2**32)
    if len(data) < 16:
        return unknown
    (offset,) = struct.unpack(end + "Q", data[8:16])
    if offset + 8 > len(data):
        return unknown
    (count,) = struct.unpack(end + "Q", data[offset : offset + 8])
    found: dict[int, int] = {}
    for k in range(min(count, 4096)):
        entry = offset + 8 + 20 * k
        if entry + 20 > len(data):
            break
        tag, kind = struct.unpack(end + "HH", data[entry : entry + 4])
        if tag in (_TIFF_WIDTH, _TIFF_LENGTH):
            fmt = end + {3: "H", 4: "I", 16: "Q"}.get(kind, "Q")
            found[tag] = struct.unpack(fmt, data[entry + 12 : entry + 12 + struct.calcsize(fmt)])[0]
    if _TIFF_WIDTH in found and _TIFF_LENGTH in found:
        return found[_TIFF_WIDTH], found[_TIFF_LENGTH]
    return unknown


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """Width and length of the first IFD of a classic (not Big) TIFF."""
    end = "<" if data[:2] == b"II" else ">"
    if len(data) < 8:
        return None
    (offset,) = struct.unpack(end + "I", data[4:8])
    if offset + 2 > len(data):
        return None
    (count,) = struct.unpack(end + "H", data[offset : offset + 2])
    found: dict[int, int] = {}
    for k in range(count):
        entry = offset + 2 + 12 * k
        if entry + 12 > len(data):
            break
        tag, kind = struct.unpack(end + "HH", data[entry : entry + 4])
        if tag in (_TIFF_WIDTH, _TIFF_LENGTH):
            # SHORT (3) values sit left-justified in the 4-byte value field, LONG (4) fill it
            fmt = end + ("H" if kind == 3 else "I")
            found[tag] = struct.unpack(fmt, data[entry + 8 : entry + 8 + struct.calcsize(fmt)])[0]
    if _TIFF_WIDTH in found and _TIFF_LENGTH in found:
        return found[_TIFF_WIDTH], found[_TIFF_LENGTH]
    return None


def exif_orientation(data: bytes) -> int | None:
    """The EXIF Orientation (1..8) of a JPEG (APP1 ``Exif``), or None when absent.

    synthfm reads pixels as stored (OpenCV ``IMREAD_UNCHANGED`` ignores this tag), so clicks and
    masks are in the stored frame; the commands print a note when the tag asks viewers to rotate.
    """
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker == 0xE1 and data[i + 4 : i + 10] == b"Exif\x00\x00":
            return _tiff_orientation(data[i + 10 : i + 2 + length])
        if marker == 0xDA:
            return None
        i += 2 + length
    return None


def _tiff_orientation(tiff: bytes) -> int | None:
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return None
    end = "<" if tiff[:2] == b"II" else ">"
    (offset,) = struct.unpack(end + "I", tiff[4:8])
    if offset + 2 > len(tiff):
        return None
    (count,) = struct.unpack(end + "H", tiff[offset : offset + 2])
    for k in range(min(count, 512)):
        entry = offset + 2 + 12 * k
        if entry + 12 > len(tiff):
            break
        tag, kind = struct.unpack(end + "HH", tiff[entry : entry + 4])
        if tag == 0x0112 and kind == 3:
            (value,) = struct.unpack(end + "H", tiff[entry + 8 : entry + 10])
            return int(value) if 1 <= value <= 8 else None
    return None
