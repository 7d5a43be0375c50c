"""The ``train.py`` command: option parsing and validation in front of :func:`synthfm.training.loop.train`.

Every option defaults to "not given": its value then comes from ``--preset`` (or, with
``--resume``, from the run being continued).  Everything is validated before any work starts and a
mistake prints one line (``train.py: error: ...``) and exits 2.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from synthfm.errors import UserError
from synthfm.training.config import LR_SCHEDULES, PRESETS, preset_config

# CLI option name -> TrainConfig field, for the options that map one to one
_CONFIG_OPTIONS = (
    "recipe", "encoder", "init", "sam_checkpoint", "train_encoder", "size", "gen_size", "epochs", "images_per_epoch",
    "batch_size", "prompts_per_image", "lr", "weight_decay", "lr_schedule", "warmup_steps", "max_pos", "max_neg",
    "box_fraction", "box_jitter", "mask_fraction", "zoom_fraction", "targets", "multimask", "iou_loss_weight", "iou_rank_weight", "first_mask_weight", "train_only", "bce_weight", "seed", "val_images", "checkpoint_every", "time_budget",
    "log_every", "workers", "synth_device", "device", "amp", "compile", "out", "finetune",
    "finetune_synth_fraction", "finetune_val_fraction",
)


@click.command(
    name="train",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=(
        "\b\nExamples:\n"
        "  python train.py --preset paper --sam-checkpoint sam_vit_h_4b8939.pth --out runs/paper\n"
        "  python train.py --recipe recipes/my.yaml --out runs/my\n"
        "  python train.py --resume runs/my\n"
        "  python train.py --finetune data/MyDataset --init default --out runs/ft\n"
        "  python train.py --recipe my.yaml --init default --out runs/adapted   (after synthfm fit-recipe)\n"
        "  torchrun --nproc-per-node 4 train.py --preset paper --sam-checkpoint sam_vit_h_4b8939.pth \\\n"
        "      --out runs/paper4"
    ),
)
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=None,
              help="Starting values for every option (default: small). paper = SynthFM's published setting.")
@click.option("--recipe", default=None, help="Shipped recipe name (synthfm, shape_only, boundary_only) or YAML path.  [preset: synthfm]")
@click.option("--encoder", default=None, help="Image encoder (vit_h, vit_l, vit_b, tiny_cnn, tiny_vit, ...).")
@click.option("--sam-checkpoint", default=None, help="Official SAM .pth file for a vit_* encoder.")
@click.option("--init", default=None,
              help="Start from this synthfm checkpoint's weights ('default' = the shipped model).  Without "
                   "--preset the run takes the checkpoint's own training settings with a shorter schedule "
                   "(6 x 400 images, lr 3e-4).")
@click.option("--finetune", "finetune", multiple=True, metavar="DIR",
              help="Fine-tune on this labelled dataset (nnU-Net layout: imagesTr/labelsTr and/or "
                   "imagesTs/labelsTs, dataset.json); repeat for several.  Recorded in the checkpoints.")
@click.option("--synth-fraction", "finetune_synth_fraction", type=float, default=None,
              help="With --finetune: share of training images that are synthetic (from the recipe). [0.25]")
@click.option("--val-fraction", "finetune_val_fraction", type=float, default=None,
              help="With --finetune: share of each dataset's cases held out to validate on and pick "
                   "best.safetensors. [0.2]")
@click.option("--train-encoder/--freeze-encoder", "train_encoder", default=None,
              help="Train the encoder with the decoder (default: yes for small encoders; vit_* stay frozen).")
@click.option("--size", type=int, default=None, help="Model input size S (default: the encoder's).")
@click.option("--gen-size", type=int, default=None, help="Generate images at this size, resized to S (default: S).")
@click.option("--epochs", type=int, default=None, help="Epochs (each of --images-per-epoch fresh images).")
@click.option("--images-per-epoch", type=int, default=None, help="Images per epoch, all processes together.")
@click.option("--batch-size", type=int, default=None, help="Images per step per process.")
@click.option("--prompts-per-image", type=int, default=None,
              help="K prompt sets decoded per encoder pass (K supervised masks per image).")
@click.option("--lr", type=float, default=None, help="Adam learning rate.")
@click.option("--weight-decay", type=float, default=None, help="Adam weight decay.")
@click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), default=None, help="After warm-up.")
@click.option("--warmup-steps", type=int, default=None, help="Linear learning-rate warm-up steps.")
@click.option("--max-pos", type=int, default=None, help="Positive clicks per prompt set: 1..MAX_POS.")
@click.option("--max-neg", type=int, default=None, help="Negative clicks per prompt set: 0..MAX_NEG.")
@click.option("--box-fraction", type=float, default=None, help="Fraction of prompt sets that are a box alone.")
@click.option("--box-jitter", type=float, default=None, help="Box side noise (std as a fraction of the side).")
@click.option("--mask-fraction", type=float, default=None,
              help="Fraction of prompt sets that also get a previous-mask input with corrective clicks.")
@click.option("--zoom-fraction", type=float, default=None,
              help="Fraction of images replaced by a zoomed crop around one target (scale robustness).")
@click.option("--targets", type=click.Choice(["label", "component", "component_area"]), default=None,
              help="What a prompt set segments: a whole synthetic label (default), or one connected piece "
                   "of it, drawn uniformly or by area (the unit real objects are scored as; measured worse on "
                   "real images, benchmarks/README.md).")
@click.option("--multimask/--no-multimask", default=None,
              help="Train SAM's 3 ambiguity masks on single clicks (min-over-masks Dice).")
@click.option("--bce-weight", type=float, default=None,
              help="Weight of a pixel-wise BCE term added to Dice (0 = paper). [small preset: 1]")
@click.option("--iou-loss-weight", type=float, default=None, help="Weight of the IoU-head MSE loss (0 = off).")
@click.option("--iou-rank-weight", type=float, default=None,
              help="Weight of the IoU-head ranking loss (which candidate is best; 0 = off).")
@click.option("--first-mask-weight", type=float, default=None,
              help="Weight of a loss on candidate 0 alone: it learns the single best guess (0 = off).")
@click.option("--train-only", type=click.Choice(["iou_head"]), default=None,
              help="Train only this part of the --init model (the rest frozen).")
@click.option("--seed", type=int, default=None, help="Run seed (images, prompts, initial weights).")
@click.option("--val-images", type=int, default=None, help="Synthetic validation images (0 = no validation).")
@click.option("--checkpoint-every", type=int, default=None, help="Steps between checkpoints (0 = epoch ends).")
@click.option("--time-budget", type=float, default=None, metavar="MIN",
              help="Stop after this many minutes of training (validated and checkpointed); a cosine schedule "
                   "decays over the budget or the epochs, whichever ends first.")
@click.option("--log-every", type=int, default=None, help="Steps between log.csv rows.")
@click.option("--workers", type=int, default=None, help="DataLoader worker processes generating images.")
@click.option("--synth-device", default=None,
              help="Where images are made: 'workers' (numpy engine in --workers processes; default) or the "
                   "training device, e.g. cuda (torch engine, whole batches on the GPU; no zoomed crops).")
@click.option("--device", default=None, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--amp/--no-amp", default=None, help="bf16 autocast (default: on for CUDA).")
@click.option("--compile/--no-compile", "compile_", default=None, help="torch.compile the image encoder.")
@click.option("--out", default=None, help="Run folder (created; must be new or empty).")
@click.option("--resume", "resume_dir", default=None, help="Continue the run in this folder.")
@click.option("--overwrite", is_flag=True, help="Replace the training run already in --out.")
@click.option("--stop-after-steps", type=int, default=None,
              help="Stop (with a checkpoint) after this many steps in total; --resume continues.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_command(preset, resume_dir, overwrite, stop_after_steps, quiet, compile_, **options: Any) -> int:
    """Train SynthFM's decoder (and a small encoder) on synthetic images generated on the fly."""
    from synthfm.training.loop import resume_config, train

    options["compile"] = compile_
    options["finetune"] = tuple(options["finetune"]) or None
    given = {k: v for k, v in options.items() if v is not None}
    if set(given) - set(_CONFIG_OPTIONS):
        raise click.UsageError(f"internal: unmapped options {sorted(set(given) - set(_CONFIG_OPTIONS))}")
    if stop_after_steps is not None and stop_after_steps <= 0:
        raise UserError(f"--stop-after-steps must be a positive integer, got {stop_after_steps}")
    if resume_dir is None and "finetune" not in given and (
            "finetune_synth_fraction" in given or "finetune_val_fraction" in given):
        raise UserError("--synth-fraction and --val-fraction only apply with --finetune DIR")
    if resume_dir is not None:
        if preset is not None:
            raise UserError("--preset does not apply to --resume (the run keeps its own settings)")
        if "out" in given and Path(given["out"]).resolve() != Path(resume_dir).resolve():
            raise UserError("--resume continues a run in its own folder; drop --out or make it the same folder")
        given.pop("out", None)
        config = resume_config(resume_dir, given)
        finished = _finished(Path(resume_dir), config, stop_after_steps)
        if finished:
            click.echo(finished)
            return 0
    elif preset is None and given.get("init") is not None:
        from synthfm.training.config import init_config

        config = init_config(**given)
    else:
        config = preset_config(preset or "small", **given)
    result = train(config, resume=resume_dir is not None, overwrite=overwrite, stop_after_steps=stop_after_steps,
                   progress=not quiet)
    best = "n/a" if result.best_score is None else f"{result.best_score:.4f}"
    if os.environ.get("RANK", "0") != "0":  # torchrun: one summary line, from rank 0
        return 0
    spent = f" (the {config.time_budget:g}-minute time budget is spent)" if result.time_budget_spent else ""
    click.echo(
        f"{result.step}/{result.total_steps} steps{spent}, {result.epochs_done} epochs, {result.images_seen} images, "
        f"{result.wall_s:.1f} s; best mean validation Dice {best}; weights in {result.out}"
    )
    if result.step >= result.total_steps or result.time_budget_spent:
        from synthfm.training.collapse import check_run, describe_collapse

        warnings = check_run(result.out, config)
        if warnings:
            click.echo(describe_collapse(warnings), err=True)
    return 0


def _finished(out: Path, config, stop_after_steps: int | None) -> str | None:
    """The message for a --resume with nothing left to do (all steps, or --stop-after-steps, done), else None.

    Reads only the header of the run's last weights, so it answers before any model or data is built.
    """
    from synthfm.errors import CheckpointError
    from synthfm.training.config import steps_per_epoch
    from synthfm.training.run_folder import LAST_WEIGHTS
    from synthfm.weights.checkpoint import read_metadata

    try:
        meta = read_metadata(out / LAST_WEIGHTS)
        step = int(meta["step"])
    except (CheckpointError, KeyError, TypeError, ValueError):
        return None  # no committed checkpoint yet, or an unusual one: let train() decide
    from synthfm.training.distributed import DistContext

    total = config.epochs * steps_per_epoch(config, DistContext.from_env().world_size)
    target = total if stop_after_steps is None else min(total, stop_after_steps)
    wall = meta.get("wall_s")
    out_of_time = (config.time_budget is not None and isinstance(wall, (int, float))
                   and wall >= 60.0 * config.time_budget)
    if step < target and not out_of_time:
        return None
    val = meta.get("val") if isinstance(meta.get("val"), dict) else {}
    last = f"; last mean validation Dice {val['mean']:.4f}" if isinstance(val.get("mean"), (int, float)) else ""
    if step >= total:
        why, longer = f"all {total} steps ({config.epochs} epochs) are done", "a larger --epochs"
    elif out_of_time:
        why, longer = f"its {config.time_budget:g}-minute --time-budget is spent", "a larger --time-budget"
    else:
        why, longer = f"it already reached --stop-after-steps {stop_after_steps}", "a larger --epochs"
    return (f"nothing left to resume in {out}: {why} (at step {step}{last}); weights in {out}. "
            f"To train longer, resume with {longer}.")
