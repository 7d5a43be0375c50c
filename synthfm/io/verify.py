"""Check a just-written file before it replaces anything: a full disk must not pass for success.

On a full file system some writers report success while writing nothing or a prefix
(``cv2.imwrite`` returns True, ``SimpleITK.WriteImage`` raises nothing).  :func:`verify_written`
is called by :func:`synthfm.io.atomic.atomic_output` on the temporary file, before the rename:
it checks that the file is not empty, that it starts with its format's signature and, where the
format says how it ends or how long it is, that it is complete.  A failure raises
:class:`WriteVerifyError` (a UserError), so the previous output survives and the command exits
non-zero with one line.
"""

from __future__ import annotations

import gzip
import struct
import zipfile
import zlib
from pathlib import Path

from synthfm.errors import UserError

_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_SIGNATURES = {
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".jpg": (b"\xff\xd8",), ".jpeg": (b"\xff\xd8",),
    ".bmp": (b"BM",),
    ".tif": (b"II*\x00", b"MM\x00*"), ".tiff": (b"II*\x00", b"MM\x00*"),
    ".nrrd": (b"NRRD",),
    ".gz": (b"\x1f\x8b",),
    ".pt": (b"PK\x03\x04",),
}


class WriteVerifyError(UserError):
    """A written file is empty, truncated or not in its format (typically: the disk is full)."""


def _kind(final_name: str) -> str:
    name = final_name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


def verify_written(tmp: Path, final: Path) -> None:
    """Raise WriteVerifyError unless ``tmp`` (to become ``final``) is a complete file of its format."""
    size = tmp.stat().st_size
    why = "wrote an empty file"
    if size > 0:
        why = _problem(tmp, _kind(final.name), size)
        if why is None:
            return
    raise WriteVerifyError(f"could not write {final}: {why} (is the disk full?); the previous file, if any, is kept")


def _problem(tmp: Path, kind: str, size: int) -> str | None:
    with open(tmp, "rb") as fh:
        head = fh.read(16)
        fh.seek(max(0, size - 16))
        tail = fh.read(16)
    signatures = _SIGNATURES.get(".gz" if kind == ".nii.gz" else kind)
    if signatures and not head.startswith(signatures):
        return "the file does not start with its format's signature"
    if kind == ".png" and not tail.endswith(_PNG_END):
        return "the PNG has no end chunk (truncated)"
    if kind in (".jpg", ".jpeg") and not tail.endswith(b"\xff\xd9"):
        return "the JPEG has no end marker (truncated)"
    if kind == ".nii.gz":
        return _gzip_problem(tmp)
    if kind == ".nii":
        return _nifti_problem(tmp, size)
    if kind in (".nrrd", ".mha"):
        return _sitk_problem(tmp)
    if kind == ".safetensors":
        return _safetensors_problem(tmp, size)
    if kind == ".pt":
        return _zip_problem(tmp)
    return None


def _gzip_problem(path: Path) -> str | None:
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(1 << 24):
                pass
    except (OSError, EOFError, zlib.error):
        return "the gzip stream is truncated or corrupt"
    return None


def _nifti_problem(path: Path, size: int) -> str | None:
    import nibabel as nib
    import numpy as np

    try:
        header = nib.load(str(path)).header
        need = int(header.get_data_offset()) + int(np.prod(header.get_data_shape())) * header.get_data_dtype().itemsize
    except Exception:
        return "the NIfTI header cannot be read back"
    return None if size >= need else f"the NIfTI file holds {size} of {need} bytes"


def _sitk_problem(path: Path) -> str | None:
    import SimpleITK as sitk

    try:
        sitk.ReadImage(str(path))
    except RuntimeError:
        return "the image cannot be read back"
    return None


def _safetensors_problem(path: Path, size: int) -> str | None:
    import json

    with open(path, "rb") as fh:
        head = fh.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        try:
            header = json.loads(fh.read(n)) if 2 <= n <= size - 8 else None
            end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError):
            return "the safetensors header cannot be read back"
    return None if 8 + n + end <= size else f"the safetensors file holds {size} of {8 + n + end} bytes"


def _zip_problem(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError):
        return "the archive cannot be read back"
    return None if bad is None else f"member {bad} of the archive is corrupt"
