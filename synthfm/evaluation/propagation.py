"""Evaluate 3D propagation on the volume datasets of an nnU-Net-layout data folder.

Protocol (what ``benchmarks/eval_propagation.py`` runs and records in its JSON):

* **Volumes**: datasets whose ``file_ending`` is ``.nii.gz``/``.nii``; image and label read with
  :func:`synthfm.io.images.read_volume` and seen through :func:`synthfm.io.orientation.radiological_view`
  (the one volume convention); slices are the view's axial slices (axis 0).
* **Objects**: 3D connected components (26-connectivity) of each class with at least
  ``min_fraction`` x the volume's voxels (0.1 % by default, as in ../shared/data/README.md).
* **Prompt**: one positive click on the object's largest slice, at its deepest interior point
  (``simulate_clicks(gt_slice, 1, 0)``, deterministic), then :func:`synthfm.inference.propagation.propagate`
  with each requested variant (a :class:`~synthfm.inference.propagation.PropagationConfig`).  A
  guided variant (``GUIDED_VARIANTS``) adds the steering clicks a user makes after scrolling
  through: one more deepest-point click on each of two slices near the object's ends (``GUIDE_AT``).
* **Metrics**: 3D Dice of the propagated mask against the object's component; Dice on the seed
  slice; the slice extent found vs the true one; the stop reasons.  Two references: ``oracle`` =
  the same model given a fresh deepest-point click from the ground truth on *every* object slice
  (no propagation, no stopping: an upper bound for click-per-slice), and, on the seed slice, the
  interactive ``refinement`` check (k = 1..5 corrective clicks with and without the previous
  low-res logits fed back as ``mask_input``), which decides whether ``synthfm annotate --refine``
  helps a given model.
* Datasets with ``pseudo_labels`` (model predictions, not ground truth) are included and flagged
  ``pseudo``; their numbers check plumbing and consistency, not accuracy.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from scipy import ndimage

from synthfm.errors import UserError
from synthfm.io.intensity import resolve_window
from synthfm.prompts import next_interactive_click, simulate_clicks
from synthfm.inference.propagation import PropagationConfig, SlicePrompts, VolumeSlices, propagate

DEFAULT_MIN_FRACTION = 0.001
REFINEMENT_CLICKS = 5
# Named prompt strategies for the slices after the seed (see synthfm.inference.propagation).
VARIANTS: dict[str, PropagationConfig] = {
    # one piece at a time on top of the plain one-click protocol ("click", the old default)
    "click": PropagationConfig(use_mask_input=False, max_area_growth=None),
    "3clicks": PropagationConfig(n_pos=3, use_mask_input=False, max_area_growth=None),
    "click+box": PropagationConfig(use_box=True, use_mask_input=False, max_area_growth=None),
    "click+mask": PropagationConfig(use_mask_input=True, max_area_growth=None),
    "click+neg": PropagationConfig(n_neg=2, use_mask_input=False, max_area_growth=None),
    # the growth stop: end a direction where the area jumps (a leak into the neighbour where the object ends)
    "click+growth": PropagationConfig(use_mask_input=False, max_area_growth=1.3),
    "click+mask+growth": PropagationConfig(use_mask_input=True, max_area_growth=1.3),  # = the default
    "click+mask+growth+score": PropagationConfig(use_mask_input=True, max_area_growth=1.3, min_score=0.3),
    # the default, plus a simulated user's steering clicks on two more slices (GUIDE_AT)
    "click+mask+growth+guides": PropagationConfig(use_mask_input=True, max_area_growth=1.3),
}
# Variants whose user also clicks once on the object's slices at these fractions of its true extent
# (deepest point, as on the seed slice), passed to propagate() as guides: 3 clicks per object.
GUIDED_VARIANTS = frozenset({"click+mask+growth+guides"})
GUIDE_AT = (0.15, 0.85)


@dataclass(frozen=True)
class VolumeObject:
    """One 3D object: ``mask`` (Z, Y, X) bool, its class, and its number within the class."""

    class_name: str
    class_id: int
    index: int
    mask: np.ndarray
    voxels: int


@dataclass
class PropagationEvaluation:
    """Per-object rows (dicts, see :func:`evaluate_object`) and what was run."""

    rows: list[dict] = field(default_factory=list)
    refinement: list[dict] = field(default_factory=list)
    datasets: dict[str, dict] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)
    variants: dict[str, dict] = field(default_factory=dict)


def dice(gt: np.ndarray, pred: np.ndarray) -> float:
    """Dice of two masks of any (equal) shape; 1.0 when both are empty."""
    a, b = np.asarray(gt, dtype=bool), np.asarray(pred, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def volume_objects(label: np.ndarray, class_ids: dict[str, int], min_fraction: float = DEFAULT_MIN_FRACTION) -> list[VolumeObject]:
    """3D connected components (26-connectivity) per class with >= min_fraction x the voxel count."""
    lab = np.asarray(label)
    min_voxels = max(1, int(np.ceil(min_fraction * lab.size)))
    structure = np.ones((3, 3, 3), dtype=bool)
    objects = []
    for name, cid in sorted(class_ids.items(), key=lambda kv: kv[1]):
        cls = lab == cid
        if not cls.any():
            continue
        comp, n = ndimage.label(cls, structure=structure)
        sizes = np.bincount(comp.ravel(), minlength=n + 1)
        order = [k for k in range(1, n + 1) if sizes[k] >= min_voxels]
        for i, k in enumerate(sorted(order, key=lambda k: -sizes[k])):
            objects.append(VolumeObject(name, int(cid), i, comp == k, int(sizes[k])))
    return objects


def largest_slice(mask: np.ndarray, axis: int) -> int:
    """Index of the slice (along ``axis``) where the 3D mask has the most voxels (first on ties)."""
    other = tuple(a for a in range(3) if a != axis)
    return int(np.argmax(np.asarray(mask).sum(axis=other)))


def _take(volume: np.ndarray, k: int, axis: int) -> np.ndarray:
    return np.take(volume, k, axis=axis)


def _extent(mask: np.ndarray, axis: int) -> tuple[int, int]:
    other = tuple(a for a in range(3) if a != axis)
    idx = np.flatnonzero(np.asarray(mask).any(axis=other))
    return (int(idx[0]), int(idx[-1])) if idx.size else (-1, -1)


def seed_click(gt_slice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The evaluation's click on the seed slice: the deepest interior point of the object."""
    clicks = simulate_clicks(gt_slice, 1, 0, np.random.default_rng(0))
    return clicks.coords, clicks.labels.astype(np.int64)


def guide_clicks(mask: np.ndarray, axis: int, seed_index: int, at: Sequence[float] = GUIDE_AT) -> dict[int, SlicePrompts]:
    """A simulated user's steering clicks: slice -> deepest-point click, on the object's slices at the
    fractions ``at`` of its extent (the seed slice and slices without the object left out)."""
    first, last = _extent(mask, axis)
    guides = {}
    for f in at:
        g = first + int(round(f * (last - first)))
        gt_g = _take(mask, g, axis)
        if g != seed_index and gt_g.any():
            coords, labels = seed_click(gt_g)
            guides[g] = SlicePrompts(coords.astype(np.float32), labels)
    return guides


def evaluate_object(slices: VolumeSlices, obj: VolumeObject, config: PropagationConfig, guided: bool = False) -> dict:
    """Propagate from one click on the object's largest slice (plus :func:`guide_clicks` when
    ``guided``); return the metrics row."""
    axis = slices.axis
    k = largest_slice(obj.mask, axis)
    gt_k = _take(obj.mask, k, axis)
    coords, labels = seed_click(gt_k)
    guides = guide_clicks(obj.mask, axis, k) if guided else {}
    start = time.perf_counter()
    before = slices.encodings
    try:
        result = propagate(slices, k, coords, labels, config=config, guides=guides)
    except UserError as exc:  # the seed prediction was empty
        pred = np.zeros_like(obj.mask)
        stops, reason = {}, " ".join(str(exc).split())
    else:
        pred, stops, reason = result.mask, result.stops, ""
    seconds = time.perf_counter() - start
    first, last = _extent(obj.mask, axis)
    p_first, p_last = _extent(pred, axis)
    return {
        "seed_slice": k,
        "dice_3d": dice(obj.mask, pred),
        "dice_seed": dice(gt_k, _take(pred, k, axis)),
        "gt_slices": f"{first}..{last}",
        "pred_slices": f"{p_first}..{p_last}" if p_first >= 0 else "",
        "n_gt_slices": last - first + 1,
        "n_pred_slices": 0 if p_first < 0 else p_last - p_first + 1,
        "stop_up": f"{stops[1][1]}@{stops[1][0]}" if 1 in stops else reason,
        "stop_down": f"{stops[-1][1]}@{stops[-1][0]}" if -1 in stops else reason,
        "seconds": round(seconds, 4),
        "encodings": slices.encodings - before,
        "clicks": 1 + len(guides),
    }


def oracle_dice(slices: VolumeSlices, obj: VolumeObject) -> float:
    """3D Dice when every object slice gets its own deepest-point click from the ground truth."""
    axis = slices.axis
    pred = np.zeros_like(obj.mask)
    first, last = _extent(obj.mask, axis)
    for k in range(first, last + 1):
        gt_k = _take(obj.mask, k, axis)
        if not gt_k.any():
            continue
        slices.set_slice(k)
        coords, labels = seed_click(gt_k)
        masks, _, _ = slices.predictor.predict(point_coords=coords, point_labels=labels)
        index: list = [slice(None)] * 3
        index[axis] = k
        pred[tuple(index)] = masks[0]
    return dice(obj.mask, pred)


def refinement_curve(predictor, gt: np.ndarray, use_mask_input: bool, clicks: int = REFINEMENT_CLICKS) -> list[float]:
    """Dice after 1..``clicks`` interactive clicks on the predictor's current image.

    The first click is the deepest point, each next one at the centre of the largest error
    (:func:`synthfm.prompts.next_interactive_click`); all clicks so far are given at once, plus,
    with ``use_mask_input``, the previous prediction's low-res logits (as SAM's demo does).
    """
    coords, labels = seed_click(gt)
    coords, labels = list(coords), list(labels)
    logits = None
    scores = []
    for step in range(clicks):
        masks, _, low_res = predictor.predict(point_coords=np.asarray(coords, np.float32),
                                              point_labels=np.asarray(labels, np.int64),
                                              mask_input=logits if use_mask_input else None)
        pred = masks[0]
        scores.append(dice(gt, pred))
        logits = low_res[0:1]
        if step + 1 < clicks:
            nxt = next_interactive_click(gt, pred)
            if nxt is None:
                scores.extend([scores[-1]] * (clicks - step - 1))
                break
            coords.append(nxt[0])
            labels.append(int(nxt[1]))
    return scores


def evaluate_volumes(
    data: Sequence[str | Path] | str | Path,
    predictor,
    variants: dict[str, PropagationConfig] | None = None,
    min_fraction: float = DEFAULT_MIN_FRACTION,
    limit_objects: int | None = None,
    oracle: bool = True,
    refinement: bool = True,
    progress: Callable[[str], None] | None = None,
) -> PropagationEvaluation:
    """Run the protocol of the module docstring on every volume dataset under ``data``.

    predictor: a :class:`~synthfm.inference.predictor.Predictor`.  variants: name -> config (default: the
    ``click`` variant).  limit_objects: at most this many objects per dataset (largest first
    within each class).  Raises UserError when no volume dataset is found.
    """
    from synthfm.evaluation.datasets import find_datasets, list_cases
    from synthfm.io.images import read_volume
    from synthfm.io.orientation import radiological_view

    variants = dict(variants or {"click": VARIANTS["click"]})
    datasets, _ = find_datasets(data if isinstance(data, (list, tuple)) else [data], include_pseudo=True)
    volumes = [d for d in datasets if d.is_volume]
    if not volumes:
        raise UserError(f"no volume dataset (file_ending .nii.gz/.nii) under {data}")
    out = PropagationEvaluation(variants={name: asdict(cfg) for name, cfg in variants.items()})
    say = progress or (lambda msg: None)
    for info in volumes:
        out.datasets[info.name] = {"modality": info.modality, "pseudo_labels": info.pseudo_labels, "cases": 0, "objects": 0}
        budget = limit_objects
        for case in list_cases(info):
            if budget is not None and budget <= 0:
                break
            try:
                image = radiological_view(read_volume(case.image_path))
                label = radiological_view(read_volume(case.label_path))
            except UserError as exc:
                out.skipped.append({"dataset": info.name, "case": case.case_id, "reason": " ".join(str(exc).split())})
                continue
            if image.array.shape != label.array.shape:
                out.skipped.append({"dataset": info.name, "case": case.case_id,
                                    "reason": f"image {image.array.shape} != label {label.array.shape}"})
                continue
            objects = volume_objects(label.array, info.labels, min_fraction)
            if budget is not None:
                objects = objects[:budget]
                budget -= len(objects)
            if not objects:
                continue
            axis = 0  # axial slices of the one volume convention (synthfm.io.orientation)
            window = resolve_window(image.array, "auto", info.modality)
            slices = VolumeSlices(predictor, image.array, axis=axis, window=window)
            out.datasets[info.name]["cases"] += 1
            out.datasets[info.name]["objects"] += len(objects)
            for obj in objects:
                base = {"dataset": info.name, "case": case.case_id, "class": obj.class_name, "object": obj.index,
                        "voxels": obj.voxels, "pseudo": info.pseudo_labels, "axis": axis}
                reference = {"dice_oracle": oracle_dice(slices, obj)} if oracle else {}
                for name, config in variants.items():
                    row = {**base, "variant": name, **evaluate_object(slices, obj, config, name in GUIDED_VARIANTS),
                           **reference}
                    out.rows.append(row)
                    say(f"{info.name}/{case.case_id} {obj.class_name}#{obj.index} {name}: 3D Dice {row['dice_3d']:.3f}")
                if refinement:
                    k = largest_slice(obj.mask, axis)
                    slices.set_slice(k)
                    gt_k = _take(obj.mask, k, axis)
                    for use in (False, True):
                        curve = refinement_curve(predictor, gt_k, use_mask_input=use)
                        out.refinement.append({**base, "mask_input": use, "dice_by_click": [round(v, 4) for v in curve]})
    return out


def _mean(values: Iterable[float]) -> float:
    v = [float(x) for x in values]
    return float(np.mean(v)) if v else float("nan")


def summarise(ev: PropagationEvaluation) -> dict:
    """Means per (dataset, variant) and overall, plus the refinement curves' means."""
    by: dict[str, dict[str, dict]] = {}
    for row in ev.rows:
        cell = by.setdefault(row["dataset"], {}).setdefault(row["variant"], {"rows": []})
        cell["rows"].append(row)
    table = []
    for dataset, per_variant in by.items():
        for variant, cell in per_variant.items():
            rows = cell["rows"]
            table.append({
                "dataset": dataset,
                "pseudo": bool(ev.datasets.get(dataset, {}).get("pseudo_labels", False)),
                "variant": variant,
                "objects": len(rows),
                "dice_3d": _mean(r["dice_3d"] for r in rows),
                "dice_seed": _mean(r["dice_seed"] for r in rows),
                "dice_oracle": _mean(r["dice_oracle"] for r in rows) if "dice_oracle" in rows[0] else None,
                "slice_ratio": _mean(r["n_pred_slices"] / max(1, r["n_gt_slices"]) for r in rows),
                "seconds_per_object": _mean(r["seconds"] for r in rows),
            })
    refinement = {}
    for use in (False, True):
        curves = [r["dice_by_click"] for r in ev.refinement if r["mask_input"] == use]
        if curves:
            refinement["with_mask_input" if use else "clicks_only"] = [round(v, 4) for v in np.mean(curves, axis=0).tolist()]
    return {"table": table, "refinement_mean_dice_by_click": refinement, "datasets": ev.datasets,
            "skipped": ev.skipped, "variants": ev.variants}


def summary_markdown(summary: dict) -> str:
    """The summary table (and the refinement check) as Markdown."""
    lines = ["| dataset | labels | variant | objects | 3D Dice | seed-slice Dice | oracle 3D Dice | slices found / true | s / object |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in summary["table"]:
        lines.append(
            f"| {r['dataset']} | {'pseudo' if r['pseudo'] else 'manual'} | {r['variant']} | {r['objects']} | "
            f"{r['dice_3d']:.3f} | {r['dice_seed']:.3f} | {'-' if r['dice_oracle'] is None else format(r['dice_oracle'], '.3f')} | "
            f"{r['slice_ratio']:.2f} | "
            f"{r['seconds_per_object']:.2f} |"
        )
    ref = summary.get("refinement_mean_dice_by_click") or {}
    if ref:
        n = len(next(iter(ref.values())))
        lines += ["", "Seed-slice interactive refinement, mean Dice after k clicks:", "",
                  "| feedback | " + " | ".join(f"k={k}" for k in range(1, n + 1)) + " |",
                  "|---|" + "---:|" * n]
        for name, curve in ref.items():
            lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in curve) + " |")
    return "\n".join(lines)
