"""Checks on input files before any library opens them.

* :func:`check_regular_file`: the path exists and is a regular file (or, where allowed, a folder);
  a FIFO, socket or device (``/dev/zero``, also through a symlink) would hang or never end, so it
  is refused with one line, as are paths the OS cannot even look at (too long, no permission).
* :func:`check_detached_data`: a detached NRRD header (``.nhdr``/``.nrrd`` with ``data file:``)
  or a MetaImage header (``.mhd``/``.mha`` with ``ElementDataFile``) names the file(s) holding
  the pixels.  Only files inside the header's own folder are read: absolute paths, ``..`` and
  symlinks leading out of the folder are refused, so a header cannot make synthfm read (and draw
  into an overlay) a file the user did not name.
* :func:`check_metaimage_data`: a compressed MetaImage whose zlib stream is corrupt or short is
  refused (ITK only prints a warning and returns garbage).
"""

from __future__ import annotations

import os
import re
import stat
import zlib
from pathlib import Path

from synthfm.errors import ImageReadError

_HEADER_LIMIT = 1 << 16  # detached/MetaImage headers are text of a few hundred bytes
_SPECIAL = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"))
_META_TYPES = {"MET_UCHAR": 1, "MET_CHAR": 1, "MET_USHORT": 2, "MET_SHORT": 2, "MET_UINT": 4, "MET_INT": 4,
               "MET_ULONG": 8, "MET_LONG": 8, "MET_ULONG_LONG": 8, "MET_LONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8}


def check_regular_file(path: Path, what: str = "file", allow_dir: bool = False, error=ImageReadError) -> os.stat_result:
    """stat ``path`` (following symlinks) and refuse anything but a regular file (or a folder if allowed)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as exc:
        raise error(f"{_short(path)}: cannot access the {what} ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        if allow_dir:
            return st
        raise error(f"{path}: the {what} is a folder, not a file")
    for test, name in _SPECIAL:
        if test(st.st_mode):
            raise error(f"{path}: the {what} is {name}, not a regular file")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: the {what} is not a regular file")
    return st


def _short(path: Path) -> str:
    text = str(path)
    return text if len(text) <= 200 else text[:120] + f"...({len(text)} characters)"


def _header_text(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(_HEADER_LIMIT)
    return head.decode("latin-1")


def _nrrd_data_files(path: Path) -> list[str]:
    """Names from an NRRD header's ``data file:`` field (a name, ``LIST`` + lines, or a pattern)."""
    text = _header_text(path)
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            return []  # end of header, no data file field
        m = re.match(r"\s*data ?file\s*:\s*(.*)$", line, re.IGNORECASE)
        if not m:
            continue
        value = m.group(1).strip()
        if value.upper().startswith("LIST"):
            return [ln.strip() for ln in lines[i + 1:] if ln.strip()]
        parts = value.split()
        if len(parts) >= 3 and "%" in parts[0]:
            return [parts[0]]  # a sprintf pattern: its folder part is what matters
        return [value]
    return []


def _meta_fields(path: Path) -> tuple[dict[str, str], int | None]:
    """MetaImage ``key = value`` fields up to ElementDataFile, and the byte offset after that line."""
    with open(path, "rb") as fh:
        head = fh.read(_HEADER_LIMIT)
    fields: dict[str, str] = {}
    offset = 0
    for raw in head.split(b"\n"):
        offset += len(raw) + 1
        line = raw.decode("latin-1").strip()
        if "=" not in line:
            continue
        key, value = (s.strip() for s in line.split("=", 1))
        fields[key.lower()] = value
        if key.lower() == "elementdatafile":
            return fields, offset
    return fields, None


def _meta_data_files(path: Path) -> list[str]:
    fields, offset = _meta_fields(path)
    value = fields.get("elementdatafile")
    if value is None or value.upper() == "LOCAL":
        return []
    if value.upper().startswith("LIST"):
        with open(path, "rb") as fh:
            fh.seek(offset or 0)
            rest = fh.read(_HEADER_LIMIT).decode("latin-1")
        return [ln.strip() for ln in rest.split("\n") if ln.strip()]
    parts = value.split()
    if len(parts) >= 3 and "%" in parts[0]:
        return [parts[0]]
    return [value]


def check_detached_data(path: Path, ext: str) -> None:
    """Refuse a header whose pixel data file lies outside the header's folder (see module docstring)."""
    if ext in (".nrrd", ".nhdr"):
        names = _nrrd_data_files(path)
    elif ext in (".mha", ".mhd"):
        names = _meta_data_files(path)
    else:
        return
    folder = path.resolve().parent
    for name in names:
        candidate = Path(name)
        if candidate.is_absolute() or ".." in candidate.parts or name.startswith("~"):
            raise ImageReadError(f"{path}: its data file {name!r} is outside the header's folder; "
                                 "only files next to the header are read (no absolute paths, no '..')")
        if "%" in name:
            continue  # a pattern: relative and without '..', so its files stay in the folder
        target = (path.parent / candidate)
        resolved = target.resolve()
        if folder not in resolved.parents:
            raise ImageReadError(f"{path}: its data file {name!r} leads outside the header's folder (a symlink?); refused")
        check_regular_file(target, "data file named in the header")


def check_metaimage_data(path: Path, ext: str, expected_bytes: int) -> None:
    """A compressed MetaImage must inflate to exactly ``expected_bytes``; ImageReadError otherwise."""
    if ext not in (".mha", ".mhd"):
        return
    fields, offset = _meta_fields(path)
    if fields.get("compresseddata", "false").lower() != "true":
        return
    value = fields.get("elementdatafile", "LOCAL")
    if value.upper() == "LOCAL":
        source, start = path, offset or 0
    elif value.upper().startswith("LIST") or "%" in value:
        return  # several files: ITK checks each; rare for compressed data
    else:
        source, start = path.parent / value, 0
    inflater = zlib.decompressobj()
    produced = 0
    try:
        with open(source, "rb") as fh:
            fh.seek(start)
            while chunk := fh.read(1 << 20):
                produced += len(inflater.decompress(chunk, max(1, expected_bytes + 1 - produced)))
                while inflater.unconsumed_tail and produced <= expected_bytes:
                    produced += len(inflater.decompress(inflater.unconsumed_tail, max(1, expected_bytes + 1 - produced)))
                if produced > expected_bytes or inflater.eof:
                    break
    except zlib.error:
        raise ImageReadError(f"{path}: corrupt compressed pixel data (zlib stream does not decode)") from None
    if produced != expected_bytes or not inflater.eof:
        raise ImageReadError(f"{path}: compressed pixel data inflate to {produced} bytes, the header needs {expected_bytes}")


def metaimage_element_bytes(path: Path) -> int | None:
    """Bytes per voxel (element size x channels) from a MetaImage header, None if unknown."""
    fields, _ = _meta_fields(path)
    size = _META_TYPES.get(fields.get("elementtype", "").upper())
    try:
        channels = int(fields.get("elementnumberofchannels", "1"))
    except ValueError:
        return None
    return None if size is None else size * channels
