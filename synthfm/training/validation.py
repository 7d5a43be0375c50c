"""A fixed synthetic validation set, used to pick the best checkpoint of a run.

The set is generated from its own seed stream (run seed + 10**6), so it never overlaps the training
images, and is a pure function of (recipe, seed, size, number of images): the same run always
validates on the same images.  Each image contributes one valid target (drawn with
``default_rng([val_seed, index, 2])``) and one click set per prompt setting (p, n), simulated with
``synthfm.prompts.simulate_clicks`` exactly as evaluation does.  The metric is the mean Dice of the
thresholded single-mask prediction (logits upsampled to S), per setting and over all settings.
Model selection thus uses synthetic data only, as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from synthfm.training.losses import hard_dice
from synthfm.prompts import DEFAULT_SETTINGS, simulate_clicks
from synthfm.synth.sample import Sample
from synthfm.training.data import pad_clicks, resize_sample, target_mask, usable_targets
from synthfm.training.target_units import target_unit_mask

VAL_SEED_OFFSET = 10**6
VAL_RNG_STREAM = 2


def setting_key(setting: tuple[int, int]) -> str:
    """Column name of a prompt setting, e.g. (3, 2) -> ``dice_3_2``."""
    return f"dice_{setting[0]}_{setting[1]}"


@dataclass
class ValidationItem:
    """One validation image (see ValidationSet); ``image`` is None when the image had no target."""

    index: int
    image: torch.Tensor | None
    mask: torch.Tensor | None
    coords: list[np.ndarray]
    labels: list[np.ndarray]


class ValidationItemTransform:
    """``transform(index, sample) -> ValidationItem`` for ``SyntheticStream``; picklable."""

    def __init__(self, val_seed: int, image_size: int, settings: tuple[tuple[int, int], ...], targets: str = "label"):
        self.val_seed = int(val_seed)
        self.image_size = int(image_size)
        self.settings = tuple(settings)
        self.targets = targets

    def __call__(self, index: int, sample: Sample) -> ValidationItem:
        image, labels = resize_sample(sample, self.image_size)
        targets = usable_targets(sample, labels)
        if not targets:
            return ValidationItem(int(index), None, None, [], [])
        rng = np.random.default_rng([self.val_seed, int(index), VAL_RNG_STREAM])
        mask = target_mask(labels, targets[int(rng.integers(len(targets)))])
        mask = target_unit_mask(mask, self.targets, rng)
        coords, labs = [], []
        for p, n in self.settings:
            clicks = simulate_clicks(mask, p, n, rng)
            c, lab = pad_clicks(clicks.coords, clicks.labels, p + n)
            coords.append(c)
            labs.append(lab)
        return ValidationItem(
            int(index),
            torch.from_numpy(np.ascontiguousarray(image * np.float32(255.0))),
            torch.from_numpy(mask.astype(np.uint8)),
            coords,
            labs,
        )


@dataclass
class ValidationSet:
    """n fixed images with one target each and one click set per setting.

    images: (n, S, S) float32 0..255 (grey; SynthFM.encode repeats it to 3 channels).
    masks: (n, S, S) uint8 {0,1}.  clicks[setting] = (coords (n, p+n, 2) float32 (x, y) model-input
    pixels, labels (n, p+n) int64, -1 where a negative click could not be placed).
    indices: stream indices (of the validation seed stream) of the images.
    """

    images: torch.Tensor
    masks: torch.Tensor
    clicks: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]]
    indices: list[int]
    settings: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return len(self.indices)


def build_validation_set(
    recipe,
    seed: int,
    n_images: int,
    image_size: int,
    gen_size: int | None = None,
    workers: int = 0,
    settings: tuple[tuple[int, int], ...] = DEFAULT_SETTINGS,
    targets: str = "label",
) -> ValidationSet:
    """Generate the validation set of run ``seed`` (images from seed stream ``seed + 10**6``).

    Images without a valid target are skipped (deterministically), so the set holds exactly
    ``n_images`` images.  ``workers`` DataLoader workers generate in parallel.  ``targets``: the unit
    each image's target is (:mod:`synthfm.training.target_units`); ``"label"`` gives the sets of
    runs made before that option existed, image for image.
    """
    from synthfm.synth.dataset import SyntheticStream

    val_seed = seed + VAL_SEED_OFFSET
    transform = ValidationItemTransform(val_seed, image_size, settings, targets)
    stream = SyntheticStream(recipe, val_seed, gen_size or image_size, transform=transform)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers)
    items: list[ValidationItem] = []
    for item in loader:
        if item.image is not None:
            items.append(item)
        if len(items) >= n_images:
            break
    del loader
    if not items:
        return ValidationSet(torch.zeros(0, image_size, image_size), torch.zeros(0, image_size, image_size,
                             dtype=torch.uint8), {}, [], tuple(settings))
    clicks = {}
    for j, s in enumerate(settings):
        coords = torch.from_numpy(np.stack([it.coords[j] for it in items]))
        labels = torch.from_numpy(np.stack([it.labels[j] for it in items]))
        clicks[s] = (coords, labels)
    return ValidationSet(
        images=torch.stack([it.image for it in items]),
        masks=torch.stack([it.mask for it in items]),
        clicks=clicks,
        indices=[it.index for it in items],
        settings=tuple(settings),
    )


@torch.no_grad()
def evaluate_validation(model, vset: ValidationSet, device: torch.device | str = "cpu", amp: bool = False,
                        batch_size: int = 4, observe=None) -> dict[str, float]:
    """Mean hard Dice per setting (``dice_p_n``) and over settings (``mean``) of ``model`` on ``vset``.

    observe: optional ``observe(setting, logits, target)`` called for every batch and setting
    (settings in ``vset.settings`` order within a batch) with the (B, S, S) float32 logits at the
    set's size and the (B, S, S) uint8 targets, e.g. :mod:`synthfm.training.collapse`'s statistics.

    The model is put in eval mode for the evaluation and restored to its previous mode afterwards.
    A model whose input size S differs from the set's gets the images resized to S and the clicks
    scaled; its logits are upsampled to the set's size, so every model is scored on the same pixels.
    """
    if len(vset) == 0:
        return {}
    device = torch.device(device)
    was_training = model.training
    model.eval()
    size = vset.images.shape[-1]
    model_size = int(model.image_size)
    scale = model_size / size
    sums = {s: 0.0 for s in vset.settings}
    try:
        for start in range(0, len(vset), batch_size):
            sl = slice(start, start + batch_size)
            images = vset.images[sl].to(device)[:, None]
            if model_size != size:
                images = F.interpolate(images, size=(model_size, model_size),
                                       mode="area" if model_size < size else "bilinear")
            target = vset.masks[sl].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                emb = model.encode(images)
                for s in vset.settings:
                    coords, labels = vset.clicks[s]
                    logits, _ = model.decode(emb, point_coords=coords[sl].to(device) * scale,
                                             point_labels=labels[sl].to(device))
                    full = F.interpolate(logits.float(), size=(size, size), mode="bilinear", align_corners=False)
                    sums[s] += float(hard_dice(full[:, 0], target).sum())
                    if observe is not None:
                        observe(s, full[:, 0], target)
    finally:
        model.train(was_training)
    result = {setting_key(s): sums[s] / len(vset) for s in vset.settings}
    result["mean"] = float(np.mean([result[setting_key(s)] for s in vset.settings]))
    return result
