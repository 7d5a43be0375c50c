#!/usr/bin/env python
"""How well the IoU head picks among a whole model's candidate masks, on the fixed synthetic set.

For each checkpoint (click_unet family) and click setting: mean hard Dice of the candidate the head
picks (the ``"best"`` single-mask rule), of the ``"iou_blend"`` rule (modeling/single_mask.py), of
each fixed candidate, and of the best one (oracle), and how often the pick is the best one.  Same set and scoring as eval_synth_val.py.

    python benchmarks/eval_selection.py A.safetensors B.safetensors --images 256 --json out.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import torch
import torch.nn.functional as F


@torch.no_grad()
def selection_table(model, vset, batch_size: int = 4) -> dict[str, dict[str, float]]:
    """{setting key: {"picked", "cand_0".., "oracle", "pick_is_best"}} means over ``vset``."""
    from synthfm.modeling.single_mask import single_mask
    from synthfm.training.losses import hard_dice
    from synthfm.training.validation import setting_key

    model.eval()
    size, model_size = vset.images.shape[-1], int(model.image_size)
    scale = model_size / size
    sums: dict[str, dict[str, float]] = {setting_key(s): {} for s in vset.settings}
    for start in range(0, len(vset), batch_size):
        sl = slice(start, start + batch_size)
        images = vset.images[sl][:, None]
        if model_size != size:
            images = F.interpolate(images, size=(model_size, model_size), mode="area" if model_size < size else "bilinear")
        target = vset.masks[sl]
        emb = model.encode(images)
        for s in vset.settings:
            coords, labels = vset.clicks[s]
            logits, iou = model.forward_all(emb, coords[sl] * scale, labels[sl])
            full = F.interpolate(logits.float(), size=(size, size), mode="bilinear", align_corners=False)
            dice = torch.stack([hard_dice(full[:, m], target) for m in range(full.shape[1])], dim=1)  # (B, M)
            picked = dice.gather(1, iou.argmax(dim=1, keepdim=True))[:, 0]
            blend = F.interpolate(single_mask(logits, iou, "iou_blend")[0].float(), size=(size, size), mode="bilinear",
                                  align_corners=False)
            row = {"picked": picked, "iou_blend": hard_dice(blend[:, 0], target), "oracle": dice.max(dim=1).values,
                   "pick_is_best": (picked >= dice.max(dim=1).values - 1e-6).float(),
                   **{f"cand_{m}": dice[:, m] for m in range(dice.shape[1])}}
            acc = sums[setting_key(s)]
            for k, v in row.items():
                acc[k] = acc.get(k, 0.0) + float(v.sum())
    return {s: {k: round(v / len(vset), 4) for k, v in acc.items()} for s, acc in sums.items()}


@click.command()
@click.argument("checkpoints", nargs=-1, required=True)
@click.option("--size", default=256, show_default=True, help="Side the validation images are generated at.")
@click.option("--images", default=64, show_default=True, help="Validation images.")
@click.option("--seed", default=0, show_default=True, help="Run seed whose validation stream is used.")
@click.option("--threads", default=1, show_default=True)
@click.option("--json", "json_path", default=None, help="Write the results here.")
def main(checkpoints, size, images, seed, threads, json_path):
    from synthfm.synth.recipe import load_recipe
    from synthfm.training.validation import build_validation_set
    from synthfm.weights.checkpoint import load_checkpoint

    torch.set_num_threads(threads)
    vset = build_validation_set(load_recipe("synthfm"), seed, images, size)
    results = {}
    for path in checkpoints:
        model, _ = load_checkpoint(path)
        if not hasattr(model, "forward_all"):
            raise click.UsageError(f"{path}: not a whole-model (click_unet) checkpoint")
        results[str(path)] = table = selection_table(model.float(), vset)
        cols = list(next(iter(table.values())))
        print(f"\n{path}\n{'setting':8s} " + " ".join(f"{c:>12s}" for c in cols))
        for s, row in table.items():
            print(f"{s:8s} " + " ".join(f"{row[c]:12.4f}" for c in cols))
    if json_path:
        Path(json_path).write_text(json.dumps({"size": size, "images": images, "seed": seed, "results": results}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
