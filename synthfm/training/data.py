"""Turn synthetic samples into prompted training items, inside the DataLoader workers.

:class:`PromptedItemTransform` is the picklable ``transform`` given to ``SyntheticStream``: for
sample ``index`` it draws ``K`` prompt sets (targets, clicks or a box) with
``np.random.default_rng([seed, index, 1])``, a stream distinct from the sample's own
``default_rng([seed, index])``, so an item is a pure function of (recipe, seed, index) whatever the
worker count or the process that resumes the run.

Points are padded to ``max_pos + max_neg`` with label -1 (SAM's "not a point") so that every item
of a run has the same prompt shape and batches stack without per-step logic.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from synthfm.prompts import mask_to_box, simulate_clicks
from synthfm.synth.batch import PromptedBatch
from synthfm.synth.sample import Sample
from synthfm.training.prompt_augment import corrective_clicks, mask_logits, perturbed_mask, zoom_on_target
from synthfm.training.config import TrainConfig
from synthfm.training.target_units import target_unit_mask

# PromptPolicy takes its defaults from TrainConfig, so the two cannot disagree.
_TRAIN_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
PROMPT_RNG_STREAM = 1  # third seed word of the prompt rng: np.random.default_rng([seed, index, 1])


@dataclass(frozen=True)
class PromptPolicy:
    """How prompt sets are drawn: the TrainConfig fields of the same names (meaning and defaults)."""

    prompts_per_image: int = _TRAIN_DEFAULTS["prompts_per_image"]
    max_pos: int = _TRAIN_DEFAULTS["max_pos"]
    max_neg: int = _TRAIN_DEFAULTS["max_neg"]
    box_fraction: float = _TRAIN_DEFAULTS["box_fraction"]
    box_jitter: float = _TRAIN_DEFAULTS["box_jitter"]
    mask_fraction: float = _TRAIN_DEFAULTS["mask_fraction"]
    zoom_fraction: float = _TRAIN_DEFAULTS["zoom_fraction"]
    targets: str = _TRAIN_DEFAULTS["targets"]

    @classmethod
    def from_config(cls, config: TrainConfig) -> "PromptPolicy":
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})

    @property
    def max_points(self) -> int:
        return self.max_pos + self.max_neg


@dataclass
class TrainItem:
    """One image with K prompt sets, ready to batch.

    index: stream index of the sample.  skip: True when the image had no valid target (every
    other field is then empty).  image: (S, S) float32 in 0..255 (the model input's grey level;
    the 3 identical channels are made on the device).  masks: (K, S, S) uint8 {0,1} targets.
    point_coords: (K, N, 2) float32 (x, y) model-input pixels; point_labels: (K, N) int64
    1/0/-1 (padding).  boxes: (K, 4) float32 (x0, y0, x1, y1); is_box: (K,) bool, True where the
    prompt set is the box alone.  n_clicks: (K,) int64 real clicks per set (0 for boxes).
    mask_inputs: (K, 1, S/4, S/4) float32 previous-mask logits (a perturbed target, as a previous
    prediction or a neighbouring slice looks); has_mask: (K,) bool, True where that input is given.
    """

    index: int
    skip: bool
    image: torch.Tensor
    masks: torch.Tensor
    point_coords: torch.Tensor
    point_labels: torch.Tensor
    boxes: torch.Tensor
    is_box: torch.Tensor
    n_clicks: torch.Tensor
    mask_inputs: torch.Tensor
    has_mask: torch.Tensor

    def to_wire(self) -> "TrainItem":
        """The same item with numpy arrays in place of tensors, to cross from a DataLoader worker.

        A tensor crosses a process boundary as a shared-memory file (a handle sent, mapped and
        unmapped per tensor, ~0.4 ms each here, more in a VM), an array as plain pickled bytes (~0.03
        ms for an item's ~150 kB).  With nine tensors an item, the per-tensor route is the likely cap
        of the first GPU run (~87 images/s per process whatever the number of workers), not yet
        confirmed on a GPU; ``benchmarks/bench_loader.py`` measures both routes.
        """
        return dataclasses.replace(self, **{name: getattr(self, name).numpy() for name in _TENSOR_FIELDS})

    @classmethod
    def from_wire(cls, item: "TrainItem") -> "TrainItem":
        """Inverse of :meth:`to_wire` (zero-copy); an item that already holds tensors is returned as is."""
        if isinstance(item.image, torch.Tensor):
            return item
        return dataclasses.replace(item, **{name: torch.from_numpy(getattr(item, name)) for name in _TENSOR_FIELDS})


_TENSOR_FIELDS = ("image", "masks", "point_coords", "point_labels", "boxes", "is_box", "n_clicks", "mask_inputs",
                  "has_mask")


def item_to_wire(item: TrainItem) -> TrainItem:
    """DataLoader ``collate_fn`` (run in the worker, one item at a time with batch_size=None)."""
    return item.to_wire()


def resize_sample(sample: Sample, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(image (S,S) float32 [0,1], labels (S,S) uint16) of a square sample resized to ``size``.

    Bilinear (area when shrinking) for the image, nearest for the label map; a no-op at equal size.
    """
    return resize_pair(sample.image, sample.labels, size)


def resize_pair(image: np.ndarray, labels: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(image float32, labels) of a square (image, label map) pair resized to ``size`` (see resize_sample)."""
    if image.shape[0] == size and image.shape[1] == size:
        return image.astype(np.float32, copy=False), labels
    shrink = size < image.shape[0]
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return image.astype(np.float32), cv2.resize(labels, (size, size), interpolation=cv2.INTER_NEAREST)


def _present_targets(sample: Sample, labels: np.ndarray) -> list[tuple[int, ...]]:
    """Valid targets of ``sample`` that cover at least 16 pixels of the (cropped) ``labels``."""
    counts = np.bincount(labels.ravel())
    out = []
    for k in sample.valid_targets:
        ids = [i for i in sample.targets[k].label_ids if 0 < i < counts.size]
        if ids and counts[ids].sum() >= 16:
            out.append(tuple(sample.targets[k].label_ids))
    return out


def usable_targets(sample: Sample, labels: np.ndarray) -> list[tuple[int, ...]]:
    """Label ids of the sample's valid targets that are still present in ``labels`` (after resizing)."""
    if labels is sample.labels:  # not resized: the engine already marked empty targets invalid
        return [tuple(sample.targets[k].label_ids) for k in sample.valid_targets]
    present = np.bincount(labels.ravel(), minlength=1) > 0
    usable = []
    for k in sample.valid_targets:
        ids = sample.targets[k].label_ids
        if any(0 < i < present.size and present[i] for i in ids):
            usable.append(tuple(ids))
    return usable


def target_mask(labels: np.ndarray, ids: tuple[int, ...]) -> np.ndarray:
    """(S, S) bool mask of the union of label ``ids``."""
    if len(ids) == 1:
        return labels == ids[0]
    return np.isin(labels, np.asarray(ids, dtype=labels.dtype))


def pad_clicks(coords: np.ndarray, labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad (M,2) coords / (M,) labels to n entries with (0,0) / -1."""
    out_c = np.zeros((n, 2), np.float32)
    out_l = np.full((n,), -1, np.int64)
    m = min(len(labels), n)
    out_c[:m] = coords[:m]
    out_l[:m] = labels[:m]
    return out_c, out_l


class PromptedItemTransform:
    """``transform(index, sample) -> TrainItem`` for ``SyntheticStream``; picklable.

    seed: the run seed; image_size: model input size S (samples are resized to S when generated
    at another size).  Targets are drawn without replacement while the image has enough valid
    targets, then cycled, so K prompt sets cover as many different structures as possible.
    """

    def __init__(self, seed: int, image_size: int, policy: PromptPolicy):
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.policy = policy

    def __call__(self, index: int, sample: Sample) -> TrainItem:
        s, pol = self.image_size, self.policy
        rng = np.random.default_rng([self.seed, int(index), PROMPT_RNG_STREAM])
        if pol.zoom_fraction > 0 and rng.random() < pol.zoom_fraction:
            image, labels = zoom_on_target(sample, rng)
            image, labels = resize_pair(image, labels, s)
            targets = [tuple(ids) for ids in _present_targets(sample, labels)]
        else:
            image, labels = resize_sample(sample, s)
            targets = usable_targets(sample, labels)
        if not targets:
            return _skipped(index)
        order = _target_order(rng, len(targets), pol.prompts_per_image)
        k = pol.prompts_per_image
        masks = np.zeros((k, s, s), np.uint8)
        coords = np.zeros((k, pol.max_points, 2), np.float32)
        point_labels = np.full((k, pol.max_points), -1, np.int64)
        boxes = np.zeros((k, 4), np.float32)
        is_box = np.zeros((k,), bool)
        n_clicks = np.zeros((k,), np.int64)
        low = max(1, s // 4)
        mask_inputs = np.zeros((k, 1, low, low), np.float32)
        has_mask = np.zeros((k,), bool)
        masks_of: dict[int, np.ndarray] = {}
        for j, t in enumerate(order):
            if int(t) not in masks_of:  # a cycled target keeps the piece it was given
                masks_of[int(t)] = target_unit_mask(target_mask(labels, targets[t]), pol.targets, rng)
            mask = masks_of[int(t)]
            masks[j] = mask
            if pol.mask_fraction > 0 and rng.random() < pol.mask_fraction:
                has_mask[j] = True
                previous = perturbed_mask(mask, low, rng)
                mask_inputs[j, 0] = mask_logits(previous)
                clicks = corrective_clicks(mask, previous, pol.max_pos, pol.max_neg, rng)
                coords[j], point_labels[j] = pad_clicks(clicks.coords, clicks.labels, pol.max_points)
                n_clicks[j] = len(clicks)
                continue
            if pol.box_fraction > 0 and rng.random() < pol.box_fraction:
                is_box[j] = True
                boxes[j] = mask_to_box(mask, rng, pol.box_jitter)
                continue
            n_pos = int(rng.integers(1, pol.max_pos + 1))
            n_neg = int(rng.integers(0, pol.max_neg + 1))
            clicks = simulate_clicks(mask, n_pos, n_neg, rng)
            coords[j], point_labels[j] = pad_clicks(clicks.coords, clicks.labels, pol.max_points)
            n_clicks[j] = len(clicks)
        return TrainItem(
            index=int(index),
            skip=False,
            image=torch.from_numpy(np.ascontiguousarray(image * np.float32(255.0))),
            masks=torch.from_numpy(masks),
            point_coords=torch.from_numpy(coords),
            point_labels=torch.from_numpy(point_labels),
            boxes=torch.from_numpy(boxes),
            is_box=torch.from_numpy(is_box),
            n_clicks=torch.from_numpy(n_clicks),
            mask_inputs=torch.from_numpy(mask_inputs),
            has_mask=torch.from_numpy(has_mask),
        )


def _target_order(rng: np.random.Generator, n_targets: int, k: int) -> np.ndarray:
    """k target indices: a random permutation of the targets, repeated (reshuffled) as needed."""
    rounds = -(-k // n_targets)
    return np.concatenate([rng.permutation(n_targets) for _ in range(rounds)])[:k]


def _skipped(index: int) -> TrainItem:
    empty = torch.zeros(0)
    return TrainItem(int(index), True, empty, empty, empty, empty, empty, empty, empty, empty, empty)


@dataclass
class TrainBatch(PromptedBatch):
    """B images x K prompt sets stacked; prompt tensors are flattened to M = B*K rows (the
    :class:`~synthfm.synth.batch.PromptedBatch` layout).

    images: (B, 1, S, S) float32 0..255 grey (SynthFM.encode repeats it to 3 channels).  masks: (M, S, S) uint8 {0,1}.  point_coords (M, N, 2),
    point_labels (M, N), boxes (M, 4), is_box (M,), n_clicks (M,), mask_inputs (M, 1, S/4, S/4),
    has_mask (M,).  indices: stream indices.
    Row m belongs to image m // K.
    """

    @property
    def prompts_per_image(self) -> int:
        return self.masks.shape[0] // self.images.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "TrainBatch":
        def mv(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=non_blocking)

        return TrainBatch(
            self.indices, mv(self.images), mv(self.masks), mv(self.point_coords), mv(self.point_labels),
            mv(self.boxes), mv(self.is_box), mv(self.n_clicks),
            None if self.mask_inputs is None else mv(self.mask_inputs),
            None if self.has_mask is None else mv(self.has_mask),
        )


def collate_items(items: list[TrainItem]) -> TrainBatch:
    """Stack non-skipped items into a TrainBatch."""
    if not items or any(it.skip for it in items):
        raise ValueError("collate_items needs a non-empty list of non-skipped items")
    grey = torch.stack([it.image for it in items])
    return TrainBatch(
        indices=[it.index for it in items],
        images=grey[:, None],
        masks=torch.cat([it.masks for it in items]),
        point_coords=torch.cat([it.point_coords for it in items]),
        point_labels=torch.cat([it.point_labels for it in items]),
        boxes=torch.cat([it.boxes for it in items]),
        is_box=torch.cat([it.is_box for it in items]),
        n_clicks=torch.cat([it.n_clicks for it in items]),
        mask_inputs=torch.cat([it.mask_inputs for it in items]),
        has_mask=torch.cat([it.has_mask for it in items]),
    )




def gpu_train_batch(generator, batch: int, policy: PromptPolicy, gen: torch.Generator, start_index: int = 0) -> TrainBatch:
    """A TrainBatch of up to ``batch`` images made on the training device by the torch engine.

    generator: a :class:`synthfm.synth.gpu.GpuSynthGenerator`; gen: its ``torch.Generator``
    (see ``GpuSynthGenerator.prompted_batch``).  The dependency runs trainer -> engine only.
    """
    out = generator.prompted_batch(batch, policy, gen, start_index)
    return TrainBatch(**{f.name: getattr(out, f.name) for f in dataclasses.fields(PromptedBatch)})
