"""Batched synthetic generator in torch: whole training batches made on the training device.

``GpuSynthGenerator(recipe, size, device).generate(batch, gen)`` draws ``batch`` samples with the
recipe's module mix (shape-aware / boundary-aware), flavours, contrast, artefacts, noise kinds,
augmentation and target rules, as a pure function of the ``torch.Generator`` state (same device,
same seed -> same batch).  ``prompted_batch`` adds K prompt sets per image drawn on the device
(a :class:`synthfm.synth.batch.PromptedBatch`; the trainer wraps it with ``synthfm.training.data.gpu_train_batch``) (:mod:`synthfm.synth.gpu.clicks`), so a GPU trainer never waits for
CPU workers.  Statistically matched to the numpy engine (same ranges and kinds), not bit-identical;
the documented differences are in each module's docstring, plus: augmentation does flips, a
transpose (with the flips: every 90-degree rotation), affine and brightness/contrast, but no
elastic grid distortion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from synthfm.synth.batch import PromptedBatch
from synthfm.synth.recipe import FLAVOURS, Recipe
from synthfm.synth.gpu.acquisition import acquire, flavour_table, modulate_contrast, render_clean
from synthfm.synth.gpu.clicks import mask_boxes, simulate_clicks
from synthfm.synth.gpu.fields import bernoulli, integer, uniform
from synthfm.synth.gpu.labelmaps import render_boundary_scene
from synthfm.synth.gpu.shapes import MAX_LABELS, GpuScene, render_shape_scene
from synthfm.synth.gpu.targets import assess_targets, choose_targets, component_masks, target_masks

MIN_SIZE = 16


@dataclass
class GpuSyntheticBatch:
    """images: (B, 1, S, S) float32 in [0, 1].  labels: (B, S, S) uint8 label ids (0 = background,
    gaps, outside the field of view).  members: (B, T, 256) bool, target t = union of those label
    ids.  valid: (B, T) bool target validity (exists, not too small, not cut by the border).
    fov: (B, S, S) bool field of view or None (whole image).  module: (B,) int64, 0 = shape,
    1 = boundary.  flavour: (B,) int64 index into ``synthfm.synth.recipe.FLAVOURS``.
    noises: (B, 5) bool over ``NOISE_KINDS``."""

    images: torch.Tensor
    labels: torch.Tensor
    members: torch.Tensor
    valid: torch.Tensor
    fov: torch.Tensor | None
    module: torch.Tensor
    flavour: torch.Tensor
    noises: torch.Tensor

    def target_mask(self, b: int, t: int) -> torch.Tensor:
        """(S, S) bool mask of target t of image b."""
        return self.members[b, t][self.labels[b].long()]


def _merge(scenes: list[tuple[torch.Tensor, GpuScene]], batch: int, size: int, device) -> GpuScene:
    t_max = max(s.members.shape[1] for _, s in scenes)
    labels = torch.zeros(batch, size, size, dtype=torch.uint8, device=device)
    intensity = torch.zeros(batch, MAX_LABELS + 1, device=device)
    members = torch.zeros(batch, t_max, MAX_LABELS + 1, dtype=torch.bool, device=device)
    exists = torch.zeros(batch, t_max, dtype=torch.bool, device=device)
    for idx, s in scenes:
        t = s.members.shape[1]
        labels[idx], intensity[idx] = s.labels, s.intensity
        members[idx, :t], exists[idx, :t] = s.members, s.exists
    return GpuScene(labels, intensity, members, exists)


class GpuSynthGenerator:
    """Synthetic batches of ``size`` x ``size`` images on ``device`` for ``recipe``.

    native_scale: override the per-batch native resolution draw (fraction of ``size``), e.g. 1.0.
    """

    def __init__(self, recipe: Recipe, size: int, device: torch.device | str = "cuda", native_scale: float | None = None):
        if int(size) < MIN_SIZE:
            raise ValueError(f"size must be >= {MIN_SIZE}, got {size}")
        self.recipe = recipe
        self.size = int(size)
        self.device = torch.device(device)
        self.native_scale = native_scale

    def make_generator(self, seed: int) -> torch.Generator:
        """A torch.Generator on this generator's device seeded with ``seed``."""
        return torch.Generator(device=self.device).manual_seed(int(seed))

    def _scenes(self, batch: int, gen: torch.Generator) -> tuple[GpuScene, torch.Tensor]:
        r, s, dev = self.recipe, self.size, self.device
        p_shape = r.modules.shape / (r.modules.shape + r.modules.boundary)
        module = (~bernoulli(gen, batch, p_shape, dev)).long()
        parts = []
        for which, render in ((0, lambda n: render_shape_scene(r.shape, r.contrast, n, s, gen, dev)),
                              (1, lambda n: render_boundary_scene(r.boundary, r.contrast, n, s, gen, dev))):
            idx = torch.nonzero(module == which).flatten()
            if idx.numel():
                parts.append((idx, render(int(idx.numel()))))
        return _merge(parts, batch, s, dev), module

    @torch.no_grad()
    def generate(self, batch: int, gen: torch.Generator) -> GpuSyntheticBatch:
        """``batch`` samples drawn with ``gen`` (a torch.Generator on ``self.device``)."""
        r, s, dev = self.recipe, self.size, self.device
        scene, module = self._scenes(batch, gen)
        flavour_p = flavour_table(r, "p", dev)
        flavour = torch.multinomial(flavour_p[None].expand(batch, -1), 1, generator=gen)[:, 0]
        scale = self.native_scale
        if scale is None:
            scale = float(uniform(gen, 1, r.artefacts.native_scale_range, dev)[0])
        native = int(min(s, max(MIN_SIZE, round(s * scale))))
        image = render_clean(scene.labels, scene.intensity, native, r, flavour_table(r, "texture_scale", dev)[flavour], gen)
        image = modulate_contrast(image, r, gen)
        image, labels, fov, noises = acquire(image, scene.labels, flavour, r, gen)
        image, labels, fov = augment(image, labels, fov, r, gen)
        valid, _ = assess_targets(labels, scene.members, scene.exists, r.targets, fov)
        return GpuSyntheticBatch(image[:, None].contiguous(), labels, scene.members, valid, fov, module, flavour, noises)

    @torch.no_grad()
    def prompted_batch(self, batch: int, policy, gen: torch.Generator, start_index: int = 0) -> PromptedBatch:
        """One generated batch with prompts (all on the device).

        policy: anything with ``prompts_per_image``, ``max_pos``, ``max_neg``, ``box_fraction`` and
        ``box_jitter``, optionally ``targets`` (``"label"``, or ``"component"`` / ``"component_area"``: one 8-connected
        piece of the target, see :func:`synthfm.synth.gpu.targets.component_masks`), e.g. the trainer's
        PromptPolicy; the engine does not depend on the trainer.
        Images without a valid target are dropped, so the batch can hold fewer than ``batch``
        images (rare: see the tests).  indices: ``start_index + b`` for the kept images b.
        """
        out = self.generate(batch, gen)
        keep = torch.nonzero(out.valid.any(1)).flatten()
        k = policy.prompts_per_image
        chosen = choose_targets(gen, out.valid[keep], k)
        labels = out.labels[keep]
        masks = target_masks(labels, out.members[keep], chosen)
        unit = getattr(policy, "targets", "label")
        if unit in ("component", "component_area"):
            masks = component_masks(masks, gen, by_area=unit == "component_area")
        elif unit != "label":
            raise ValueError(f"unknown target unit {unit!r}")
        m = masks.shape[0]
        n_pos = integer(gen, m, (1, policy.max_pos), self.device)
        n_neg = integer(gen, m, (0, policy.max_neg), self.device)
        coords, point_labels = simulate_clicks(gen, masks, n_pos, n_neg, policy.max_pos, policy.max_neg)
        is_box = bernoulli(gen, m, policy.box_fraction, self.device) if policy.box_fraction > 0 else \
            torch.zeros(m, dtype=torch.bool, device=self.device)
        boxes = mask_boxes(gen, masks, policy.box_jitter) * is_box[:, None]
        point_labels = point_labels.masked_fill(is_box[:, None], -1)
        coords = coords * (~is_box)[:, None, None]
        n_clicks = (point_labels >= 0).sum(1)
        return PromptedBatch(
            indices=[start_index + int(i) for i in keep.tolist()],
            images=out.images[keep] * 255.0,
            masks=masks.to(torch.uint8),
            point_coords=coords,
            point_labels=point_labels,
            boxes=boxes,
            is_box=is_box,
            n_clicks=n_clicks,
        )


def augment(image: torch.Tensor, labels: torch.Tensor, fov: torch.Tensor | None, recipe: Recipe,
            gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-image flips, transpose, affine (linear image / nearest labels, uncovered = 0 and outside
    the field of view) and brightness/contrast; the random draws do not depend on ``enabled``."""
    cfg = recipe.augment
    b, s, dev = image.shape[0], image.shape[-1], image.device
    draws = torch.rand(b, 5, generator=gen, device=dev)
    angle = torch.deg2rad(uniform(gen, b, cfg.rotate_range, dev))
    zoom = uniform(gen, b, cfg.scale_range, dev)
    shift = uniform(gen, (b, 2), cfg.translate_range, dev)
    beta = uniform(gen, b, cfg.brightness_range, dev)
    alpha = 1.0 + uniform(gen, b, cfg.contrast_range, dev)
    if not cfg.enabled:
        return image, labels, fov
    hflip, vflip, transpose, affine, bc = (draws < torch.tensor(
        [cfg.p_hflip, cfg.p_vflip, cfg.p_rotate90, cfg.p_affine, cfg.p_brightness_contrast], device=dev)).unbind(1)
    inside = torch.ones_like(image, dtype=torch.bool) if fov is None else fov

    def geo(x: torch.Tensor) -> torch.Tensor:
        x = torch.where(hflip[:, None, None], x.flip(-1), x)
        x = torch.where(vflip[:, None, None], x.flip(-2), x)
        return torch.where(transpose[:, None, None], x.transpose(-1, -2), x)

    image, labels, inside = geo(image), geo(labels), geo(inside)
    if bool(affine.any()):
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack([torch.stack([cos, -sin, shift[:, 0] * 2], 1), torch.stack([sin, cos, shift[:, 1] * 2], 1)], 1)
        grid = F.affine_grid(theta, (b, 1, s, s), align_corners=False)
        warped = F.grid_sample(image[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]
        coded = (labels.float() + 1) * inside  # label + 1 inside the field of view, 0 outside / uncovered
        coded = F.grid_sample(coded[:, None], grid, mode="nearest", padding_mode="zeros", align_corners=False)[:, 0]
        sel = affine[:, None, None]
        image = torch.where(sel, warped, image)
        inside = torch.where(sel, coded > 0, inside)
        labels = torch.where(sel, (coded - 1).clamp_min(0).to(labels.dtype), labels)
    image = torch.where(bc[:, None, None], (image * alpha[:, None, None] + beta[:, None, None]).clamp(0, 1), image)
    if fov is None and bool(inside.all()):
        return image, labels, None
    return image * inside, labels * inside.to(labels.dtype), inside
