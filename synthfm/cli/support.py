"""Run a click command so that user mistakes print one line and exit non-zero.

Shared by the ``synthfm`` console script, ``train.py`` and ``evaluate.py``.
"""

from __future__ import annotations

import sys
from typing import Sequence

import click

from synthfm.errors import UserError

EXIT_USER_ERROR = 2


def run_click(command: click.Command, argv: Sequence[str] | None = None, prog_name: str | None = None) -> int:
    """Invoke ``command`` and translate errors into ``<prog>: error: <message>`` + exit code.

    Returns the exit code (0 on success).  Tracebacks are shown only for genuine bugs, or for any
    error when the environment variable ``SYNTHFM_DEBUG=1`` is set.
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
    return rv if isinstance(rv, int) else 0


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _debug() -> bool:
    import os

    return os.environ.get("SYNTHFM_DEBUG", "") not in ("", "0")


def exit_with(command: click.Command, prog_name: str | None = None) -> None:
    """Console-script entry: run ``command`` on sys.argv and exit with its code."""
    sys.exit(run_click(command, sys.argv[1:], prog_name=prog_name))
