#!/usr/bin/env python
"""Zero-shot point-prompt evaluation on nnU-Net-layout datasets: ``python evaluate.py --help``.

Example::

    python evaluate.py --data ../shared/data --method random_walker --method grabcut \\
        --method flood_fill --out /tmp/eval_classical

The command lives in :mod:`synthfm.cli.evaluate`, the logic in :mod:`synthfm.evaluation`.
"""

from synthfm.cli.evaluate import main
from synthfm.cli.support import exit_with

if __name__ == "__main__":
    exit_with(main, prog_name="evaluate.py")
