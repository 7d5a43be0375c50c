"""Run a click command so that user mistakes print one line and exit non-zero.

Shared by the ``synthfm`` console script, ``train.py`` and ``evaluate.py``.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Sequence

import click

from synthfm.errors import UserError

EXIT_USER_ERROR = 2


def run_click(command: click.Command, argv: Sequence[str] | None = None, prog_name: str | None = None) -> int:
    """Invoke ``command`` and translate errors into ``<prog>: error: <message>`` + exit code.

    Returns the exit code (0 on success).  Tracebacks are shown only for genuine bugs, or for any
    error when the environment variable ``SYNTHFM_DEBUG`` is 1/true/yes/on.  The machine's own
    refusals are one line too: a full disk, a read-only or vanished path, a name too long (OSError
    with one of :data:`ENVIRONMENT_ERRNOS`), and running out of memory (MemoryError, torch's
    out-of-memory errors).
    """
    prog = prog_name or command.name or "synthfm"
    try:
        rv = command.main(args=list(argv) if argv is not None else None, prog_name=prog, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo(f"{prog}: aborted", err=True)
        return 130
    except click.ClickException as exc:
        click.echo(f"{prog}: error: {exc.format_message()}", err=True)
        return exc.exit_code or EXIT_USER_ERROR
    except UserError as exc:
        if _debug():
            raise
        click.echo(f"{prog}: error: {_one_line(str(exc))}", err=True)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        click.echo(f"{prog}: interrupted", err=True)
        return 130
    except OSError as exc:
        if _debug() or exc.errno not in ENVIRONMENT_ERRNOS:
            raise
        click.echo(f"{prog}: error: {_os_error_line(exc)}", err=True)
        return EXIT_ENVIRONMENT
    except (MemoryError, RuntimeError) as exc:
        if _debug() or not _is_out_of_memory(exc):
            raise
        click.echo(f"{prog}: error: out of memory ({_one_line(str(exc))[:160] or 'MemoryError'}); "
                   "try a smaller image, batch or model, or another --device", err=True)
        return EXIT_ENVIRONMENT
    return rv if isinstance(rv, int) else 0


# errors of the machine, not bugs: no space, quota, read-only, permission, vanished or too-long
# names, too many links, I/O error, too many open files
ENVIRONMENT_ERRNOS = frozenset({
    errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR,
    errno.EISDIR, errno.ENAMETOOLONG, errno.ELOOP, errno.EIO, errno.EMFILE, errno.ENFILE, errno.EFBIG,
    errno.ENXIO, errno.ESTALE, errno.EEXIST, errno.EBUSY, errno.ETXTBSY, errno.ENOMEM,
})
EXIT_ENVIRONMENT = 1


def _os_error_line(exc: OSError) -> str:
    what = os.strerror(exc.errno) if exc.errno else str(exc)
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    where = f": {' -> '.join(n if len(n) <= 200 else n[:200] + '...' for n in names)}" if names else ""
    hint = "; free some space and run again (the previous outputs were kept)" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return f"{what}{where}{hint}"


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return "out of memory" in text or "can't allocate memory" in text or "defaultcpuallocator" in text


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _debug() -> bool:
    return os.environ.get("SYNTHFM_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def exit_with(command: click.Command, prog_name: str | None = None) -> None:
    """Console-script entry: run ``command`` on sys.argv and exit with its code."""
    sys.exit(run_click(command, sys.argv[1:], prog_name=prog_name))
