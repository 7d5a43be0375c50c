#!/usr/bin/env python
"""Dev table: synthfm checkpoints (focus step, flip TTA, clicked components, single-mask rule) against the best classical click method.

    python benchmarks/eval_dev_table.py CKPT [CKPT ...] --data ../shared/data --json out.json [--focus both] [--flip both]

Runs ``evaluate.py``'s protocol (seed 0, settings (1,0) (3,0) (1,2) (3,2), objects >= 0.1 % of the
image, pseudo-label sets left out) through ``PredictorMethod`` and prints, per modality and
setting, the mean DSC and its margin over ``CLASSICAL_BEST``: the best of random walker, GrabCut
and flood fill per cell, measured with ``python evaluate.py --data ../shared/data --method
random_walker --method grabcut --method flood_fill`` (README Results).  ``--limit`` caps objects
per dataset for quick looks; tables quoted in the README use all objects.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path

import click
import numpy as np
import torch

SETTINGS = ("1,0", "3,0", "1,2", "3,2")
CLASSICAL_BEST = {
    "CT": {"1,0": 0.693, "3,0": 0.733, "1,2": 0.660, "3,2": 0.794},
    "MRI": {"1,0": 0.607, "3,0": 0.576, "1,2": 0.636, "3,2": 0.704},
    "US": {"1,0": 0.484, "3,0": 0.660, "1,2": 0.461, "3,2": 0.713},
    "XR": {"1,0": 0.470, "3,0": 0.584, "1,2": 0.443, "3,2": 0.648},
    "ENDO": {"1,0": 0.456, "3,0": 0.573, "1,2": 0.476, "3,2": 0.567},
    "MICRO": {"1,0": 0.763, "3,0": 0.796, "1,2": 0.760, "3,2": 0.786},
}


@click.command()
@click.argument("checkpoints", nargs=-1, required=True)
@click.option("--data", default="../shared/data", show_default=True)
@click.option("--focus", type=click.Choice(["on", "off", "both", "model"]), default="both", show_default=True)
@click.option("--flip", type=click.Choice(["on", "off", "both", "model"]), default="model", show_default=True,
              help="Flip test-time augmentation (inference/flip_tta.py).")
@click.option("--components", type=click.Choice(["on", "off", "both", "model"]), default="model", show_default=True,
              help="Keep only the mask pieces a positive click is on (inference/clicked_components.py).")
@click.option("--single-mask", "single_mask", type=click.Choice(["best", "iou_blend", "both", "model"]), default="model",
              show_default=True, help="How one mask is made from the candidates (modeling/single_mask.py).")
@click.option("--limit", type=int, default=None, help="At most this many objects per dataset.")
@click.option("--threads", default=2, show_default=True)
@click.option("--json", "json_path", default=None)
def main(checkpoints, data, focus, flip, components, single_mask, limit, threads, json_path):
    from synthfm.evaluation.datasets import find_datasets
    from synthfm.evaluation.methods import PredictorMethod
    from synthfm.evaluation.protocol import EvalProtocol, evaluate
    from synthfm.inference import Predictor

    torch.set_num_threads(threads)
    datasets, _ = find_datasets([Path(data)])
    methods = []
    names = _unique_names(checkpoints)
    for path in checkpoints:
        modes = {"both": [True, False], "on": [True], "off": [False], "model": [None]}
        rules = {"both": ["best", "iou_blend"], "model": [None]}.get(single_mask, [single_mask])
        for focus_mode, flip_mode, comp_mode, rule in itertools.product(modes[focus], modes[flip], modes[components], rules):
            predictor = Predictor.from_checkpoint(path)
            for attribute, mode in (("focus", focus_mode), ("flip_tta", flip_mode), ("clicked_components", comp_mode),
                                    ("single_mask", rule)):
                if mode is not None:  # None = the checkpoint's own default
                    setattr(predictor, attribute, mode)
            label = names[path] + ("+focus" if predictor.focus else "") + ("+flip" if predictor.flip_tta else "") \
                + ("+components" if predictor.clicked_components else "") \
                + (f"+{predictor.single_mask}" if predictor.single_mask not in (None, "best") else "")
            methods.append(PredictorMethod(label, predictor))
    protocol = EvalProtocol(settings=((1, 0), (3, 0), (1, 2), (3, 2)), seed=0, min_area=0.001, nsd_tolerance=2.0,
                            interactive=0, limit_objects=limit, include_pseudo=False)
    start = time.perf_counter()
    result = evaluate(datasets, methods, protocol, progress=False, warn=lambda m: None)
    pooled: dict = {}
    for r in result.rows:
        pooled.setdefault((r.method, r.modality, r.prompt), []).append(r.dice)
    table: dict = {}
    for (method, modality, prompt), values in sorted(pooled.items()):
        table.setdefault(method, {}).setdefault(modality, {})[prompt] = round(float(np.mean(values)), 4)
    for method, mods in table.items():
        print(f"{method}: mean DSC (margin over the best classical method)")
        for modality in CLASSICAL_BEST:
            if modality in mods:
                cells = " ".join(f"{mods[modality][p]:.3f} ({mods[modality][p] - CLASSICAL_BEST[modality][p]:+.3f})"
                                 for p in SETTINGS if p in mods[modality])
                print(f"  {modality:6s} {cells}")
    elapsed = time.perf_counter() - start
    print(f"{len(result.rows)} rows in {elapsed:.0f} s")
    if json_path:
        Path(json_path).write_text(json.dumps({"table": table, "classical_best": CLASSICAL_BEST, "limit": limit,
                                               "seconds": round(elapsed, 1)}, indent=1))


def _unique_names(paths) -> dict[str, str]:
    """File stem per checkpoint, or parent/stem where two stems collide (rows are pooled by name)."""
    stems = [Path(p).stem for p in paths]
    return {p: (s if stems.count(s) == 1 else f"{Path(p).parent.name}/{s}") for p, s in zip(paths, stems)}


if __name__ == "__main__":
    sys.exit(main())
