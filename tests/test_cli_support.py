"""CLI error contract: one line, non-zero exit, no traceback."""

import subprocess
import sys

import click

from synthfm.cli.support import run_click
from synthfm.errors import UserError


@click.command()
@click.option("--n", type=int, required=True)
def toy(n):
    if n < 0:
        raise UserError("n must be >= 0,\n got a negative value")
    if n == 13:
        raise RuntimeError("a genuine bug")
    click.echo(f"ok {n}")


def test_user_error_is_one_line(capsys):
    assert run_click(toy, ["--n", "-1"], prog_name="toy") == 2
    err = capsys.readouterr().err
    assert err.strip() == "toy: error: n must be >= 0, got a negative value"


def test_usage_error_is_one_line(capsys):
    assert run_click(toy, ["--n", "abc"], prog_name="toy") != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("toy: error:")


def test_success_and_help(capsys):
    assert run_click(toy, ["--n", "3"]) == 0
    assert "ok 3" in capsys.readouterr().out
    assert run_click(toy, ["--help"]) == 0


def test_console_script_help_and_unknown_command():
    ok = subprocess.run([sys.executable, "-m", "synthfm.cli", "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "generate" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "synthfm.cli", "frobnicate"], capture_output=True, text=True)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
