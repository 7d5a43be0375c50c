"""The ``synthfm`` command-line group.

Each subcommand lives in its own module under ``synthfm/commands/``; this file only assembles
them, so that importing the CLI stays cheap (heavy imports happen inside the commands).
"""

from __future__ import annotations

import importlib

import click

from synthfm import __version__
from synthfm.cli_support import exit_with

# name -> "module:attribute"; loaded lazily so `synthfm --help` does not import torch.
_COMMANDS = {
    "generate": "synthfm.commands.generate:generate",
    "segment": "synthfm.commands.segment:segment",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = _COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="synthfm")
def cli() -> None:
    """synthfm: promptable medical image segmentation trained on synthetic images only."""


def main() -> None:
    exit_with(cli, prog_name="synthfm")


if __name__ == "__main__":
    main()
