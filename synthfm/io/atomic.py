"""Write output files so that a failed run never leaves a half-written or clobbered file.

Everything is written to a temporary file in the destination folder, checked
(:func:`synthfm.io.verify.verify_written`: not empty, its format's signature, complete), flushed to
disk (fsync) and only then moved into place with ``os.replace``, so the previous file (if any)
survives any failure, a full disk included.  ``exclusive=True`` (no ``--overwrite``) moves it into
place only if ``path`` still does not exist (a hard link, which fails on an existing name), so two
runs writing the same new file cannot both succeed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

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
def atomic_output(path: str | os.PathLike, *, exclusive: bool = False, verify: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success verify it, fsync it and move it over ``path``.

    The temporary file keeps ``path``'s suffixes so that writers that infer the format from the
    extension (OpenCV, nibabel, SimpleITK) still work.  On any exception (including a failed
    verification, WriteVerifyError) the temporary file is removed and ``path`` is left untouched.
    exclusive: refuse (UserError) if ``path`` exists by the time the file is complete.
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
        if verify:
            from synthfm.io.verify import verify_written

            verify_written(tmp_path, p)
        fsync_path(tmp_path)
        if exclusive:
            _link_new(tmp_path, p)
        else:
            os.replace(tmp_path, p)
        fsync_path(p.parent if str(p.parent) else Path("."))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def new_output_folder(path: str | os.PathLike, *, remove_tree: bool = False) -> Iterator[Path]:
    """Create ``path`` (and parents) if missing; if this call created it and the body fails, remove it.

    Creation is race-free: of two runs into the same new folder only the one that made it may
    remove it.  remove_tree: remove the folder with everything in it (outputs the body wrote);
    otherwise only if it is empty again (a file somebody else wrote into it stays).
    """
    out = Path(path)
    try:
        out.mkdir(parents=True)
        created = True
    except FileExistsError:
        created = False
    try:
        yield out
    except BaseException:
        if created:
            if remove_tree:
                import shutil

                shutil.rmtree(out, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    out.rmdir()
        raise


def write_together(jobs: "list[tuple[Path, Callable[[Path], None]]]", *, exclusive: bool = False) -> None:
    """Write several files as one step: each ``write(tmp)`` fills a temporary file; all are
    verified and synced before the first one is renamed into place, so a full disk while writing
    the second file (e.g. the overlay) leaves the first (the mask) as it was, too."""
    from synthfm.io.verify import verify_written

    with contextlib.ExitStack() as stack:
        staged = [(stack.enter_context(atomic_output(path, exclusive=exclusive)), path, write) for path, write in jobs]
        for tmp, path, write in staged:
            write(tmp)
        for tmp, path, _ in staged:
            verify_written(tmp, Path(path))
            fsync_path(tmp)


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's data to disk (a folder: the names in it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot fsync a folder; a file must be synced
        if os.path.isfile(path) or exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _link_new(tmp: Path, target: Path) -> None:
    """Give ``tmp`` the name ``target`` only if that name is free (race-free), then drop ``tmp``."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise UserError(f"output file exists (another run wrote it meanwhile; pass --overwrite to replace it): {target}") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        # no hard links here (e.g. FAT): claim the name with O_EXCL, then replace it
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            raise UserError(f"output file exists (another run wrote it meanwhile; pass --overwrite to replace it): {target}") from None
        os.replace(tmp, target)
        return
    tmp.unlink()


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (size checked and fsync before the rename).

    The size check is exact, so an empty ``data`` (e.g. a CSV with no rows) is a valid output
    and skips the format check, which would call an empty file a full disk.
    """
    with atomic_output(path, exclusive=exclusive, verify=len(data) > 0) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if tmp.stat().st_size != len(data):
            from synthfm.io.verify import WriteVerifyError

            raise WriteVerifyError(f"could not write {path}: {tmp.stat().st_size} of {len(data)} bytes written "
                                   "(is the disk full?); the previous file, if any, is kept")
