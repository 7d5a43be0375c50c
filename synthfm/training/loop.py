"""The training loop behind ``train.py``: on-the-fly synthetic images -> prompted Dice training.

One optimiser step on each process:

1. B images (with K prompt sets each) come from ``SyntheticStream`` through DataLoader workers,
   which also draw the prompts (:mod:`synthfm.training.data`), so generation overlaps compute;
2. the encoder runs once per image (under no_grad when frozen); its embeddings are repeated K
   times so that ``SynthFM.decode`` sees B*K (embedding, prompt set) pairs;
3. the prompt sets are decoded in up to three groups (points with a single mask, single clicks with
   SAM's 3 ambiguity masks when ``multimask``, boxes alone), the low-res logits are upsampled to
   S x S and compared with the full-resolution targets by soft Dice (the paper's loss; the small
   preset adds pixel-wise BCE, see ``TrainConfig.bce_weight``), averaged over prompt sets.
   The loss is taken at full resolution because that is what inference thresholds (the
   predictor upsamples the same logits) and thin structures vanish in a 4x downsampled target
   (:mod:`synthfm.training.step`).

Whole-model families (``click_unet``) decode every prompt set in one pass with all candidates and
their own objective (:mod:`synthfm.training.early_fusion`).

Processes (``torchrun``) each read their own disjoint part of the stream (``rank``/``world_size``)
and average gradients (:mod:`synthfm.training.distributed`); only rank 0 writes files.  Every step is a pure function of (config, recipe, seed, step), so a run stopped at
any point and resumed (:mod:`synthfm.training.run_folder`) ends with the same weights as a run that
was never interrupted.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from tqdm import tqdm

from synthfm import __version__
from synthfm.errors import UserError
from synthfm.training.config import (
    RESUMABLE_OVERRIDES,
    TrainConfig,
    changed_fields,
    config_from_dict,
    config_to_dict,
    steps_per_epoch,
    validate_config,
)
from synthfm.training.distributed import (
    DistContext,
    allreduce_gradients,
    broadcast_error,
    init_distributed,
    resolve_device,
)
from synthfm.training.early_fusion import trained_outputs
from synthfm.training.init_from import freeze_all_but, load_init
from synthfm.training.data import PromptedItemTransform, PromptPolicy, TrainBatch, TrainItem, collate_items, item_to_wire
from synthfm.training.finetune_data import check_same_finetune_data, finetune_data_for, init_record
from synthfm.training.run_folder import (
    CONFIG_FILE,
    BEST_WEIGHTS,
    TRAIN_LOG,
    TRAIN_LOG_COLUMNS,
    VAL_LOG,
    CsvLog,
    LoopState,
    RUN_FILES,
    prepare_run_folder,
    read_checkpoint,
    read_run_config,
    restore_rng_state,
    truncate_log,
    write_checkpoint,
    write_run_config,
)
from synthfm.training.run_checks import check_run_inputs, check_same_run
from synthfm.training.run_guard import RunGuard
from synthfm.training.step import compute_loss, lr_at, optimizer_step, prompt_groups
from synthfm.training.validation import ValidationSet, build_validation_set, evaluate_validation, setting_key


# ---------------------------------------------------------------------------------------------
# model, learning rate, loss


def build_training_model(config: TrainConfig):
    """A freshly initialised SynthFM for ``config`` (weights drawn from ``config.seed``).

    vit_* encoders get their official weights (``config.sam_checkpoint``) and stay frozen; the
    decoder (and a small encoder) start from a seeded random init.  The global torch RNG is left
    as it was.
    """
    from synthfm.weights import init_model

    frozen = None if config.train_encoder is None else not config.train_encoder
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = init_model(config.encoder, config.size, sam_checkpoint=config.sam_checkpoint, freeze_encoder=frozen)
    if config.init is not None:
        load_init(model, config)
    if config.train_only:
        freeze_all_but(model, config.train_only)
    return model



# ---------------------------------------------------------------------------------------------
# data


class ItemLoader:
    """Iterable of :class:`TrainItem` (tensors) over a DataLoader whose workers send them as arrays.

    loader: the underlying DataLoader (kept so that its workers live as long as this object).
    """

    def __init__(self, loader: torch.utils.data.DataLoader):
        self.loader = loader

    def __iter__(self) -> Iterator[TrainItem]:
        return (TrainItem.from_wire(item) for item in self.loader)


def make_loader(recipe, config: TrainConfig, image_size: int, start: int, rank: int, world_size: int,
                real=None) -> ItemLoader:
    """Items of this process's part of the training stream, from stream index ``start``.

    Generated in ``config.workers`` DataLoader processes (0 = in this one), in index order.

    real: the run's :class:`~synthfm.training.finetune_data.FinetuneData` (fine-tuning: real
    slices mixed with ``config.finetune_synth_fraction`` synthetic samples), or None.
    """
    from synthfm.synth.dataset import SyntheticStream
    from synthfm.training.finetune_data import FinetuneStream

    policy = PromptPolicy.from_config(config)
    transform = PromptedItemTransform(config.seed, image_size, policy)
    common = dict(start=start, rank=rank, world_size=world_size, transform=transform)
    if real is not None:
        stream = FinetuneStream(real.train, config.finetune_synth_fraction, recipe, config.seed,
                                config.gen_size or image_size, **common)
    else:
        stream = SyntheticStream(recipe, config.seed, config.gen_size or image_size, **common)
    workers = config.workers
    extra: dict[str, Any] = {}
    if workers:
        # keep about two steps' worth of items queued so generation never starves the model
        extra = dict(prefetch_factor=max(2, math.ceil(2 * config.batch_size / workers)))
    # no pin_memory: collate_items copies the items into new (pageable) batch tensors anyway
    return ItemLoader(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers,
                                                  collate_fn=item_to_wire, **extra))


def _batches(recipe, config: TrainConfig, image_size: int, start: int, dist: DistContext, device: torch.device,
             real=None):
    """(iterator of (batch, next stream index), the DataLoader or None) for ``config.synth_device``."""
    from synthfm.training.device_batches import WORKERS, device_batches

    if config.synth_device != WORKERS:
        return device_batches(recipe, config, image_size, device, start, dist.rank, dist.world_size), None
    loader = make_loader(recipe, config, image_size, start, dist.rank, dist.world_size, real=real)
    return iterate_batches(loader, config.batch_size), loader


def iterate_batches(loader, batch_size: int) -> Iterator[tuple[TrainBatch, int]]:
    """(batch, next stream index) pairs: B consecutive non-skipped items of the loader.

    next stream index = 1 + the index of the last item consumed (skipped ones included), i.e. the
    ``start`` at which a resumed stream continues exactly after this batch.
    """
    items = []
    for item in loader:
        if item.skip:
            continue
        items.append(item)
        if len(items) == batch_size:
            yield collate_items(items), items[-1].index + 1
            items = []


# ---------------------------------------------------------------------------------------------
# the run


@dataclass
class TrainResult:
    """What a call to :func:`train` did."""

    out: Path
    step: int
    total_steps: int
    epochs_done: int
    images_seen: int
    wall_s: float
    best_score: float | None
    last_val: dict[str, float]
    final_loss: float | None
    time_budget_spent: bool = False


def resume_config(out: str | os.PathLike, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The config of the run in ``out`` with ``overrides`` (TrainConfig field -> value) applied.

    Only options that do not change the weights (RESUMABLE_OVERRIDES: epochs, workers, device, ...)
    may differ from the saved run; anything else raises UserError naming it.
    """
    saved = config_from_dict(read_run_config(Path(out))["config"])
    overrides = dict(overrides or {})
    overrides["out"] = str(out)
    config = dataclasses.replace(saved, **overrides)
    _check_resumable(saved, config)
    return config


def _check_resumable(saved: TrainConfig, config: TrainConfig) -> None:
    bad = [name for name in changed_fields(saved, config) if name not in RESUMABLE_OVERRIDES]
    if bad:
        details = ", ".join(f"{n}={getattr(config, n)!r} (run has {getattr(saved, n)!r})" for n in bad)
        raise UserError(f"cannot change {details} when resuming; only {', '.join(sorted(RESUMABLE_OVERRIDES))} may change")


def _load_recipe(config: TrainConfig, out: Path, resume: bool):
    from synthfm.synth.recipe import load_recipe, recipe_from_dict

    if resume:
        saved = read_run_config(out).get("recipe")
        if not isinstance(saved, dict):
            raise UserError(f"{out / 'config.json'} is not a synthfm run config (no 'recipe' section)")
        return recipe_from_dict(saved, source=str(out / "config.json"))
    return load_recipe(config.recipe)


def train(config: TrainConfig, *, resume: bool = False, overwrite: bool = False,
          stop_after_steps: int | None = None, progress: bool = True) -> TrainResult:
    """Train (or, with ``resume``, continue) the run described by ``config`` in ``config.out``.

    resume: continue the run in ``config.out`` (its saved config and recipe are used; build
    ``config`` with :func:`resume_config`).  overwrite: replace a previous run in ``config.out``.
    stop_after_steps: stop (with a checkpoint) once this many steps are done in total; the run can
    be resumed later as if it had not stopped.  Every user mistake raises UserError before any
    training work starts.
    """
    from synthfm.modeling import ENCODERS

    dist = DistContext.from_env()
    validate_config(config, tuple(ENCODERS))
    out = Path(config.out)
    if resume:
        _check_resumable(config_from_dict(read_run_config(out)["config"]), config)
    recipe = _load_recipe(config, out, resume)
    real = finetune_data_for(config)  # reads and checks the labelled folders before anything is written
    if resume and real is not None:
        check_same_finetune_data(read_run_config(out).get("finetune_datasets"), real)
    created_group = init_distributed(dist, config.device)
    try:
        return _prepare_and_run(config, recipe, out, dist, resume, overwrite, stop_after_steps, progress, real)
    finally:
        if created_group:
            torch.distributed.destroy_process_group()


def _prepare_and_run(config: TrainConfig, recipe, out: Path, dist: DistContext, resume: bool, overwrite: bool,
                     stop_after_steps: int | None, progress: bool, real=None) -> TrainResult:
    from synthfm.training.device_batches import validate_device_synthesis

    validate_device_synthesis(config, resolve_device(config.device, dist))  # before the run folder is touched
    check_run_inputs(config)
    error = None
    guard = RunGuard(out, RUN_FILES + ("tb",)) if dist.is_main else None
    if dist.is_main:
        try:
            prepare_run_folder(out, resume, overwrite, guard)
        except UserError as exc:
            error = str(exc)
    broadcast_error(dist, error)
    try:
        return _session(config, recipe, out, dist, resume, stop_after_steps, progress, guard, real)
    except BaseException:
        if guard is not None:
            guard.failed()  # before the first checkpoint: the new run's files go, a set-aside run comes back
        raise
    finally:
        if guard is not None:
            guard.release()


def _session(config: TrainConfig, recipe, out: Path, dist: DistContext, resume: bool, stop_after_steps: int | None,
             progress: bool, guard, real=None) -> TrainResult:
    device = resolve_device(config.device, dist)

    point = None
    if resume:
        if dist.is_main:
            point = read_checkpoint(out)  # completes an interrupted commit before the others read
        dist.barrier()
        if not dist.is_main:
            point = read_checkpoint(out)
    if point is not None:
        check_same_run(out, point.weights)
    model = _model_for_run(config, point)
    amp = device.type == "cuda" if config.amp is None else bool(config.amp)
    config = dataclasses.replace(
        config, size=model.image_size, gen_size=config.gen_size or model.image_size,
        train_encoder=not model.encoder_frozen, amp=amp,
    )
    if dist.is_main and not resume:
        from synthfm.synth.recipe import recipe_to_dict

        write_run_config(out, {"config": config_to_dict(config), "recipe": recipe_to_dict(recipe),
                               "world_size": dist.world_size, "synthfm_version": __version__,
                               "init": init_record(config), "finetune_datasets": [] if real is None else real.summary()})
    dist.barrier()
    return _run(config, recipe, model, point, device, dist, stop_after_steps, progress, real,
                on_commit=guard.committed if guard is not None else None)


def _model_for_run(config: TrainConfig, point):
    if point is None:
        return build_training_model(config)
    from synthfm.weights import load_model

    model, _ = load_model(point.weights, sam_checkpoint=config.sam_checkpoint, device="cpu")
    model.set_encoder_frozen(not config.train_encoder)
    return model


class _Loop:
    """Mutable per-session bookkeeping of :func:`train` (logging windows, timers, outputs)."""

    def __init__(self, config: TrainConfig, recipe, out: Path, dist: DistContext, loop: LoopState,
                 device: torch.device, real=None):
        self.config, self.recipe, self.out, self.dist, self.state = config, recipe, out, dist, loop
        self.real = real
        # what the run started from, as recorded when it started (a resumed run keeps it)
        self.init = read_run_config(out).get("init") if (out / CONFIG_FILE).is_file() else None
        self.device = device
        self.session_start = time.perf_counter()
        self.session_wall0 = loop.wall_s
        self.window_loss = torch.zeros((), device=device)  # summed on the device: no sync per step
        self.window_steps = 0
        self.window_start = time.perf_counter()
        self.last_val: dict[str, float] = {}
        self.last_loss: float | None = None
        self.skipped_in_a_row = 0
        self.window_skipped = 0  # skipped steps since the last log row

    def wall(self) -> float:
        return self.session_wall0 + time.perf_counter() - self.session_start

    def metadata(self) -> dict[str, Any]:
        from synthfm.synth.recipe import recipe_to_dict

        return {
            "recipe": recipe_to_dict(self.recipe),
            "train_config": config_to_dict(self.config),
            "images_seen": self.state.images_seen,
            "step": self.state.step,
            "epochs_done": self.state.epochs_done,
            "wall_s": round(self.wall(), 3),
            "val": self.last_val,
            "trained_outputs": trained_outputs(self.config),
            # the real data a model saw: empty for synthetic-only training, never absent
            "finetune_datasets": [] if self.real is None else self.real.summary(),
            "validation": "synthetic" if self.real is None or not self.real.val else "finetune_held_out_cases",
            **({"init": self.init} if self.init else {}),
        }


def _run(config: TrainConfig, recipe, model, point, device: torch.device, dist: DistContext,
         stop_after_steps: int | None, progress: bool, real=None, on_commit=None) -> TrainResult:
    from synthfm.weights.checkpoint import save_checkpoint

    out = Path(config.out)
    model.to(device)
    model.train()
    params = model.trainable_parameters()
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    state = LoopState(next_index=[0] * dist.world_size)
    if point is not None:
        state = point.loop
        if len(state.next_index) != dist.world_size:
            raise UserError(f"the run was trained with {len(state.next_index)} process(es); resume it with as many "
                            f"(this job has {dist.world_size})")
        optimizer.load_state_dict(point.optimizer)
        restore_rng_state(point.rng)
    spe = steps_per_epoch(config, dist.world_size)
    total = config.epochs * spe
    if dist.is_main:
        # rows logged after the checkpoint belong to steps that are run again
        truncate_log(out / TRAIN_LOG, lambda r: int(r["step"]) <= state.step)
        truncate_log(out / VAL_LOG, lambda r: int(r["step"]) <= state.step)
    run = _Loop(config, recipe, out, dist, state, device, real)
    encode, decode = model.encode, model.decode
    if config.compile:
        # only the encoder: it dominates the cost and has static shapes; the decoder's prompt groups
        # change size every step and SAM's prompt encoder indexes with boolean masks (graph breaks)
        encode = torch.compile(model.encode)
    vset = _validation_set(config, recipe, model.image_size, dist, real)
    logs = _Logs(out, dist, vset)
    step_images = config.batch_size * dist.world_size
    budget_s = None if config.time_budget is None else 60.0 * config.time_budget

    def budget_spent() -> float:
        """Share of the time budget used so far (0 without one); rank 0's clock for every process."""
        if budget_s is None:
            return 0.0
        fraction = run.wall() / budget_s
        if dist.enabled:  # one clock, so every replica takes the same learning rate and stops together
            value = torch.tensor([fraction], dtype=torch.float64, device=device)
            torch.distributed.broadcast(value, src=0)
            fraction = float(value.item())
        return fraction

    def checkpoint() -> None:
        next_index = state.next_index
        if dist.enabled:
            gathered: list[Any] = [None] * dist.world_size
            torch.distributed.all_gather_object(gathered, next_index[dist.rank])
            next_index = [int(v) for v in gathered]
        state.next_index = next_index
        state.wall_s = run.wall()
        if dist.is_main:
            write_checkpoint(out, lambda p: save_checkpoint(p, model, metadata=run.metadata()), optimizer, state)
            if on_commit is not None:
                on_commit()  # the first commit of an --overwrite run drops the set-aside previous run

    bar = tqdm(total=total, initial=state.step, disable=not (progress and dist.is_main), unit="step",
               dynamic_ncols=True)
    loader = None
    try:
        spent = budget_spent()  # read once a step, after it: this step's stop and the next step's rate
        if state.step < total and (stop_after_steps is None or state.step < stop_after_steps) and spent < 1:
            batches, loader = _batches(recipe, config, model.image_size, state.next_index[dist.rank], dist, device,
                                       real)
            run.window_start = time.perf_counter()
            while state.step < total:
                batch, next_index = next(batches)
                lr = lr_at(config, state.step, total, min(1.0, spent))
                loss = optimizer_step(model, optimizer, batch.to(device, non_blocking=True), config, lr,
                                      world_size=dist.world_size, encode=encode, decode=decode)
                state.step += 1
                state.images_seen += step_images
                state.next_index[dist.rank] = next_index
                if torch.isfinite(loss):  # optimizer_step has synced already
                    run.window_loss += loss.float()
                    run.window_steps += 1
                    run.skipped_in_a_row = 0
                else:
                    _skipped_step(run, lr)
                epoch_end = state.step % spe == 0
                if epoch_end:
                    state.epochs_done += 1
                bar.update(1)
                spent = budget_spent()
                out_of_time = spent >= 1
                if state.step % config.log_every == 0 or epoch_end or out_of_time or state.step == total:
                    logs.train_row(run, lr, bar)
                if (epoch_end or out_of_time) and vset is not None:
                    _validate(model, vset, device, config, run, logs, save_checkpoint)
                stopping = stop_after_steps is not None and state.step >= stop_after_steps
                periodic = config.checkpoint_every and state.step % config.checkpoint_every == 0
                if periodic or epoch_end or stopping or out_of_time or state.step == total:
                    checkpoint()
                if stopping or out_of_time:
                    break
    finally:
        bar.close()
        logs.close()
        del loader
    return TrainResult(out, state.step, total, state.epochs_done, state.images_seen, run.wall(),
                       state.best_score, run.last_val, run.last_loss,
                       budget_s is not None and state.wall_s >= budget_s)


# this many skipped steps in a row (non-finite loss or gradient) end the run: it has diverged
MAX_SKIPPED_IN_A_ROW = 20


def _skipped_step(run: "_Loop", lr: float) -> None:
    """Count a step that optimizer_step skipped; say so, and stop the run once it has diverged."""
    run.skipped_in_a_row += 1
    run.window_skipped += 1
    if run.skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW:
        raise UserError(
            f"training diverged: the last {run.skipped_in_a_row} steps (up to step {run.state.step}, learning rate "
            f"{lr:.3g}) had a non-finite loss or gradient and were skipped, so the weights in {run.out} are from "
            f"before; start a new run from its best.safetensors with --init and a lower --lr (or --no-amp)")


def _validation_set(config: TrainConfig, recipe, image_size: int, dist: DistContext,
                    real=None) -> ValidationSet | None:
    if not dist.is_main or config.val_images == 0:
        return None
    if real is not None and real.val:
        from synthfm.training.finetune_data import build_real_validation_set

        vset = build_real_validation_set(real.val, image_size, config.seed)
        if len(vset):
            return vset
    return build_validation_set(recipe, config.seed, config.val_images, image_size, config.gen_size,
                                workers=config.workers, targets=config.targets)


def _validate(model, vset: ValidationSet, device, config: TrainConfig, run: _Loop, logs: "_Logs",
              save_checkpoint) -> None:
    scores = evaluate_validation(model, vset, device, amp=bool(config.amp))
    run.last_val = scores
    state = run.state
    logs.val_row(run, scores)
    if scores and (state.best_score is None or scores["mean"] > state.best_score):
        state.best_score = scores["mean"]
        state.best_step = state.step
        save_checkpoint(run.out / BEST_WEIGHTS, model, metadata=run.metadata())


class _Logs:
    """log.csv / val.csv (+ TensorBoard when installed), written by rank 0 only."""

    def __init__(self, out: Path, dist: DistContext, vset: ValidationSet | None):
        self.enabled = dist.is_main
        self.dist = dist
        self.train = CsvLog(out / TRAIN_LOG, TRAIN_LOG_COLUMNS) if self.enabled else None
        self.val = None
        self.val_columns: tuple[str, ...] = ()
        if self.enabled and vset is not None:
            self.val_columns = ("step", "epoch", "images_seen", *(setting_key(s) for s in vset.settings), "mean")
            self.val = CsvLog(out / VAL_LOG, self.val_columns)
        self.tb = _tensorboard(out) if self.enabled else None

    def train_row(self, run: _Loop, lr: float, bar) -> None:
        loss_sum = run.window_loss.clone()
        if self.dist.enabled:  # every process takes part; only rank 0 writes
            torch.distributed.all_reduce(loss_sum)
            loss_sum /= self.dist.world_size
        now = time.perf_counter()
        steps = run.window_steps + run.window_skipped
        # the mean over the steps that updated the weights (NaN if the whole window was skipped)
        loss = float(loss_sum) / run.window_steps if run.window_steps else math.nan
        img_s = max(1, steps) * run.config.batch_size * self.dist.world_size / max(now - run.window_start, 1e-9)
        if run.window_skipped and self.enabled:
            tqdm.write(f"step {run.state.step}: {run.window_skipped} of the last {steps} steps skipped "
                       f"(non-finite loss or gradient)", file=sys.stderr)
        run.window_loss = torch.zeros((), device=run.device)
        run.window_steps = 0
        run.window_skipped = 0
        run.window_start = now
        run.last_loss = loss
        if not self.enabled:
            return
        st = run.state
        self.train.write(dict(step=st.step, epoch=st.epochs_done, images_seen=st.images_seen, loss=loss, lr=lr,
                              img_s=img_s, wall_s=run.wall()))
        bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{img_s:.1f}", refresh=False)
        if self.tb is not None:
            self.tb.add_scalar("train/loss", loss, st.step)
            self.tb.add_scalar("train/lr", lr, st.step)
            self.tb.add_scalar("train/img_s", img_s, st.step)

    def val_row(self, run: _Loop, scores: dict[str, float]) -> None:
        if not self.enabled or self.val is None or not scores:
            return
        st = run.state
        self.val.write(dict(step=st.step, epoch=st.epochs_done, images_seen=st.images_seen, **scores))
        if self.tb is not None:
            for key, value in scores.items():
                self.tb.add_scalar(f"val/{key}", value, st.step)

    def close(self) -> None:
        for log in (self.train, self.val, self.tb):
            if log is not None:
                log.close()


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(log_dir=str(out / "tb"))


__all__ = [
    "DistContext",
    "TrainResult",
    "allreduce_gradients",
    "build_training_model",
    "compute_loss",
    "iterate_batches",
    "lr_at",
    "make_loader",
    "optimizer_step",
    "prompt_groups",
    "resolve_device",
    "resume_config",
    "train",
]
