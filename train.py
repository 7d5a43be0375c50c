#!/usr/bin/env python
"""Train SynthFM on synthetic images generated on the fly: ``python train.py --help``.

Single process: ``python train.py --recipe recipes/my.yaml --out runs/my``; several GPUs:
``torchrun --nproc-per-node N train.py ...``.  The logic lives in :mod:`synthfm.training`.
"""

from synthfm.cli_support import exit_with
from synthfm.train_cli import train_command

if __name__ == "__main__":
    exit_with(train_command, prog_name="train.py")
