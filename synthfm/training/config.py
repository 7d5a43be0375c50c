"""Training configuration: one frozen dataclass, named presets and up-front validation.

A run is fully described by a :class:`TrainConfig` (plus the recipe it names).  The config is
stored as JSON in the run folder and in every checkpoint's metadata, and a resumed run reloads it
from there, so that what was trained can always be reproduced.

Presets (``--preset``):

* ``paper``: SynthFM's published setting: frozen official ``vit_h`` encoder (needs
  ``--sam-checkpoint``), decoder from scratch, 1024 px, 100 epochs x 10,000 images, batch 1,
  one prompt set per image, Adam lr 1e-4.
* ``small`` (default): the whole model trained on synthetic data only: the small ``tiny_cnn``
  encoder from scratch together with the decoder, at the encoder's default input size (256 px),
  8 images x 4 prompt sets per step, Adam 3e-4 with warm-up + cosine, Dice + BCE (``bce_weight``).
* ``click``: the shipped default's setting: the early-fusion ``click_unet`` at 128 px (images
  generated at 256 px, so zoomed crops stay sharp), 15 x 1,000 images, 8 images x 4 prompt sets,
  Adam 1e-3 with warm-up + cosine, min-over-candidates Dice + BCE, trained IoU head, 30 % of the
  prompt sets with a previous-mask input and corrective clicks, 30 % zoomed crops, 10 % boxes.
* ``tiny``: a seconds-long smoke run (64 px, 2 x 32 images) for tests and trying things out.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthfm.errors import UserError

LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run.

    size: model input size S (square; None = the encoder's default, e.g. 1024 for vit_*).
    gen_size: size the synthetic images are generated at (None = S); when it differs from S the
        images are resized to S (bilinear; label maps nearest) before prompts are drawn.
    batch_size: images per optimiser step on each process; prompts_per_image: K prompt sets per
        image, all decoded from one encoder pass (the frozen encoder's cost is paid once per image).
    max_pos / max_neg: each point prompt set has U{1..max_pos} positive and U{0..max_neg} negative
        clicks (``synthfm.prompts.simulate_clicks``); box_fraction of the prompt sets are a jittered
        box instead (``mask_to_box(jitter=box_jitter)``).
    multimask: train SAM's 3 ambiguity masks on single-click prompt sets (min-over-masks Dice) and
        the single mask on all others; off = only the single-mask output is trained (the paper).
    bce_weight: weight of a pixel-wise BCE term added to Dice (0 = the paper's pure Dice).  The
        small preset uses 1.0: with Dice alone a from-scratch decoder got stuck predicting the whole
        image (saturated logits, Dice loss ~0.9 after 5,000 images; see losses.bce_loss_per_item).
    iou_loss_weight: weight of an MSE loss on the IoU head (0 = the paper's pure Dice; the IoU
        predictions, i.e. the predictor's scores, are then untrained).
    iou_rank_weight: weight of a listwise ranking loss on the IoU head (whole-model families):
        cross-entropy between the softmax of the head's logits over the candidates and the softmax
        of their true IoUs / 0.05.  MSE fits each score; this one trains what ``predict`` uses the
        scores for: picking the best candidate.
    first_mask_weight: weight of a Dice (+ BCE) term on candidate 0 alone, for every prompt set
        (whole-model families).  The min over candidates lets each click keep several readings,
        but then no candidate is trained to be the single best guess; this term makes candidate 0
        that guess (the role of SAM's single-mask output) while candidates 1-2 keep the min.
    train_only: ``"iou_head"`` = train only the IoU head of an ``--init`` model, everything else
        frozen (the masks cannot change, so only the selection among candidates can improve, at
        about half the cost of a full step).
    train_encoder: None = the encoder's default (trained for small encoders, frozen for vit_*).
    init: a synthfm checkpoint whose weights start the run (same encoder; a fully convolutional
        model may change its input size, e.g. a 128 px run continued at 256 px).
    mask_fraction: share of prompt sets that also get a previous-mask input (a perturbed target)
        with corrective clicks (``synthfm.training_prompts``); only models that read mask inputs
        from the batch (click_unet) use it.
    zoom_fraction: share of images replaced by a square crop around one target that fills 30-95 %
        of the crop side (scale robustness).
    targets: what one prompt set segments: ``"label"`` = the whole (often scattered) label,
        ``"component"`` / ``"component_area"`` = one 8-connected piece of it (drawn uniformly / by
        area), the unit real objects are scored as, measured worse on real images
        (:mod:`synthfm.training.target_units`); also the unit of the run's synthetic validation.
    checkpoint_every: steps between checkpoints (0 = only at the end of each epoch).
    time_budget: minutes of training wall time (validation included, a resumed run's earlier
        sessions counted), or None.  The run stops, validated and checkpointed, once the budget is
        spent, and a cosine schedule decays over whichever ends first, the steps or the budget: the
        way to fill a fixed slot on hardware of unknown speed (e.g. ``benchmarks/gpu_train.sh``).
        ``--epochs`` is then an upper bound.
    amp: bf16 autocast; None = on for CUDA, off otherwise.
    synth_device: ``workers`` = the numpy engine in ``workers`` DataLoader processes; a torch device
        (``cuda``...) = the torch engine draws whole batches there (:mod:`synthfm.training.device_batches`).
    finetune: labelled dataset folders (nnU-Net raw layout) to fine-tune on (empty = synthetic
        training only); see :mod:`synthfm.training.finetune_data`.  A checkpoint's train_config
        thus always names the real data a model saw.
    finetune_synth_fraction: with ``finetune``, the share of training images drawn from the recipe
        instead (so the model keeps working elsewhere).
    finetune_val_fraction: with ``finetune``, the share of each dataset's cases held out (at least
        one case when a dataset has two or more) to validate on and pick best.safetensors.
    """

    recipe: str = "synthfm"
    encoder: str = "tiny_cnn"
    init: str | None = None
    sam_checkpoint: str | None = None
    train_encoder: bool | None = None
    size: int | None = None
    gen_size: int | None = None
    epochs: int = 20
    images_per_epoch: int = 10_000
    batch_size: int = 8
    prompts_per_image: int = 4
    lr: float = 3e-4
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"
    warmup_steps: int = 200
    max_pos: int = 5
    max_neg: int = 3
    box_fraction: float = 0.0
    box_jitter: float = 0.1
    mask_fraction: float = 0.0
    zoom_fraction: float = 0.0
    targets: str = "label"
    multimask: bool = False
    iou_loss_weight: float = 0.0
    iou_rank_weight: float = 0.0
    first_mask_weight: float = 0.0
    train_only: str | None = None
    bce_weight: float = 0.0
    seed: int = 0
    val_images: int = 64
    checkpoint_every: int = 500
    time_budget: float | None = None
    log_every: int = 10
    workers: int = 2
    synth_device: str = "workers"
    device: str = "auto"
    amp: bool | None = None
    compile: bool = False
    out: str = "runs/synthfm"
    finetune: tuple[str, ...] = ()
    finetune_synth_fraction: float = 0.25
    finetune_val_fraction: float = 0.2

    def __post_init__(self) -> None:
        # JSON round trips give a list; keep one hashable, comparable form
        object.__setattr__(self, "finetune", tuple(str(p) for p in (self.finetune or ())))


TRAIN_ONLY = (None, "iou_head")
TARGET_UNITS = ("label", "component", "component_area")  # see synthfm.training.target_units

PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(
        encoder="vit_h", train_encoder=False, size=1024, epochs=100, images_per_epoch=10_000, batch_size=1,
        prompts_per_image=1, lr=1e-4, lr_schedule="constant", warmup_steps=0, workers=8,
        checkpoint_every=1000, out="runs/paper",
    ),
    "small": dict(bce_weight=1.0),
    # the shipped default's architecture and training signal (checkpoints/README.md)
    "click": dict(
        encoder="click_unet", size=128, gen_size=256, epochs=15, images_per_epoch=1000, batch_size=8,
        prompts_per_image=4, lr=1e-3, warmup_steps=100, lr_schedule="cosine", box_fraction=0.1,
        mask_fraction=0.3, zoom_fraction=0.3, iou_loss_weight=1.0, bce_weight=1.0, val_images=64, workers=1,
        checkpoint_every=25, out="runs/click",
    ),
    "tiny": dict(
        recipe="synthfm", encoder="tiny_cnn", size=64, epochs=2, images_per_epoch=32, batch_size=4,
        prompts_per_image=2, lr=1e-3, lr_schedule="constant", warmup_steps=0, val_images=8,
        checkpoint_every=0, log_every=1, workers=0, out="runs/tiny",
    ),
}

# Starting values of a run started from a checkpoint (--init) without --preset: the checkpoint's own
# train_config (architecture, prompt policy, losses), with a shorter, gentler schedule on top.
INIT_SCHEDULE: dict[str, Any] = dict(
    epochs=6, images_per_epoch=400, lr=3e-4, warmup_steps=10, lr_schedule="cosine", checkpoint_every=25,
    log_every=5,
)
# train_config keys of the checkpoint that describe where it was trained, not how: never inherited
_NOT_INHERITED = ("init", "out", "device", "workers", "amp", "compile", "synth_device", "finetune", "sam_checkpoint",
                  "time_budget")

# Options that may change when a run is resumed: they do not change the weights it produces.
RESUMABLE_OVERRIDES = frozenset({"epochs", "time_budget", "workers", "device", "log_every", "checkpoint_every", "compile",
                                 "out"})


def preset_config(name: str, **overrides: Any) -> TrainConfig:
    """The preset ``name`` with ``overrides`` applied (keys are TrainConfig field names)."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    values = {**PRESETS[name], **overrides}
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise UserError(f"unknown training option(s): {', '.join(unknown)}")
    return TrainConfig(**values)


def init_config(init: str, **overrides: Any) -> TrainConfig:
    """The config of a run started from checkpoint ``init`` (``"default"`` or a path) without a preset.

    Takes the checkpoint's recorded train_config (its encoder, sizes, prompt policy and losses; not
    where it ran), then :data:`INIT_SCHEDULE`, then ``overrides``.  A checkpoint without a
    train_config starts from the ``small`` preset with its encoder.
    """
    from synthfm.errors import CheckpointError
    from synthfm.weights.checkpoint import read_metadata
    from synthfm.weights.source import resolve_model

    path = resolve_model(init)
    try:
        meta = read_metadata(path)
    except CheckpointError as exc:
        raise UserError(f"--init {init}: {exc}") from None
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    saved = meta.get("train_config") if isinstance(meta.get("train_config"), dict) else {}
    base = {k: v for k, v in saved.items() if k in names and k not in _NOT_INHERITED}
    if "encoder" not in base and isinstance(meta.get("encoder"), str):
        base["encoder"] = meta["encoder"]
    values = {**PRESETS["small"], **base, **INIT_SCHEDULE, "out": "runs/adapt", **overrides, "init": init}
    return TrainConfig(**values)


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """JSON-serialisable dict of ``config`` (round-trips through :func:`config_from_dict`)."""
    return dataclasses.asdict(config)


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Inverse of :func:`config_to_dict`; unknown keys raise UserError, missing ones take defaults."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise UserError(f"training config has unknown key(s): {', '.join(unknown)}")
    return TrainConfig(**d)


def steps_per_epoch(config: TrainConfig, world_size: int = 1) -> int:
    """Optimiser steps per epoch: images_per_epoch / (batch_size x world_size), rounded up."""
    return math.ceil(config.images_per_epoch / (config.batch_size * world_size))


def is_vit(encoder: str) -> bool:
    """True for SAM's ViT encoders (vit_h, vit_l, vit_b), which come from official weights."""
    return encoder.startswith("vit_")


# sizes beyond these are mistakes (out of memory or years of work), refused before anything is built
UPPER_BOUNDS = {"size": 4096, "gen_size": 4096, "batch_size": 4096, "prompts_per_image": 256, "max_pos": 64,
                "max_neg": 64, "epochs": 10**6, "images_per_epoch": 10**9, "val_images": 10**6, "workers": 256,
                "warmup_steps": 10**9, "checkpoint_every": 10**9, "log_every": 10**9, "seed": 2**63 - 1,
                "lr": 10.0, "weight_decay": 10.0, "box_jitter": 10.0, "bce_weight": 1e6, "iou_loss_weight": 1e6,
                "iou_rank_weight": 1e6, "first_mask_weight": 1e6}


LOSS_WEIGHTS = ("bce_weight", "iou_loss_weight", "iou_rank_weight", "first_mask_weight")


def validate_config(config: TrainConfig, known_encoders: tuple[str, ...] | None = None) -> None:
    """Raise UserError with one line naming the first bad option; check nothing on disk but files.

    known_encoders: names accepted for ``encoder`` (None = skip that check).
    """
    c = config
    positive_ints = ("epochs", "images_per_epoch", "batch_size", "prompts_per_image", "max_pos", "log_every")
    for name in positive_ints:
        value = getattr(c, name)
        if not isinstance(value, int) or value <= 0:
            raise UserError(f"--{_flag(name)} must be a positive integer, got {value!r}")
    for name in ("max_neg", "warmup_steps", "val_images", "checkpoint_every", "workers"):
        value = getattr(c, name)
        if not isinstance(value, int) or value < 0:
            raise UserError(f"--{_flag(name)} must be an integer >= 0, got {value!r}")
    if not isinstance(c.synth_device, str) or not c.synth_device:
        raise UserError(f"--synth-device must be 'workers' or a torch device name, got {c.synth_device!r}")
    if not (isinstance(c.lr, (int, float)) and math.isfinite(c.lr) and c.lr > 0):
        raise UserError(f"--lr must be a positive number, got {c.lr!r}")
    if not (math.isfinite(c.weight_decay) and c.weight_decay >= 0):
        raise UserError(f"--weight-decay must be >= 0, got {c.weight_decay!r}")
    if not 0.0 <= c.box_fraction <= 1.0:
        raise UserError(f"--box-fraction must be in [0, 1], got {c.box_fraction!r}")
    for name in ("mask_fraction", "zoom_fraction"):
        if not 0.0 <= getattr(c, name) <= 1.0:
            raise UserError(f"--{_flag(name)} must be in [0, 1], got {getattr(c, name)!r}")
    if c.targets not in TARGET_UNITS:
        raise UserError(f"--targets must be one of {', '.join(TARGET_UNITS)}, got {c.targets!r}")
    if not (math.isfinite(c.box_jitter) and c.box_jitter >= 0):
        raise UserError(f"--box-jitter must be >= 0, got {c.box_jitter!r}")
    for name in LOSS_WEIGHTS:
        value = getattr(c, name)
        if not (math.isfinite(value) and value >= 0):
            raise UserError(f"--{_flag(name)} must be >= 0, got {value!r}")
    if c.train_only not in TRAIN_ONLY:
        raise UserError(f"--train-only must be one of {', '.join(t for t in TRAIN_ONLY if t)}, got {c.train_only!r}")
    if c.train_only and c.init is None:
        raise UserError("--train-only trains part of an existing model; give its checkpoint with --init")
    if c.train_only == "iou_head" and not (c.iou_loss_weight > 0 or c.iou_rank_weight > 0):
        raise UserError("--train-only iou_head needs --iou-loss-weight or --iou-rank-weight above 0")
    if c.lr_schedule not in LR_SCHEDULES:
        raise UserError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {c.lr_schedule!r}")
    for name in ("size", "gen_size"):
        value = getattr(c, name)
        if value is not None and (not isinstance(value, int) or value < 64 or value % 16):
            raise UserError(f"--{_flag(name)} must be a multiple of 16 and at least 64, got {value!r}")
    if not isinstance(c.seed, int) or c.seed < 0:
        raise UserError(f"--seed must be an integer >= 0, got {c.seed!r}")
    if c.time_budget is not None and not (isinstance(c.time_budget, (int, float)) and math.isfinite(c.time_budget)
                                          and c.time_budget > 0):
        raise UserError(f"--time-budget must be a positive number of minutes, got {c.time_budget!r}")
    for name, top in UPPER_BOUNDS.items():
        value = getattr(c, name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > top:
            raise UserError(f"--{_flag(name)} must be at most {top}, got {value!r}")
    if c.init is not None and c.init != "default" and not Path(c.init).is_file():
        raise UserError(f"--init checkpoint not found: {c.init}")
    for name in ("finetune_synth_fraction", "finetune_val_fraction"):
        value = getattr(c, name)
        if not (isinstance(value, (int, float)) and 0.0 <= value < 1.0):
            raise UserError(f"--{_flag(name).replace('finetune-', '')} must be in [0, 1), got {value!r}")
    if known_encoders is not None and c.encoder not in known_encoders:
        raise UserError(f"unknown encoder {c.encoder!r}; known encoders: {', '.join(known_encoders)}")
    _validate_encoder_policy(c)
    _validate_device(c.device)


def _validate_encoder_policy(c: TrainConfig) -> None:
    if is_vit(c.encoder):
        if c.train_encoder:
            # Fine-tuning a ViT-H on 1024 px images is a different project (memory, schedule); the
            # trainable-encoder path is meant for small encoders trained from scratch.
            raise UserError(
                f"--train-encoder is not supported for {c.encoder}: SAM's ViT encoders stay frozen; "
                "train a small encoder (e.g. --encoder tiny_cnn) from scratch instead"
            )
        if c.sam_checkpoint is None:
            raise UserError(
                f"encoder {c.encoder} is frozen and needs its official weights: pass --sam-checkpoint PATH"
            )
    elif c.sam_checkpoint is not None:
        raise UserError(f"--sam-checkpoint only applies to SAM's vit_* encoders, not {c.encoder}")
    whole_model_only = [name for name in ("iou_rank_weight", "first_mask_weight") if getattr(c, name) > 0]
    if whole_model_only:
        from synthfm.modeling.registry import ENCODERS, is_whole_model

        if c.encoder in ENCODERS and not is_whole_model(c.encoder):
            raise UserError(f"--{_flag(whole_model_only[0])} applies to the click_unet family only, not {c.encoder}")
    if c.sam_checkpoint is not None and not Path(c.sam_checkpoint).is_file():
        raise UserError(f"SAM checkpoint file not found: {c.sam_checkpoint}")


def _validate_device(device: str) -> None:
    from synthfm.devices import resolve_device

    resolve_device(device)  # the one resolver: UserError for a device this machine does not have


def _flag(name: str) -> str:
    return name.replace("_", "-")


def changed_fields(old: TrainConfig, new: TrainConfig) -> list[str]:
    """Names of the fields whose values differ between two configs."""
    return [f.name for f in dataclasses.fields(TrainConfig) if getattr(old, f.name) != getattr(new, f.name)]


__all__ = [
    "TrainConfig",
    "PRESETS",
    "RESUMABLE_OVERRIDES",
    "preset_config",
    "init_config",
    "INIT_SCHEDULE",
    "config_to_dict",
    "config_from_dict",
    "steps_per_epoch",
    "is_vit",
    "validate_config",
    "changed_fields",
]
