"""Zero-shot point-prompt evaluation protocol: objects x prompt settings x methods -> per-object rows.

Protocol (recorded in ``summary.json`` by :meth:`EvalProtocol.to_dict`):

* Objects come from :mod:`synthfm.evaluation.datasets` (8-connected components per class and slice, area
  >= ``min_area`` x image area; instance ids for instance-label datasets).
* Static settings ``(p, n)``: p positive and n negative clicks given at once, simulated from the
  ground truth by :func:`synthfm.prompts.simulate_clicks`.  The generator of each object and
  setting is ``np.random.default_rng([seed, stable_hash(dataset, case, slice, class, object,
  setting)])``: it depends on nothing else, so results do not change with the method list, their
  order, ``limit_objects`` or the other datasets.  All methods see the same clicks.
* Interactive (``interactive = K > 0``): one positive click (the interior point farthest from
  the boundary), then K-1 corrective clicks, each at the centre of the largest error region of
  the previous prediction (:func:`synthfm.prompts.next_interactive_click`); all clicks so far are
  given at once (no previous mask is fed back).  Rows are labelled ``prompt = "i1" .. "iK"``
  (DSC after 1..K clicks); once a prediction is exact, later steps repeat it.
* Cost: each method's ``set_image`` runs once per image or slice and serves every object and
  prompt of it.
* Metrics per object from :mod:`synthfm.evaluation.metrics` (pixels for 2D images, mm for volume slices).
"""

from __future__ import annotations

import hashlib
import math
import sys
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np

from synthfm.evaluation.baselines import Method, to_unit_grey
from synthfm.evaluation.methods import PredictorMethod, build_methods, method_settings  # noqa: F401  (public here too)
from synthfm.evaluation.datasets import DEFAULT_MIN_AREA, CaseError, DatasetInfo, EvalSlice, GtObject, list_cases, read_case
from synthfm.errors import UserError
from synthfm.evaluation.metrics import DEFAULT_NSD_TOLERANCE, object_metrics
from synthfm.prompts import DEFAULT_SETTINGS, Clicks, next_interactive_click, simulate_clicks


@dataclass(frozen=True)
class EvalProtocol:
    settings: tuple[tuple[int, int], ...] = DEFAULT_SETTINGS
    seed: int = 0
    min_area: float = DEFAULT_MIN_AREA
    nsd_tolerance: float = DEFAULT_NSD_TOLERANCE
    interactive: int = 0
    limit_objects: int | None = None
    include_pseudo: bool = False

    def prompt_labels(self) -> list[str]:
        """Labels of the prompt columns, in order: "p,n" per setting, then "i1".."iK"."""
        return [f"{p},{n}" for p, n in self.settings] + [f"i{k}" for k in range(1, self.interactive + 1)]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["settings"] = [f"{p},{n}" for p, n in self.settings]
        d["prompts"] = self.prompt_labels()
        d["rng"] = "np.random.default_rng([seed, blake2b-64(dataset|case|slice|class|object|setting)])"
        d["objects"] = "8-connected components per class and 2D image/slice (instance ids if instance_labels), area >= min_area x image area"
        d["click_simulation"] = "synthfm.prompts.simulate_clicks (first positive at the max of the distance transform)"
        d["interactive_protocol"] = "1 positive click, then each next click at the largest error region; all clicks given at once"
        d["metrics"] = {
            "dice": "2|A^B|/(|A|+|B|); empty prediction of a non-empty object = 0",
            "iou": "|A^B|/|AvB|",
            "nsd": f"boundary pixels within {self.nsd_tolerance} px (x in-plane spacing for volumes) of the other boundary",
            "hd95": "max of the two directed 95th percentiles; NaN for an empty prediction (excluded from hd95 stats)",
            "units": "pixels for 2D images, mm for volume slices",
        }
        d["modality_rows"] = "ALL:<modality> rows average over all objects of that modality (object-weighted, not dataset-weighted)"
        return d


@dataclass(frozen=True)
class ObjectRow:
    """One line of per_object.csv."""

    dataset: str
    modality: str
    case: str
    slice: int | None
    class_name: str
    object: int
    prompt: str
    method: str
    dice: float
    iou: float
    nsd: float
    hd95: float
    area: int
    empty_prediction: bool


@dataclass
class Example:
    """A cropped view of one prediction, kept for the best/worst overlays."""

    dataset: str
    case: str
    slice: int | None
    class_name: str
    object: int
    method: str
    prompt: str
    dice: float
    image: np.ndarray  # (h, w) or (h, w, 3) uint8 for display
    gt: np.ndarray  # (h, w) bool
    pred: np.ndarray  # (h, w) bool
    clicks: Clicks  # in crop pixels


@dataclass
class EvaluationResult:
    protocol: EvalProtocol
    methods: dict[str, dict]
    rows: list[ObjectRow] = field(default_factory=list)
    datasets: dict[str, dict] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)
    skipped_datasets: list[str] = field(default_factory=list)
    examples: dict[tuple[str, str], dict[str, Example]] = field(default_factory=dict)


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of ``parts`` (their ``str``), the same in every process and Python version."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def object_rng(seed: int, dataset: str, case: str, slice_index: int | None, class_name: str, obj: int, setting: str) -> np.random.Generator:
    """The click generator of one object and prompt setting (see the module docstring)."""
    return np.random.default_rng([int(seed), stable_hash(dataset, case, slice_index, class_name, obj, setting)])


# ------------------------------------------------------------------------------------- runner


def evaluate(
    datasets: Sequence[DatasetInfo],
    methods: Sequence[Method],
    protocol: EvalProtocol = EvalProtocol(),
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
    skipped_datasets: Sequence[str] = (),
) -> EvaluationResult:
    """Run every method on every object and prompt of ``datasets``; see the module docstring."""
    from tqdm import tqdm

    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    result = EvaluationResult(protocol, {m.name: method_settings(m) for m in methods}, skipped_datasets=list(skipped_datasets))
    all_cases = [(info, case) for info in datasets for case in list_cases(info)]
    counts = {info.name: 0 for info in datasets}
    for info in datasets:
        result.datasets[info.name] = {"modality": info.modality, "objects": 0, "cases": 0, "slices": 0, "pseudo_labels": info.pseudo_labels}
    bar = tqdm(all_cases, desc="cases", unit="case", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    for info, case in bar:
        remaining = None if protocol.limit_objects is None else protocol.limit_objects - counts[info.name]
        if remaining is not None and remaining <= 0:
            continue
        try:
            slices = read_case(info, case, protocol.min_area)
        except CaseError as exc:
            _skip(result, warn, info.name, case.case_id, None, str(exc))
            continue
        used_case = False
        for sl in slices:
            objects = sl.objects if remaining is None else sl.objects[:remaining]
            if not objects:
                break
            try:
                rows, examples = _evaluate_slice(info, sl, objects, methods, protocol)
            except UserError as exc:  # e.g. a Predictor refusing this image
                _skip(result, warn, info.name, case.case_id, sl.index, str(exc))
                continue
            result.rows.extend(rows)
            for ex in examples:
                _keep_example(result.examples, ex)
            counts[info.name] += len(objects)
            result.datasets[info.name]["slices"] += 1
            used_case = True
            if remaining is not None:
                remaining -= len(objects)
        result.datasets[info.name]["cases"] += int(used_case)
    for name, n in counts.items():
        result.datasets[name]["objects"] = n
    return result


def _skip(result: EvaluationResult, warn: Callable[[str], None], dataset: str, case: str, index: int | None, reason: str) -> None:
    where = f"{dataset}/{case}" + ("" if index is None else f" slice {index}")
    warn(f"skipped {where}: {' '.join(reason.split())}")
    result.skipped.append({"dataset": dataset, "case": case, "slice": index, "reason": " ".join(reason.split())})


def _evaluate_slice(
    info: DatasetInfo, sl: EvalSlice, objects: list[GtObject], methods: Sequence[Method], protocol: EvalProtocol
) -> tuple[list[ObjectRow], list[Example]]:
    static = []  # (object, prompt label, clicks), shared by every method
    for obj in objects:
        for p, n in protocol.settings:
            label = f"{p},{n}"
            rng = object_rng(protocol.seed, info.name, sl.case_id, sl.index, obj.class_name, obj.index, label)
            static.append((obj, label, simulate_clicks(obj.mask, p, n, rng)))
    primary = static[0][1] if static else None
    display = None
    rows: list[ObjectRow] = []
    examples: list[Example] = []
    for method in methods:
        method.set_image(sl.image, modality=info.modality)
        for obj, label, clicks in static:
            pred = _checked(method, method.predict(clicks), obj.mask.shape)
            rows.append(_row(info, sl, obj, label, method.name, pred, protocol))
            if label == primary:
                if display is None:
                    display = _display_image(sl.image)
                examples.append(_example(info, sl, obj, method.name, label, rows[-1].dice, display, pred, clicks))
        if protocol.interactive > 0:
            for obj in objects:
                rows.extend(_interactive(info, sl, obj, method, protocol))
    return rows, examples


def _interactive(info: DatasetInfo, sl: EvalSlice, obj: GtObject, method: Method, protocol: EvalProtocol) -> list[ObjectRow]:
    rng = object_rng(protocol.seed, info.name, sl.case_id, sl.index, obj.class_name, obj.index, "interactive")
    first = simulate_clicks(obj.mask, 1, 0, rng)
    coords, labels = [first.coords[0]], [int(first.labels[0])]
    rows, pred = [], None
    for k in range(1, protocol.interactive + 1):
        if k > 1:
            nxt = next_interactive_click(obj.mask, pred)
            if nxt is not None:
                coords.append(nxt[0])
                labels.append(int(nxt[1]))
                pred = None
        if pred is None:
            clicks = Clicks(np.asarray(coords, np.float32).reshape(-1, 2), np.asarray(labels, np.int32))
            pred = _checked(method, method.predict(clicks), obj.mask.shape)
        rows.append(_row(info, sl, obj, f"i{k}", method.name, pred, protocol))
    return rows


def _checked(method: Method, pred: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    pred = np.asarray(pred)
    if pred.shape != shape:
        raise RuntimeError(f"method {method.name!r} returned a mask of shape {pred.shape}, expected {shape}")
    return pred.astype(bool, copy=False)


def _row(info: DatasetInfo, sl: EvalSlice, obj: GtObject, prompt: str, method: str, pred: np.ndarray, protocol: EvalProtocol) -> ObjectRow:
    m = object_metrics(obj.mask, pred, spacing=sl.spacing, tolerance=protocol.nsd_tolerance)
    return ObjectRow(
        dataset=info.name,
        modality=info.modality,
        case=sl.case_id,
        slice=sl.index,
        class_name=obj.class_name,
        object=obj.index,
        prompt=prompt,
        method=method,
        dice=m["dice"],
        iou=m["iou"],
        nsd=m["nsd"],
        hd95=m["hd95"],
        area=obj.area,
        empty_prediction=not pred.any(),
    )


# ------------------------------------------------------------------------------------ examples


def _display_image(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3 and image.dtype == np.uint8:
        return image[:, :, :3]
    return (to_unit_grey(image) * 255.0 + 0.5).astype(np.uint8)


def _example(info, sl, obj, method, prompt, dsc, display, pred, clicks) -> Example:
    h, w = obj.mask.shape
    union = obj.mask | pred
    rows = np.flatnonzero(union.any(axis=1))
    cols = np.flatnonzero(union.any(axis=0))
    xs = np.concatenate([cols[[0, -1]], clicks.coords[:, 0]])
    ys = np.concatenate([rows[[0, -1]], clicks.coords[:, 1]])
    pad = int(0.25 * max(xs.max() - xs.min(), ys.max() - ys.min())) + 10
    r0, r1 = max(0, int(ys.min()) - pad), min(h, int(math.ceil(ys.max())) + pad + 1)
    c0, c1 = max(0, int(xs.min()) - pad), min(w, int(math.ceil(xs.max())) + pad + 1)
    local = Clicks(clicks.coords - np.array([c0, r0], np.float32), clicks.labels)
    return Example(
        info.name, sl.case_id, sl.index, obj.class_name, obj.index, method, prompt, dsc,
        display[r0:r1, c0:c1].copy(), obj.mask[r0:r1, c0:c1].copy(), pred[r0:r1, c0:c1].copy(), local,
    )


def _keep_example(store: dict[tuple[str, str], dict[str, Example]], ex: Example) -> None:
    slot = store.setdefault((ex.dataset, ex.method), {})
    if "best" not in slot or ex.dice > slot["best"].dice:
        slot["best"] = ex
    if "worst" not in slot or ex.dice < slot["worst"].dice:
        slot["worst"] = ex
