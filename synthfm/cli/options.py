"""Click options shared by the commands: prompt number types, the slicing axes, the model options."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

AXIS_NAMES = ("axial", "coronal", "sagittal")


class _Numbers(click.ParamType):
    """``"a,b[,...]"`` -> tuple of ``count`` floats."""

    def __init__(self, count: int, metavar: str) -> None:
        self.count = count
        self.name = metavar

    def get_metavar(self, param, ctx=None) -> str:  # click >= 8.2 passes ctx
        return self.name

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        parts = str(value).replace(" ", "").split(",")
        try:
            numbers = tuple(float(p) for p in parts)
        except ValueError:
            self.fail(f"expected {self.name} numbers, got {value!r}", param, ctx)
        if len(numbers) != self.count or not all(np.isfinite(numbers)):
            self.fail(f"expected {self.count} finite numbers {self.name}, got {value!r}", param, ctx)
        return numbers


class _SliceClick(click.ParamType):
    """``"K:X,Y"`` -> (slice K as int, x, y): a click on another slice of a volume."""

    name = "K:X,Y"

    def get_metavar(self, param, ctx=None) -> str:
        return self.name

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        head, sep, rest = str(value).replace(" ", "").partition(":")
        try:
            k = int(head)
        except ValueError:
            k = None
        if not sep or k is None or k < 0:
            self.fail(f"expected K:X,Y (a slice number >= 0, a colon, then the click), got {value!r}", param, ctx)
        return (k, *POINT.convert(rest, param, ctx))


POINT = _Numbers(2, "X,Y")
SLICE_CLICK = _SliceClick()
BOX = _Numbers(4, "X0,Y0,X1,Y1")


def model_options(f):
    """--model, --encoder, --sam-checkpoint and --device: where the model comes from (see synthfm.weights)."""
    f = click.option("--device", default="cpu", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")(f)
    f = click.option("--sam-checkpoint", type=click.Path(path_type=Path), default=None,
                     help="Official SAM .pth file (for plain SAM, or a checkpoint that references it).")(f)
    f = click.option("--encoder", default=None, help="With --sam-checkpoint and no --model: plain SAM (vit_h, vit_l, vit_b).")(f)
    f = click.option("--model", default=None,
                     help="synthfm checkpoint (.safetensors), 'default' (the shipped model) or sam:vit_h|vit_l|vit_b.")(f)
    return f
