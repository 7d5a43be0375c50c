"""The ``synthfm`` command-line group.

Each subcommand lives in its own module in this package (``synthfm/cli/<command>.py``); this file only assembles
them, so that importing the CLI stays cheap (heavy imports happen inside the commands).
"""

from __future__ import annotations

import importlib
import os

# On small shared CPUs, OpenMP threads that spin while waiting make torch 5-20x slower under load
# (measured in benchmarks/bench_encoders.py).  It must be set before torch is imported, so it is
# set here, where every command-line entry point starts (synthfm, train.py, evaluate.py), and not
# by importing the library.  A value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click

from synthfm import __version__
from synthfm.cli.support import exit_with

# name -> ("module:attribute", one-line help); loaded lazily so `synthfm --help` does not import torch.
_COMMANDS = {
    "generate": ("synthfm.cli.generate:generate", "Write synthetic training samples and a gallery."),
    "segment": ("synthfm.cli.segment:segment", "Segment an image or volume slice from clicks."),
    "annotate": ("synthfm.cli.annotate:annotate", "Click to segment interactively in a window."),
    "export-onnx": ("synthfm.cli.export_onnx:export_onnx", "Export the model to ONNX."),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        entry = _COMMANDS.get(name)
        if entry is None:
            return None
        module, attr = entry[0].split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Listing uses the registry's help lines so that `--help` imports no command module.
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_line) for name, (_, help_line) in sorted(_COMMANDS.items())])


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="synthfm")
def cli() -> None:
    """synthfm: promptable medical image segmentation trained on synthetic images only."""


def main() -> None:
    exit_with(cli, prog_name="synthfm")

