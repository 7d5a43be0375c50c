"""Labelled real data for fine-tuning: nnU-Net dataset folders -> the synthetic pipeline's training items.

A fine-tuning run (``train.py --finetune DIR ...``) trains with the same loop, prompt policy and
loss as synthetic training.  This module turns real cases into what that loop already consumes:

* every labelled 2D image or slice becomes a :class:`synthfm.synth.sample.Sample`: its image seen
  exactly as evaluation and ``segment`` see it (the ``auto`` intensity window of
  :func:`synthfm.io.intensity.resolve_window` with the dataset's modality, to 8 bits; RGB as
  luminance), padded at the bottom/right to a square with the grey that normalises closest to 0
  (inference pads with 0 after normalisation) and resized to ``gen_size``; its label map numbers
  the evaluation objects (:func:`synthfm.evaluation.datasets.extract_objects`: connected
  components per class, area >= 0.1 % of the image), one :class:`Target` each;
* :class:`FinetuneStream` is a :class:`synthfm.synth.dataset.SyntheticStream` whose sample ``i``
  is, with probability ``synth_fraction``, synthetic sample ``i`` of the recipe, otherwise a real
  slice (drawn with ``default_rng([seed, i, 3])``) with the recipe's augmentation.  The stream's
  ``transform`` is the run's :class:`synthfm.training.data.PromptedItemTransform`, so clicks, boxes,
  zoomed crops and previous-mask inputs come from the same code as in synthetic training, and an
  item is a pure function of (data, seed, index): ``--resume`` is exact;
* :func:`build_real_validation_set` holds out whole cases (``val_fraction``) and builds a
  :class:`synthfm.training.validation.ValidationSet` from their objects with clicks from
  :func:`synthfm.prompts.simulate_clicks`, per object seeded as the evaluation protocol seeds it,
  so best.safetensors is chosen on held-out real cases.

Every problem with the folders (not a dataset, a label that does not match its image, no usable
object) raises :class:`synthfm.errors.UserError` with one line before the run folder is touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from synthfm.errors import UserError
from synthfm.io.intensity import model_grey as to_model_grey
from synthfm.synth.dataset import SyntheticStream
from synthfm.synth.generator import sample_at
from synthfm.synth.sample import Sample, Target

REAL_RNG_STREAM = 3  # third seed word of the real/synthetic choice: default_rng([seed, index, 3])
MAX_VAL_OBJECTS = 64  # objects of the held-out cases used for validation (first ones, stable order)
SPLIT_SEED = 0  # held-out cases are the same for every run on a folder


def pad_grey() -> float:
    """The grey level (0..1) whose normalised value is closest to 0 in every channel.

    The model subtracts SAM's pixel mean per channel; at inference the square padding is 0 after
    normalisation.  Training images are one grey channel repeated, so the closest grey is the
    mean of the channel means (normalised values about -0.13, 0, +0.22).
    """
    from synthfm.modeling.synthfm_model import SAM_PIXEL_MEAN

    return float(np.mean(SAM_PIXEL_MEAN)) / 255.0


def square_pair(grey: np.ndarray, labels: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(image (size, size) float32, labels (size, size) uint16): longest side resized to ``size``
    (SAM's rounding; area when shrinking, nearest for labels), padded bottom/right (grey :func:`pad_grey`, label 0)."""
    from synthfm.inference.transforms import preprocess_shape

    h, w = preprocess_shape(grey.shape[0], grey.shape[1], size)
    shrink = h * w < grey.shape[0] * grey.shape[1]
    img = cv2.resize(grey, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    lab = cv2.resize(labels.astype(np.uint16), (w, h), interpolation=cv2.INTER_NEAREST)
    out_i = np.full((size, size), pad_grey(), np.float32)
    out_l = np.zeros((size, size), np.uint16)
    out_i[:h, :w] = img
    out_l[:h, :w] = lab
    return out_i, out_l


@dataclass(frozen=True)
class RealSlice:
    """One labelled image or slice, ready to sample: image (G, G) float32 [0, 1], labels (G, G)
    uint16 (object k -> id k + 1), ``objects`` their count; dataset/case/index name it."""

    dataset: str
    case: str
    index: int | None
    image: np.ndarray
    labels: np.ndarray
    objects: int
    class_names: tuple[str, ...] = ()
    object_ids: tuple[int, ...] = ()


@dataclass
class FinetuneData:
    """The real slices of a fine-tuning run, split by case into training and validation.

    datasets: per dataset, a summary (name, path, modality, cases, train/val case ids, objects)
    recorded in the checkpoints' metadata.
    """

    train: list[RealSlice]
    val: list[RealSlice]
    datasets: list[dict] = field(default_factory=list)

    def summary(self) -> list[dict]:
        return [dict(d) for d in self.datasets]


def split_cases(case_ids: list[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """(train ids, val ids): round(val_fraction x n) cases held out, at least 1 when n >= 2 and
    val_fraction > 0, never all; chosen by a fixed permutation of the sorted ids."""
    ids = sorted(case_ids)
    n = len(ids)
    n_val = 0 if val_fraction <= 0 or n < 2 else min(n - 1, max(1, int(round(val_fraction * n))))
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    val = sorted(ids[i] for i in order[:n_val])
    return [c for c in ids if c not in set(val)], val


def load_finetune_data(folders: tuple[str, ...] | list[str], gen_size: int, val_fraction: float) -> FinetuneData:
    """Read every labelled case of ``folders`` (imagesTr/labelsTr and imagesTs/labelsTs).

    Raises UserError (one line) for a folder that is not a dataset, a case that cannot be read or
    whose label does not match its image, or a dataset (or split) without a usable object.
    """
    from synthfm.evaluation.datasets import CaseError, list_cases, load_dataset_info, read_case

    if not folders:
        raise UserError("--finetune needs at least one dataset folder")
    train: list[RealSlice] = []
    val: list[RealSlice] = []
    summaries: list[dict] = []
    names: set[str] = set()
    for folder in folders:
        root = Path(folder)
        if not root.is_dir():
            raise UserError(f"--finetune {folder}: not a folder")
        info = load_dataset_info(root)
        if info.name in names:
            raise UserError(f"--finetune: two folders hold dataset {info.name!r}")
        names.add(info.name)
        cases = list_cases(info, splits=("Tr", "Ts"))
        if not cases:
            raise UserError(f"--finetune {folder}: no case images (<case>_0000{info.file_ending}) in imagesTr or imagesTs")
        train_ids, val_ids = split_cases([c.case_id for c in cases], val_fraction)
        per_case: dict[str, list[RealSlice]] = {}
        for case in cases:
            try:
                slices = read_case(info, case)
            except CaseError as exc:
                raise UserError(f"--finetune {folder}: case {case.case_id}: {' '.join(str(exc).split())}") from None
            per_case[case.case_id] = [_real_slice(info, sl, gen_size) for sl in slices]
        n_train = sum(s.objects for c in train_ids for s in per_case[c])
        n_val = sum(s.objects for c in val_ids for s in per_case[c])
        if n_train == 0:
            raise UserError(f"--finetune {folder}: no usable object (a labelled region of at least 0.1% of its image) "
                            f"in the {len(train_ids)} training case(s) of {info.name}")
        train.extend(s for c in train_ids for s in per_case[c])
        val.extend(s for c in val_ids for s in per_case[c])
        summaries.append(dict(name=info.name, path=str(root.resolve()), modality=info.modality, cases=len(cases),
                              train_cases=train_ids, val_cases=val_ids, train_objects=n_train, val_objects=n_val))
    return FinetuneData(train, val, summaries)


def _real_slice(info, sl, gen_size: int) -> RealSlice:
    grey = to_model_grey(sl.image, info.modality)
    ids = np.zeros(sl.label.shape, np.uint16)
    for k, obj in enumerate(sl.objects):
        ids[obj.mask] = k + 1
    image, labels = square_pair(grey, ids, gen_size)
    return RealSlice(info.name, sl.case_id, sl.index, image, labels, len(sl.objects),
                     tuple(o.class_name for o in sl.objects), tuple(o.index for o in sl.objects))


def real_sample(sl: RealSlice, recipe, rng: np.random.Generator, augmentation: bool = True) -> Sample:
    """A :class:`Sample` of real slice ``sl`` (its objects as targets), with the recipe's augmentation.

    Objects that the augmentation pushes out of the image are marked invalid ("empty").
    """
    image, labels = sl.image, sl.labels
    if augmentation:
        from synthfm.synth.augment import augment

        image, labels, _ = augment(image, labels, None, recipe.augment, rng)
    counts = np.bincount(labels.ravel(), minlength=sl.objects + 1)
    targets = tuple(Target((k,), bool(counts[k] >= 16), "" if counts[k] >= 16 else "empty")
                    for k in range(1, sl.objects + 1))
    return Sample(np.ascontiguousarray(image, np.float32), labels.astype(np.uint16), targets, "real", "real")


class FinetuneStream(SyntheticStream):
    """The training stream of a fine-tuning run: real slices mixed with synthetic samples.

    Sample ``index``: with probability ``synth_fraction`` (drawn with ``default_rng([seed, index, 3])``)
    synthetic sample ``index`` of ``recipe`` at ``size``; otherwise a uniformly drawn slice of
    ``slices`` (the same generator), augmented.  Same index bookkeeping as SyntheticStream.
    """

    def __init__(self, slices: list[RealSlice], synth_fraction: float, recipe, seed: int, size: int, **kwargs):
        super().__init__(recipe, seed, size, **kwargs)
        if not slices:
            raise ValueError("FinetuneStream needs at least one real slice")
        self.slices = list(slices)
        self.synth_fraction = float(synth_fraction)

    def sample_at_index(self, index: int) -> Sample:
        rng = np.random.default_rng([self.seed, int(index), REAL_RNG_STREAM])
        if self.synth_fraction > 0 and rng.random() < self.synth_fraction:
            return sample_at(self.recipe, self.seed, index, self.size)
        sl = self.slices[int(rng.integers(len(self.slices)))]
        return real_sample(sl, self.recipe, rng)


def build_real_validation_set(slices: list[RealSlice], image_size: int, seed: int,
                              max_objects: int = MAX_VAL_OBJECTS):
    """A :class:`~synthfm.training.validation.ValidationSet` of the held-out objects at ``image_size``.

    One entry per object (the first ``max_objects`` in case/slice/object order), one click set
    per default setting, from ``object_rng`` as in the evaluation protocol.  Empty when there is
    no held-out object.
    """
    from synthfm.evaluation.protocol import object_rng
    from synthfm.prompts import DEFAULT_SETTINGS, simulate_clicks
    from synthfm.training.data import pad_clicks, resize_pair
    from synthfm.training.validation import ValidationSet

    settings = tuple(DEFAULT_SETTINGS)
    images, masks, clicks = [], [], {s: ([], []) for s in settings}
    for sl in slices:
        image, labels = resize_pair(sl.image, sl.labels, image_size)
        for k in range(sl.objects):
            if len(images) >= max_objects:
                break
            mask = labels == k + 1
            if mask.sum() < 4:
                continue
            images.append(torch.from_numpy(np.ascontiguousarray(image * np.float32(255.0))))
            masks.append(torch.from_numpy(mask.astype(np.uint8)))
            for p, n in settings:
                rng = object_rng(seed, sl.dataset, sl.case, sl.index, sl.class_names[k], sl.object_ids[k], f"{p},{n}")
                c = simulate_clicks(mask, p, n, rng)
                coords, labs = pad_clicks(c.coords, c.labels, p + n)
                clicks[(p, n)][0].append(coords)
                clicks[(p, n)][1].append(labs)
    if not images:
        return ValidationSet(torch.zeros(0, image_size, image_size), torch.zeros(0, image_size, image_size,
                             dtype=torch.uint8), {}, [], settings)
    return ValidationSet(
        images=torch.stack(images),
        masks=torch.stack(masks),
        clicks={s: (torch.from_numpy(np.stack(c)), torch.from_numpy(np.stack(lab))) for s, (c, lab) in clicks.items()},
        indices=list(range(len(images))),
        settings=settings,
    )


def finetune_data_for(config) -> "FinetuneData | None":
    """The FinetuneData of run ``config`` (a TrainConfig; from ``config.finetune``), or None for synthetic training."""
    if not config.finetune:
        return None
    from synthfm.training.device_batches import WORKERS

    if config.synth_device != WORKERS:
        raise UserError("--finetune reads real images in the DataLoader workers; drop --synth-device")
    return load_finetune_data(config.finetune, config.gen_size or config.size or 256, config.finetune_val_fraction)


def init_record(config) -> dict | None:
    """{"name", "sha256", "finetune_datasets", ...} of run ``config``'s --init checkpoint (recorded in its checkpoints), or None."""
    if config.init is None:
        return None
    import hashlib

    from synthfm.weights.checkpoint import read_metadata
    from synthfm.weights.source import resolve_model

    path = resolve_model(config.init)
    meta = read_metadata(path)
    return {"name": config.init, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            # what the starting point had already seen (a fine-tuned init stays marked)
            "finetune_datasets": meta.get("finetune_datasets") or [],
            "train_config_finetune": (meta.get("train_config") or {}).get("finetune") or []}


def check_same_finetune_data(saved: list | None, real: "FinetuneData") -> None:
    """UserError when a resumed run's folders no longer hold the cases it started with (the resume
    would not be exact); ``saved`` is the run config's ``finetune_datasets``."""
    if saved is None:
        return  # a run folder from before the record existed
    keys = ("name", "train_cases", "val_cases", "train_objects", "val_objects")
    now = [{k: d[k] for k in keys} for d in real.summary()]
    before = [{k: d.get(k) for k in keys} for d in saved]
    if now != before:
        raise UserError("the --finetune folders changed since the run started (cases or objects differ); "
                        "resume needs the same data, or start a new run")


__all__ = [
    "FinetuneData",
    "FinetuneStream",
    "RealSlice",
    "build_real_validation_set",
    "check_same_finetune_data",
    "finetune_data_for",
    "init_record",
    "load_finetune_data",
    "pad_grey",
    "real_sample",
    "split_cases",
    "square_pair",
    "to_model_grey",
]


def real_data_seen(meta: dict) -> list:
    """Real datasets a checkpoint's training saw, directly or through its --init chain ([] = synthetic only).

    meta: the checkpoint's metadata (:func:`synthfm.weights.checkpoint.read_metadata`).
    """
    init = meta.get("init") or {}
    seen = [*(meta.get("finetune_datasets") or []), *((meta.get("train_config") or {}).get("finetune") or []),
            *(init.get("finetune_datasets") or []), *(init.get("train_config_finetune") or [])]
    names = (d.get("name", str(d)) if isinstance(d, dict) else str(d) for d in seen)
    return list(dict.fromkeys(names))

