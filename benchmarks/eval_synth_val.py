#!/usr/bin/env python
"""Synthetic-validation Dice of checkpoints on one fixed set, whatever their input size.

Scoring is the trainer's (``evaluate_validation``); ``--targets`` picks the target unit.  The set is the training run's validation set (seed stream ``seed + 10**6``, see
``synthfm.training.validation``) generated at ``--size`` (default 256).  A model with another input size S
gets the images resized to S and the clicks scaled; its logits are upsampled back, so every model
is scored on the same pixels.  Prints a table, writes JSON.

    python benchmarks/eval_synth_val.py runs/a/last.safetensors runs/b/last.safetensors --json out.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
import torch


@click.command()
@click.argument("checkpoints", nargs=-1, required=True)
@click.option("--size", default=256, show_default=True, help="Side the validation images are generated at.")
@click.option("--images", default=64, show_default=True, help="Validation images.")
@click.option("--seed", default=0, show_default=True, help="Run seed whose validation stream is used.")
@click.option("--recipe", default="synthfm", show_default=True)
@click.option("--targets", type=click.Choice(["label", "component", "component_area"]), default="label", show_default=True,
              help="Target unit of the set (synthfm.training.target_units): a whole label, or one connected piece.")
@click.option("--single-mask", "single_mask", type=click.Choice(["best", "iou_blend", "model"]), default="best",
              show_default=True, help="How one mask is made from a click_unet's candidates; 'best' is the trainer's "
              "scoring, 'model' the checkpoint's inference default (modeling/single_mask.py).")
@click.option("--threads", default=1, show_default=True)
@click.option("--json", "json_path", default=None, help="Write the results here.")
def main(checkpoints, size, images, seed, recipe, targets, single_mask, threads, json_path):
    from synthfm.weights.checkpoint import load_checkpoint
    from synthfm.weights.source import apply_single_mask_rule
    from synthfm.synth.recipe import load_recipe
    from synthfm.training.validation import build_validation_set, evaluate_validation

    torch.set_num_threads(threads)
    vset = build_validation_set(load_recipe(recipe), seed, images, size, targets=targets)
    rows = []
    for path in checkpoints:
        model, meta = load_checkpoint(path)
        if single_mask == "model":
            apply_single_mask_rule(model, meta)
        elif hasattr(model, "single_mask_rule"):
            model.single_mask_rule = single_mask
        t0 = time.perf_counter()
        result = evaluate_validation(model, vset)
        rows.append({"checkpoint": str(path), "encoder": meta["encoder"],
                     "single_mask": getattr(model, "single_mask_rule", None), "image_size": model.image_size,
                     "images_seen": meta.get("images_seen"), "wall_s": meta.get("wall_s"),
                     "eval_s": round(time.perf_counter() - t0, 2), **{k: round(v, 4) for k, v in result.items()}})
    keys = [k for k in rows[0] if k.startswith("dice_")] + ["mean"]
    print(f"{'checkpoint':60s} {'enc':10s} {'S':>4s} {'images':>8s} {'train_s':>8s} " + " ".join(f"{k:>9s}" for k in keys))
    for r in rows:
        print(f"{r['checkpoint'][-60:]:60s} {r['encoder']:10s} {r['image_size']:4d} {str(r['images_seen']):>8s} "
              f"{str(r['wall_s']):>8s} " + " ".join(f"{r[k]:9.4f}" for k in keys))
    if json_path:
        Path(json_path).write_text(json.dumps({"size": size, "images": images, "seed": seed, "recipe": recipe, "targets": targets,
                                               "rows": rows}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
