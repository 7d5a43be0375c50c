"""Segment an object through a volume: clicks on one slice, then slice-by-slice propagation.

    slices = VolumeSlices(predictor, volume.array, axis=0, window=resolve_window(volume.array, "auto"))
    result = propagate(slices, seed_index=42, point_coords=np.array([[120, 88]]), point_labels=np.array([1]))
    result.mask          # (Z, Y, X) bool, the volume's own array layout

Protocol (one concept, documented once here; ``synthfm segment --propagate`` and
``benchmarks/eval_propagation.py`` both use it):

1. **Seed.**  Slice K is segmented from the user's clicks/box (the best of SAM's three masks when
   ``multimask``).  An empty seed mask is a UserError (nothing to propagate).
2. **Prompts from the previous slice.**  Going away from K in both directions, slice k+-1 is
   prompted with clicks simulated on the *previous slice's predicted mask* by the same simulator
   that training and evaluation use (:func:`synthfm.prompts.simulate_clicks`): the first positive
   click at the mask's deepest interior point (maximum of the distance transform), optional further
   positives and negatives; optionally a box (the previous mask's bounding box grown by
   ``box_margin`` of its larger side) and/or the previous low-res logits as ``mask_input``.  The
   default is one positive click plus the previous slice's logits as ``mask_input`` (the shipped
   ``click_unet`` was trained with mask inputs: 3D Dice 0.36 -> 0.41 / 0.07 -> 0.16 / 0.41 -> 0.48
   on the three dev volume sets, ``benchmarks/eval_propagation.py``); no box (it lowered Dice) and
   no negatives (just outside the previous mask they land inside a growing object).
3. **Clean-up.**  With ``keep_overlapping`` (default) only the connected components (8-connected)
   of the prediction that overlap the previous slice's mask are kept: a blob elsewhere in the slice
   is another structure, not the continuation of this one.  On the seed slice the components that
   hold a positive click (or overlap the box) are kept.
4. **Stop rule**, checked in this order on the raw prediction of slice k; the first that fires ends
   the direction and slice k stays empty:

   * ``empty``: the prediction has no pixel;
   * ``no_overlap``: it does not overlap the previous slice's mask at all;
   * ``small``: its area (after clean-up) is below ``min_area_fraction`` x the seed slice's area;
   * ``low_score``: the predicted IoU is below ``min_score`` (off by default: the default model's
     IoU head scores leaked and correct slices alike, 0.3-0.6, and ``min_score = 0.3`` changed 3D
     Dice by at most 0.008);
   * ``growth``: its area exceeds ``max_area_growth`` (default 1.3) x the previous slice's: where
     the object ends the prediction leaks into a neighbouring structure and jumps in area (with
     mask_input, 3D Dice 0.41 -> 0.50 / 0.16 -> 0.46 / 0.48 -> 0.50, slices found / true 1.77 ->
     0.94 / 4.17 -> 0.83 / 1.71 -> 1.28);
   * ``end``: the volume ends (not a failure); ``limit``: ``max_slices`` were done.

Each slice is encoded once (:class:`VolumeSlices` caches the embeddings of recently used slices),
and the intensity window is resolved once on the whole volume so that all slices match.
Everything is deterministic: the clicks of slice k come from ``np.random.default_rng([seed, k])``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import cv2
import numpy as np

from synthfm.errors import UserError
from synthfm.io.intensity import IntensityWindow, resolve_window
from synthfm.io.images import axis_index
from synthfm.prompts import mask_to_box, simulate_clicks

STOP_REASONS = ("empty", "no_overlap", "small", "low_score", "growth", "end", "limit")


@dataclass(frozen=True)
class PropagationConfig:
    """How slice k+-1 is prompted from slice k, and when to stop (see the module docstring).

    n_pos, n_neg: clicks simulated on the previous mask (n_pos >= 1).  use_box: add its bounding
    box grown by ``box_margin`` x its larger side (at least 2 px).  use_mask_input: feed the
    previous low-res logits as ``mask_input`` (skipped for a checkpoint that did not train mask
    inputs, see ``Predictor.trained_outputs``).  keep_overlapping: drop predicted components that
    do not touch the previous mask.  min_area_fraction, min_score, max_area_growth: stop rule
    (None = that test is off).  seed: click simulation seed.
    """

    n_pos: int = 1
    n_neg: int = 0
    use_box: bool = False
    box_margin: float = 0.1
    use_mask_input: bool = True
    keep_overlapping: bool = True
    min_area_fraction: float = 0.1
    min_score: float | None = None
    max_area_growth: float | None = 1.3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_pos < 1 or self.n_neg < 0:
            raise UserError(f"propagation needs n_pos >= 1 and n_neg >= 0, got ({self.n_pos}, {self.n_neg})")
        if not 0.0 <= self.min_area_fraction < 1.0:
            raise UserError(f"min_area_fraction must be in [0, 1), got {self.min_area_fraction}")
        if self.box_margin < 0:
            raise UserError(f"box_margin must be >= 0, got {self.box_margin}")
        if self.max_area_growth is not None and self.max_area_growth <= 1.0:
            raise UserError(f"max_area_growth must be > 1 (or None), got {self.max_area_growth}")


@dataclass(frozen=True)
class SlicePrompts:
    """Prompts for one slice.  coords (N, 2) float32 (x, y) pixels; labels (N,) int64; box (4,) or None."""

    coords: np.ndarray
    labels: np.ndarray
    box: np.ndarray | None = None


@dataclass(frozen=True)
class SliceRecord:
    """What happened on one slice: area (pixels kept), predicted IoU ``score``, ``clicks`` used."""

    index: int
    area: int
    score: float
    clicks: int


@dataclass
class PropagationResult:
    """``mask`` (Z, Y, X) bool in the volume's layout; ``records`` per segmented slice index;
    ``stops``: direction (+1 / -1) -> (first slice index not segmented, reason in STOP_REASONS);
    for ``end`` the index is one past the volume.  ``gaps``: (first empty slice, guide slice it
    jumped to, reason) where a stop fired short of a guide."""

    mask: np.ndarray
    seed_index: int
    axis: int
    records: dict[int, SliceRecord] = field(default_factory=dict)
    stops: dict[int, tuple[int, str]] = field(default_factory=dict)
    gaps: list[tuple[int, int, str]] = field(default_factory=list)

    @property
    def slice_range(self) -> tuple[int, int]:
        """(first, last) segmented slice indices (inclusive)."""
        return min(self.records), max(self.records)

    def describe(self) -> str:
        first, last = self.slice_range
        parts = []
        for step, name in ((-1, "down"), (1, "up")):
            k, why = self.stops[step]
            parts.append(f"{name} at {k} ({why})")
        return f"slices {first}..{last} ({len(self.records)} slices); stopped " + ", ".join(parts)


# ------------------------------------------------------------------------------ slice encoding


class VolumeSlices:
    """Give a :class:`~synthfm.inference.predictor.Predictor` slice k of a volume, encoding each slice once.

    volume: (Z, Y, X) array (raw values, e.g. HU), or a (Z, Y, X, 3) stack of RGB images with
    axis 0 (a 2D image is a stack of one); axis: 0/1/2 or a name (see ``synthfm.io.images``);
    window: the intensity mapping used for every slice (resolve it once on the whole volume).
    The last ``cache_size`` slice embeddings are kept (about 256 KB each at 256 px, 4 MB at 1024).
    """

    def __init__(self, predictor, volume: np.ndarray, axis: str | int = 0,
                 window: IntensityWindow | str = "auto", modality: str | None = None, cache_size: int = 64) -> None:
        vol = np.asarray(volume)
        rgb_stack = vol.ndim == 4 and vol.shape[3] == 3 and axis_index(axis) == 0
        if vol.ndim != 3 and not rgb_stack:
            raise UserError(f"need a 3D (Z, Y, X) volume, got shape {vol.shape}")
        self.predictor = predictor
        self.volume = vol
        self.axis = axis_index(axis)
        self.window = resolve_window(vol, window, modality)
        self.cache_size = max(1, int(cache_size))
        self._cache: OrderedDict[tuple, tuple] = OrderedDict()
        self.current: int | None = None
        self.encodings = 0  # number of encoder passes so far (tests and benchmarks read it)

    @property
    def num_slices(self) -> int:
        return int(self.volume.shape[self.axis])

    def image(self, k: int) -> np.ndarray:
        """The raw 2D slice k (a view)."""
        if not 0 <= int(k) < self.num_slices:
            raise UserError(f"slice {k} is out of range (0..{self.num_slices - 1})")
        return np.take(self.volume, int(k), axis=self.axis)

    def set_window(self, window: IntensityWindow) -> None:
        """Use another intensity window from now on (slices are encoded again when next shown)."""
        self.window = window

    def set_slice(self, k: int) -> None:
        """Make slice k the predictor's current image (encode it, or restore it from the cache)."""
        key = (int(k), self.window)
        state = self._cache.get(key)
        if state is not None and self.predictor.is_current(state):
            self.current = int(k)
            return
        if state is None:
            self.predictor.set_image(self.image(k), preset=self.window)
            self.encodings += 1
            state = self.predictor.get_image_state()
            self._cache[key] = state
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
            self.predictor.set_image_state(state)
        self.current = int(k)


# ---------------------------------------------------------------------------------- prompts


def prompts_from_mask(mask: np.ndarray, config: PropagationConfig, rng: np.random.Generator) -> SlicePrompts:
    """Prompts for the next slice from the previous slice's mask (H, W) bool (non-empty)."""
    m = np.asarray(mask, dtype=bool)
    clicks = simulate_clicks(m, config.n_pos, config.n_neg, rng)
    box = None
    if config.use_box:
        x0, y0, x1, y1 = (float(v) for v in mask_to_box(m))
        margin = max(2.0, config.box_margin * max(x1 - x0 + 1, y1 - y0 + 1))
        h, w = m.shape
        box = np.array([max(0.0, x0 - margin), max(0.0, y0 - margin),
                        min(w - 1.0, x1 + margin), min(h - 1.0, y1 + margin)], dtype=np.float32)
    return SlicePrompts(clicks.coords.astype(np.float32), clicks.labels.astype(np.int64), box)


def components_touching(mask: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The 8-connected components of ``mask`` that share at least one pixel with ``reference``."""
    m = np.asarray(mask, dtype=bool)
    n, comp = cv2.connectedComponents(m.astype(np.uint8), connectivity=8)
    if n <= 2:  # background + at most one component: keep it if it touches
        return m if (m & reference).any() else np.zeros_like(m)
    hit = np.unique(comp[m & np.asarray(reference, dtype=bool)])
    return np.isin(comp, hit[hit > 0])


def seed_components(mask: np.ndarray, point_coords=None, point_labels=None, box=None) -> np.ndarray:
    """The components of the seed slice's mask that hold a positive click (or, for a box alone,
    that overlap the box); the whole mask when none does (a click just off the predicted edge)."""
    m = np.asarray(mask, dtype=bool)
    anchor = np.zeros_like(m)
    h, w = m.shape
    if point_coords is not None and point_labels is not None:
        coords = np.asarray(point_coords, dtype=np.float64).reshape(-1, 2)
        for (x, y), label in zip(coords, np.asarray(point_labels).reshape(-1)):
            if label == 1:
                anchor[min(max(int(round(y)), 0), h - 1), min(max(int(round(x)), 0), w - 1)] = True
    if not anchor.any() and box is not None:
        x0, y0, x1, y1 = (int(round(float(v))) for v in np.asarray(box).reshape(4))
        anchor[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1] = True
    kept = components_touching(m, anchor) if anchor.any() else m
    return kept if kept.any() else m


def stop_reason(raw: np.ndarray, kept: np.ndarray, score: float, previous: np.ndarray, seed_area: int,
                config: PropagationConfig) -> str | None:
    """Which stop test fires for a slice (None = keep going); see the module docstring for the order."""
    if not raw.any():
        return "empty"
    if not (raw & previous).any():
        return "no_overlap"
    area = int(kept.sum())
    if area < config.min_area_fraction * seed_area or area == 0:
        return "small"
    if config.min_score is not None and score < config.min_score:
        return "low_score"
    if config.max_area_growth is not None and area > config.max_area_growth * int(previous.sum()):
        return "growth"
    return None


# ------------------------------------------------------------------------------ propagation


def propagate(
    slices: VolumeSlices,
    seed_index: int,
    point_coords: np.ndarray | None = None,
    point_labels: np.ndarray | None = None,
    box: np.ndarray | None = None,
    config: PropagationConfig = PropagationConfig(),
    multimask: bool = False,
    max_slices: int | None = None,
    guides: dict[int, SlicePrompts] | None = None,
) -> PropagationResult:
    """Segment the object clicked on slice ``seed_index`` and follow it through the volume.

    point_coords (N, 2) (x, y) / point_labels (N,) / box (4,) are in the pixels of the seed slice
    (as ``slices.image(seed_index)`` shows it).  max_slices: at most this many slices each way.
    guides: the user's own prompts on other slices (slice index -> :class:`SlicePrompts`, e.g.
    clicks made there to steer): on such a slice they replace the prompts derived from the previous
    mask (the previous logits still go in as ``mask_input`` when configured) and only ``empty``
    stops the direction there, since the user said the object is on that slice.  A stop that fires
    on a slice short of a guide does not end the direction: the slices up to the guide stay empty
    (``result.gaps``) and propagation goes on from the guide, which is then prompted alone (the
    logits of a slice further back would only mislead it).
    Returns a :class:`PropagationResult`; raises UserError if the seed prediction is empty.
    """
    predictor = slices.predictor
    n = slices.num_slices
    if not 0 <= int(seed_index) < n:
        raise UserError(f"slice {seed_index} is out of range: the volume has {n} slices along axis {slices.axis} (0..{n - 1})")
    seed_index = int(seed_index)
    slices.set_slice(seed_index)
    masks, scores, low_res = predictor.predict(point_coords=point_coords, point_labels=point_labels, box=box,
                                               multimask_output=multimask)
    best = int(np.argmax(scores))
    seed_mask = np.asarray(masks[best], dtype=bool)
    if config.keep_overlapping:
        seed_mask = seed_components(seed_mask, point_coords, point_labels, box)
    if not seed_mask.any():
        raise UserError(f"the prediction on slice {seed_index} is empty; click inside the object (or add clicks)")
    out = np.zeros(slices.volume.shape, dtype=bool)
    _slice_view(out, seed_index, slices.axis)[...] = seed_mask
    n_clicks = 0 if point_coords is None else int(np.asarray(point_coords).reshape(-1, 2).shape[0])
    result = PropagationResult(out, seed_index, slices.axis)
    result.records[seed_index] = SliceRecord(seed_index, int(seed_mask.sum()), float(scores[best]), n_clicks)
    seed_area = int(seed_mask.sum())
    limit = n if max_slices is None else int(max_slices)
    # a checkpoint that never saw mask prompts would only be fed noise (and its Predictor refuses them)
    trained = getattr(predictor, "trained_outputs", None)
    use_mask_input = config.use_mask_input and (trained is None or trained.mask_input
                                                or getattr(predictor, "allow_untrained", False))
    guides = dict(guides or {})
    for step in (1, -1):
        previous, previous_logits = seed_mask, low_res[best : best + 1]
        k, done = seed_index + step, 0
        while 0 <= k < n and done < limit:
            slices.set_slice(k)
            guide = guides.get(k)
            prompts = guide if guide is not None else prompts_from_mask(previous, config, np.random.default_rng([config.seed, k]))
            masks, scores, low_res_k = predictor.predict(
                point_coords=prompts.coords, point_labels=prompts.labels, box=prompts.box,
                mask_input=previous_logits if use_mask_input and previous_logits is not None else None,
            )
            raw = np.asarray(masks[0], dtype=bool)
            if guide is not None:
                kept = seed_components(raw, guide.coords, guide.labels, guide.box) if config.keep_overlapping else raw
                why = None if raw.any() else "empty"
            else:
                kept = components_touching(raw, previous) if config.keep_overlapping else raw
                why = stop_reason(raw, kept, float(scores[0]), previous, seed_area, config)
            if why is not None:
                ahead = [g for g in guides if (g - k) * step > 0 and abs(g - seed_index) <= limit]
                if not ahead:
                    result.stops[step] = (k, why)
                    break
                target = min(ahead, key=lambda g: abs(g - k))
                result.gaps.append((k, target, why))
                done += abs(target - k)
                k, previous_logits = target, None
                continue
            _slice_view(out, k, slices.axis)[...] = kept
            result.records[k] = SliceRecord(k, int(kept.sum()), float(scores[0]), len(prompts.labels))
            previous, previous_logits = kept, low_res_k[0:1]
            k += step
            done += 1
        if step not in result.stops:
            result.stops[step] = (k, "end" if not 0 <= k < n else "limit")
    return result


def _slice_view(volume: np.ndarray, k: int, axis: int) -> np.ndarray:
    index: list = [slice(None)] * volume.ndim
    index[axis] = k
    return volume[tuple(index)]
