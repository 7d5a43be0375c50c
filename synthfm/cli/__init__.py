"""The ``synthfm`` command-line group.

Each subcommand lives in its own module in this package (``synthfm/cli/<command>.py``); this file only assembles
them, so that importing the CLI stays cheap (heavy imports happen inside the commands).
"""

from __future__ import annotations

import importlib
import os
import sys

# On small shared CPUs, OpenMP threads that spin while waiting make torch 5-20x slower under load
# (measured in benchmarks/bench_encoders.py).  It must be set before torch is imported, so it is
# set here, where every command-line entry point starts (synthfm, train.py, evaluate.py), and not
# by importing the library.  A value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click

from synthfm import __version__

# name -> ("module:attribute", one-line help); loaded lazily so `synthfm --help` does not import torch.
_COMMANDS = {
    "generate": ("synthfm.cli.generate:generate", "Write synthetic training samples and a gallery."),
    "segment": ("synthfm.cli.segment:segment", "Segment an image or volume slice from clicks."),
    "annotate": ("synthfm.cli.annotate:annotate", "Click to segment interactively in a window."),
    "export-onnx": ("synthfm.cli.export_onnx:export_onnx", "Export the model to ONNX."),
    "train": ("synthfm.cli.train:train_command", "Train on synthetic images (same as python train.py)."),
    "fit-recipe": ("synthfm.cli.fit_recipe:fit_recipe_command", "Fit a recipe to unlabelled scans (label-free adaptation)."),
    "evaluate": ("synthfm.cli.evaluate:main", "Evaluate methods zero-shot on nnU-Net datasets (same as evaluate.py)."),
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


# Commands whose process may end with os._exit once they return: their outputs are written and closed
# (atomically) by then, and they start no worker process or thread that needs a clean shutdown.
# Skipping the interpreter's teardown of torch, torchvision and torch._dynamo saves ~1.3 s per call
# (benchmarks/bench_startup.py).  The others (train, generate with DataLoader workers, annotate) exit normally.
FAST_EXIT_COMMANDS = frozenset({"segment", "export-onnx"})


def main() -> None:
    from synthfm.cli.support import run_click

    code = run_click(cli, sys.argv[1:], prog_name="synthfm")
    if len(sys.argv) > 1 and sys.argv[1] in FAST_EXIT_COMMANDS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)

