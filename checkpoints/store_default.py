"""Store a selected training checkpoint as a shippable default: float16, run-only keys dropped.

    python checkpoints/store_default.py runs/long3/best.safetensors --run "runs/long3" \
        --out synthfm/weights/data/synthfm_default.safetensors --overwrite

What it writes: the same weights (float16 on disk, loaded back as float32), the run's metadata
(`recipe`, `train_config`, `val`, `trained_outputs`, ...) minus the keys the checkpoint format sets
itself, plus `shipped_from` (which run and file) and `inference` (the Predictor defaults chosen from
the dev table: focus, flip TTA and clicked components, off unless given, and the single-mask rule).  It refuses a checkpoint whose training
saw real images (fine-tuning, itself or through its --init), because the shipped default must stay
synthetic-only, and it refuses to replace an existing file unless --overwrite is given.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from synthfm.errors import UserError
from synthfm.io.atomic import check_writable_output
from synthfm.modeling.single_mask import SINGLE_MASK_RULES, check_rule
from synthfm.training.finetune_data import real_data_seen
from synthfm.weights.checkpoint import RESERVED_KEYS, load_checkpoint, save_checkpoint


def shippable_metadata(meta: dict, run: str, file_name: str, focus: bool, flip_tta: bool,
                       clicked_components: bool = False, single_mask: str = "best") -> dict:
    """The metadata a shipped default carries, from a training checkpoint's ``meta``.

    Raises ValueError when the checkpoint has seen real images (:func:`real_data_seen`).
    """
    real = real_data_seen(meta)
    if real:
        raise ValueError(f"this checkpoint was fine-tuned on real images ({', '.join(real)}); the default must be synthetic-only")
    kept = {k: v for k, v in meta.items() if k not in RESERVED_KEYS}
    kept["shipped_from"] = {"run": run, "file": file_name}
    kept["inference"] = {"focus": bool(focus), "flip_tta": bool(flip_tta), "clicked_components": bool(clicked_components),
                         "single_mask": check_rule(single_mask)}
    return kept


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="File to write.")
@click.option("--run", "run_label", default=None, help="How to name the source run in `shipped_from` (default: its folder).")
@click.option("--focus/--no-focus", default=False, show_default=True, help="Predictor default: focus step.")
@click.option("--flip-tta/--no-flip-tta", default=False, show_default=True, help="Predictor default: flip TTA.")
@click.option("--clicked-components/--no-clicked-components", default=False, show_default=True,
              help="Predictor default: keep only the mask pieces a positive click is on.")
@click.option("--single-mask", type=click.Choice(SINGLE_MASK_RULES), default="best", show_default=True,
              help="Predictor default: how one mask is made from the candidates (modeling/single_mask.py).")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def main(checkpoint: str, out_path: str, run_label: str | None, focus: bool, flip_tta: bool, clicked_components: bool,
         single_mask: str, overwrite: bool) -> None:
    src, dst = Path(checkpoint), Path(out_path)
    try:
        check_writable_output(dst, overwrite=overwrite)
        if dst.exists() and dst.resolve() == src.resolve():
            raise UserError("--out is the checkpoint being read")
        model, meta = load_checkpoint(src)
        kept = shippable_metadata(meta, run_label or str(src.parent), src.name, focus, flip_tta, clicked_components,
                                  single_mask)
        save_checkpoint(dst, model, metadata=kept, half=True)
    except (ValueError, OSError) as exc:  # UserError and CheckpointError are ValueErrors
        sys.exit(f"error: {exc}")
    click.echo(f"wrote {dst} ({dst.stat().st_size / 2**20:.1f} MiB, {model.encoder_name}, val {kept.get('val', {}).get('mean')})")


if __name__ == "__main__":
    main()
