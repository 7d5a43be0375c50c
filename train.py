#!/usr/bin/env python
"""Train SynthFM on synthetic images generated on the fly: ``python train.py --help``.

Single process: ``python train.py --recipe recipes/my.yaml --out runs/my``; several GPUs:
``torchrun --nproc-per-node N train.py ...``.  The logic lives in :mod:`synthfm.training.loop`.
"""

from synthfm.cli.support import exit_with
from synthfm.cli.train import train_command

if __name__ == "__main__":
    exit_with(train_command, prog_name="train.py")
