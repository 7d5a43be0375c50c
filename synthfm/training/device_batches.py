"""Training batches made on the training device by the torch engine (``--synth-device``).

With ``synth_device="workers"`` (the default) images come from the numpy engine in DataLoader
worker processes (:func:`synthfm.training.loop.make_loader`).  Any other value names a torch
device (``cuda``, ``cuda:1``, ``cpu``) on which :class:`synthfm.synth.gpu.GpuSynthGenerator` draws
whole batches, prompts included, so a GPU trainer never waits for CPU workers; it must be the
device the model trains on.

Reproducibility: the images of stream index ``i`` onwards are drawn with a torch.Generator seeded
from ``(seed, rank, i)``, so a resumed run (which restarts at its saved stream index) sees the same
batches as an uninterrupted one on the same device.  The two engines are statistically matched,
not bit-identical (see ``synthfm.synth.gpu``).

What the torch engine adds here for the click models' training signal:

* previous-mask inputs on ``mask_fraction`` of the prompt sets: the target at S/4, dilated or eroded
  by 0-2 cells, shifted by up to 2 cells, as logits of random confidence (a previous prediction or
  a neighbouring slice); the clicks stay the simulated ones (no corrective clicks, unlike the
  numpy engine's ``synthfm.training.prompt_augment.corrective_clicks``);
* images generated at ``gen_size`` are resized to the model size S (area for images, nearest for
  masks) and the clicks and boxes scaled with them.

Zoomed crops (``zoom_fraction``) are not implemented by the torch engine; ``validate_device_synthesis``
refuses them rather than silently training without.
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F

from synthfm.errors import UserError
from synthfm.training.config import TrainConfig
from synthfm.training.data import PromptPolicy, TrainBatch, gpu_train_batch

WORKERS = "workers"
_MASK_LOGIT_RANGE = (2.0, 8.0)
_MAX_SHIFT_CELLS = 2
_MAX_MORPH_CELLS = 2


def validate_device_synthesis(config: TrainConfig, device: torch.device) -> None:
    """UserError (one line) when ``config.synth_device`` cannot be used with training ``device``."""
    if config.synth_device == WORKERS:
        return
    try:
        synth = torch.device(config.synth_device)
    except (RuntimeError, TypeError, ValueError):
        raise UserError(f"--synth-device must be 'workers' or a torch device such as cuda, got {config.synth_device!r}")
    if synth.type != device.type or (synth.index is not None and device.index is not None and synth.index != device.index):
        raise UserError(f"--synth-device {config.synth_device} must be the training device ({device})")
    if config.zoom_fraction > 0:
        raise UserError("--zoom-fraction is not implemented by the torch engine; use --zoom-fraction 0 with --synth-device")


def stream_generator(device: torch.device, seed: int, rank: int, index: int) -> torch.Generator:
    """The torch.Generator that draws the batch starting at stream ``index`` of ``rank``."""
    return torch.Generator(device=device).manual_seed((int(seed) * 1_000_003 + int(rank) * 7_919 + int(index)) % 2**63)


def previous_mask_logits(masks: torch.Tensor, gen: torch.Generator, side: int) -> torch.Tensor:
    """(M, 1, side, side) float32 logits of perturbed (M, H, W) {0,1} targets (see the module docstring)."""
    m = masks.shape[0]
    dev = masks.device
    low = (F.adaptive_avg_pool2d(masks[:, None].float(), side) > 0.5).float()
    radius = torch.randint(-_MAX_MORPH_CELLS, _MAX_MORPH_CELLS + 1, (m,), generator=gen, device=dev)
    for r in range(1, _MAX_MORPH_CELLS + 1):
        k = 2 * r + 1
        dilated = F.max_pool2d(low, k, stride=1, padding=r)
        eroded = -F.max_pool2d(-low, k, stride=1, padding=r)
        low = torch.where((radius == r)[:, None, None, None], dilated, low)
        low = torch.where((radius == -r)[:, None, None, None], eroded, low)
    shifts = torch.randint(-_MAX_SHIFT_CELLS, _MAX_SHIFT_CELLS + 1, (m, 2), generator=gen, device=dev)
    low = torch.stack([torch.roll(low[i], (int(shifts[i, 0]), int(shifts[i, 1])), dims=(1, 2)) for i in range(m)])
    lo, hi = _MASK_LOGIT_RANGE
    confidence = lo + (hi - lo) * torch.rand(m, 1, 1, 1, generator=gen, device=dev)
    return (2.0 * low - 1.0) * confidence


def _to_model_size(batch: TrainBatch, size: int) -> TrainBatch:
    gen_size = batch.images.shape[-1]
    if gen_size == size:
        return batch
    scale = size / gen_size
    batch.images = F.interpolate(batch.images, size=(size, size), mode="area")
    batch.masks = (F.interpolate(batch.masks[:, None].float(), size=(size, size), mode="area")[:, 0] > 0.5).to(torch.uint8)
    batch.point_coords = batch.point_coords * scale
    batch.boxes = batch.boxes * scale
    return batch


def device_batches(recipe, config: TrainConfig, image_size: int, device: torch.device, start: int, rank: int,
                   world_size: int) -> Iterator[tuple[TrainBatch, int]]:
    """Endless (batch, next stream index) pairs made on ``device``, from stream index ``start``.

    Same contract as :func:`synthfm.training.loop.iterate_batches`: ``next index`` is where a
    resumed stream continues.  A batch can hold fewer than ``batch_size`` images when the engine
    drops one without a valid target (rare).
    """
    from synthfm.synth.gpu import GpuSynthGenerator

    engine = GpuSynthGenerator(recipe, config.gen_size or image_size, device)
    policy = PromptPolicy.from_config(config)
    index = start
    while True:
        gen = stream_generator(device, config.seed, rank, index)
        batch = _to_model_size(gpu_train_batch(engine, config.batch_size, policy, gen, index), image_size)
        if config.mask_fraction > 0:
            rows = batch.masks.shape[0]
            batch.has_mask = torch.rand(rows, generator=gen, device=device) < config.mask_fraction
            batch.mask_inputs = previous_mask_logits(batch.masks, gen, image_size // 4) * batch.has_mask[:, None, None, None]
        index += config.batch_size
        yield batch, index
