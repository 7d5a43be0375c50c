"""Write output files so that a failed run never leaves a half-written or clobbered file.

Everything is written to a temporary file in the destination folder and moved into place with
``os.replace`` only once complete, so the previous file (if any) survives any failure.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from synthfm.errors import UserError


def check_writable_output(path: str | os.PathLike, overwrite: bool = True) -> Path:
    """Validate an output path before any work is done.

    Raises UserError if the parent folder is missing or not writable, if ``path`` is a folder,
    or if it exists and ``overwrite`` is False.
    """
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise UserError(f"output path is a folder, not a file: {p}")
    if not parent.is_dir():
        raise UserError(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise UserError(f"output folder is not writable: {parent}")
    if p.exists() and not overwrite:
        raise UserError(f"output file exists (pass --overwrite to replace it): {p}")
    return p


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it over ``path``.

    The temporary file keeps ``path``'s suffixes so that writers that infer the format from the
    extension (OpenCV, nibabel, SimpleITK) still work.  On any exception the temporary file is
    removed and ``path`` is left untouched.
    """
    p = Path(path)
    suffix = "".join(p.suffixes) or ".tmp"
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.stem.split('.')[0]}.", suffix=suffix, dir=p.parent or ".")
    except OSError as exc:  # a read-only or vanished folder is the user's to fix, not a crash
        raise UserError(f"cannot create a file in {p.parent}: {exc.strerror or exc}") from None
    os.close(fd)
    # mkstemp creates 0600 files; give the result the permissions a plain open() would.
    os.chmod(tmp, 0o666 & ~_current_umask())
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (fsync before the rename)."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
