"""Builders for the second-round corpus (corpus_round2.py): detached headers, compressed
MetaImage, DICOM series, BigTIFF, EXIF, crafted checkpoints and training states, full disks.

All inputs are generated and tiny; nothing binary is committed.
"""

from __future__ import annotations

import errno
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from . import files as F


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _header_and_data(path: Path, text: str, data_file: str, raw: bytes | None) -> Path:
    """Write a detached header's ``text`` to ``path`` and, if given, ``raw`` as its data file next to it."""
    path.write_text(text)
    if raw is not None:
        (path.parent / data_file).write_bytes(raw)
    return path


def nhdr(path: Path, data_file: str, sizes=(64, 48), raw: bytes | None = None, extra: str = "") -> Path:
    """A detached NRRD header (uint8) naming ``data_file``; writes ``raw`` next to it if given."""
    text = (f"NRRD0004\ntype: uint8\ndimension: {len(sizes)}\nsizes: {' '.join(map(str, sizes))}\nencoding: raw\n"
            f"{extra}data file: {data_file}\n\n")
    return _header_and_data(path, text, data_file, raw)


def mhd(path: Path, data_file: str, dims=(64, 48), raw: bytes | None = None, extra: str = "") -> Path:
    """A MetaImage header (MET_UCHAR) naming ``data_file``; writes ``raw`` next to it if given."""
    text = (f"ObjectType = Image\nNDims = {len(dims)}\nDimSize = {' '.join(map(str, dims))}\n"
            f"ElementType = MET_UCHAR\n{extra}ElementDataFile = {data_file}\n")
    return _header_and_data(path, text, data_file, raw)


def disc_raw(h: int = 48, w: int = 64) -> bytes:
    return F.disc(h, w).tobytes()


def mha_compressed(path: Path, payload: bytes, dims=(40, 30, 6)) -> Path:
    """A compressed MetaImage (MET_SHORT) whose data is ``payload``."""
    head = (f"ObjectType = Image\nNDims = 3\nDimSize = {' '.join(map(str, dims))}\nElementType = MET_SHORT\n"
            f"CompressedData = True\nCompressedDataSize = {len(payload)}\nElementDataFile = LOCAL\n")
    path.write_bytes(head.encode() + payload)
    return path


def ct_volume(shape=(6, 30, 40)) -> np.ndarray:
    vol = np.full(shape, -1000, np.int16)
    vol[:, 10:20, 12:30] = 50
    return vol


def dicom_series(folder: Path, n: int = 4, rows: int = 30, cols: int = 40, slope="1", spacing="0.8\\0.8") -> list[Path]:
    """``n`` single-frame CT slices of one series (1 mm apart) in ``folder``."""
    import io

    from pydicom import config
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    config.settings.writing_validation_mode = config.IGNORE
    folder.mkdir(exist_ok=True)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    paths = []
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\x00" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.InstanceNumber = "CT", k + 1
        ds.ImagePositionPatient = [0, 0, float(k)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = spacing
        ds.SliceThickness = 1
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = slope, "-1024"
        ds.PixelData = F.disc(rows, cols, np.int16, 900, 1100).tobytes()
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        path = folder / f"slice{k:02d}.dcm"
        path.write_bytes(buf.getvalue())
        paths.append(path)
    config.settings.writing_validation_mode = config.WARN
    return paths


def dicom_single(slope="1", spacing="0.8\\0.8", raw_slope: bytes | None = None) -> bytes:
    """One DICOM file with the given RescaleSlope and PixelSpacing text; ``raw_slope`` (4 bytes)
    is patched into the file afterwards (pydicom refuses to write a non-numeric DS)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = dicom_series(Path(tmp), n=1, slope="9.99" if raw_slope else slope, spacing=spacing)[0]
        data = path.read_bytes()
    if raw_slope:
        assert data.count(b"9.99") == 1 and len(raw_slope) == 4
        data = data.replace(b"9.99", raw_slope)
    return data


def bigtiff(width: int, height: int, with_size: bool = True) -> bytes:
    """A little-endian BigTIFF header with one IFD (width/length tags, zlib compression, a tiny strip)."""
    tags = [(259, 3, 1, 8), (262, 3, 1, 1), (258, 3, 1, 8), (273, 16, 1, 0), (278, 4, 1, height), (279, 16, 1, 16)]
    if with_size:
        tags = [(256, 4, 1, width), (257, 4, 1, height)] + tags
    tags.sort()
    ifd = struct.pack("<Q", len(tags)) + b"".join(struct.pack("<HHQQ", t, k, c, v) for t, k, c, v in tags) + struct.pack("<Q", 0)
    return b"II+\x00" + struct.pack("<HHQ", 8, 0, 16) + ifd + zlib.compress(b"\x00" * 64)


def jpeg_with_exif(orientation: int, h: int = 48, w: int = 64) -> bytes:
    """A JPEG of a disc with an APP1 Exif segment holding Orientation = ``orientation``."""
    jpg = F.encode(".jpg", F.disc(h, w))
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff += struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpg[:2] + app1 + jpg[2:]


# ---------------------------------------------------------------------------------- checkpoints


def checkpoint_variant(src: Path, dst: Path, *, meta: dict | None = None, tensors=None) -> Path:
    """A copy of checkpoint ``src`` with metadata keys replaced (JSON-encoded) and tensors changed by ``tensors(dict)``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), "pt") as fh:
        metadata = dict(fh.metadata())
        state = {k: fh.get_tensor(k) for k in fh.keys()}
    for key, value in (meta or {}).items():
        metadata[key] = json.dumps(value)
    if tensors is not None:
        tensors(state)
    save_file(state, str(dst), metadata=metadata)
    return dst


def safetensors_raw_header(dst: Path, header: dict, data: bytes = b"") -> Path:
    """A safetensors file with a hand-written JSON header (e.g. a metadata table that is a list)."""
    raw = json.dumps(header).encode()
    dst.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return dst


def training_state(path: Path, **fields) -> Path:
    """A last_state.pt (format 1) with the given fields replacing sane defaults."""
    import torch

    state = {"format": 1, "weights_sha256": "0" * 64,
             "loop": json.dumps({"step": 1, "epochs_done": 0, "images_seen": 2, "next_index": [2], "best_score": None,
                                 "best_step": None, "wall_s": 1.0}),
             "optimizer": {"state": {}, "param_groups": []}, "rng": {"torch_cpu": torch.get_rng_state()}}
    state.update(fields)
    state = {k: v for k, v in state.items() if v is not ...}
    torch.save(state, path)
    return path


# ---------------------------------------------------------------------------------- a full disk


def enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def writes_nothing(real, path_arg: int = 0):
    """A writer that 'succeeds' (returns True / None) but leaves an empty file: a full disk for
    cv2.imwrite (path_arg 0) or SimpleITK.WriteImage (path_arg 1)."""

    def fake(*args, **kwargs):
        Path(str(args[path_arg])).write_bytes(b"")
        return True

    return fake


def writes_half(real, path_arg: int = 0):
    """A writer that writes the real file, then loses its second half (ENOSPC mid-write, unreported)."""

    def fake(*args, **kwargs):
        result = real(*args, **kwargs)
        p = Path(str(args[path_arg]))
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
        return True if result is None else result

    return fake
