"""Byte-level builders for damaged or unusual files (no binaries are committed; all is generated).

Every function returns ``bytes`` or writes a file and returns its path; inputs are tiny.
"""

from __future__ import annotations

import os
import pickle
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np


def encode(ext: str, array: np.ndarray) -> bytes:
    """``array`` encoded by OpenCV as ``ext`` (".png", ".jpg", ".tif", ...)."""
    ok, buf = cv2.imencode(ext, array)
    assert ok, ext
    return buf.tobytes()


def disc(h: int = 48, w: int = 64, dtype=np.uint8, lo: float = 20, hi: float = 200) -> np.ndarray:
    """(h, w) image: a bright disc on a darker background."""
    yy, xx = np.mgrid[:h, :w]
    inside = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 3) ** 2
    return np.where(inside, hi, lo).astype(dtype)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR (8-bit grey) for a ``width`` x ``height`` image, a tiny IDAT, IEND.

    Decoding it would allocate width*height bytes before finding the data missing.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def jpeg_header_only(width: int, height: int) -> bytes:
    """SOI + a baseline SOF0 frame header for a ``width`` x ``height`` grey image, then EOI."""
    sof = struct.pack(">BHHB", 8, height, width, 1) + bytes([1, 0x11, 0])
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xd9"


def nifti_header_only(shape: tuple[int, ...], dtype=np.int16) -> bytes:
    """An uncompressed NIfTI-1 header (348 bytes + 4 extension bytes) promising ``shape``; no data."""
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    header.set_data_shape(shape)
    header.set_qform(np.eye(4), code=1)
    header["vox_offset"] = 352
    return header.binaryblock + b"\x00" * 4


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    import nibabel as nib

    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))
    return path


def write_sitk(path: Path, array: np.ndarray) -> Path:
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(array), str(path), False)
    return path


def nrrd_inconsistent_header() -> bytes:
    """An NRRD whose header says 3 dimensions but lists 2 sizes."""
    return b"NRRD0004\ntype: short\ndimension: 3\nsizes: 10 10\nencoding: raw\n\n" + b"\x00" * 200


def dicom_bytes(rows: int = 32, cols: int = 40, modality: str = "CT", with_pixels: bool = True,
                rows_tag: int | None = None, cols_tag: int | None = None) -> bytes:
    """A minimal single-frame 16-bit DICOM (explicit VR little endian) made with pydicom.

    ``rows_tag``/``cols_tag`` override the Rows/Columns header values (to lie about the size).
    """
    import io

    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\x00" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.Rows, ds.Columns = rows_tag or rows, cols_tag or cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    if with_pixels:
        ds.PixelData = (disc(rows, cols, np.int16, 900, 1100)).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


class PlantedPayload:
    """Unpickling this calls ``os.system`` to create ``marker``: proof that a loader ran pickled code."""

    def __init__(self, marker: Path) -> None:
        self.marker = Path(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def malicious_pickle(marker: Path, *, zip_container: bool) -> bytes:
    """A pickle that would create ``marker`` when loaded unsafely.

    zip_container=True wraps it like ``torch.save`` does (a .pth file); False is a raw pickle.
    """
    import io

    import torch

    obj = {"image_encoder.patch_embed.proj.weight": torch.zeros(1), "payload": PlantedPayload(marker)}
    if not zip_container:
        return pickle.dumps(obj, protocol=4)
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()
