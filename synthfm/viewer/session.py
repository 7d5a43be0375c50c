"""The state behind the napari widget: clicks and boxes -> masks -> a label volume, with undo.

:class:`AnnotationSession` holds everything and has one method per user action (``add_click``,
``set_box``, ``undo``, ``reset``, ``new_object``, ``cycle_candidate``, ``propagate``, ``save``).
It knows nothing of Qt or napari: :mod:`synthfm.viewer.widget` turns mouse clicks and buttons into
these calls and shows ``labels`` as the Labels layer, and tests can drive it directly.

Frame: the session works on a (Z, Y, X) stack (a 2D image is a stack of one), slices along axis 0,
clicks ``(x, y)`` = (column, row) pixels of a slice, as the Predictor takes them.  Volumes are in
the radiological view (:mod:`synthfm.io.orientation`), which is what :mod:`synthfm.viewer.reader`
gives napari, so napari's (z, y, x) data coordinates are the session's.

Model: each object has a label id (1, 2, ...).  Each (object, slice) pair has its own clicks and
box; after every prompt the model predicts the object's mask on that slice from all of them (the
slice is encoded once and cached by :class:`~synthfm.inference.propagation.VolumeSlices`), and the
mask is written into ``labels``.  An object's pixels never overwrite another object's: correct a
leak with a negative click.  With ``refine`` the previous prediction's low-res logits go back in as
``mask_input`` (SAM's demo does this).  With multimask on, the best-scoring of the three masks is
used and :meth:`cycle_candidate` steps through the others.  :meth:`propagate` follows the current
object from the current slice through the volume with :func:`synthfm.inference.propagation.propagate`
(the code ``synthfm segment --propagate`` runs).

Saving writes ``labels`` (uint8, or uint16 above 255 objects) in the input's exact geometry through
:func:`synthfm.io.images.write_mask` (atomic; the file's own voxel order, spacing, origin, direction).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from synthfm.errors import UserError
from synthfm.prompts import click_inside
from synthfm.io.intensity import CT_WINDOWS, IntensityWindow, choose_auto_preset, resolve_window
from synthfm.io.images import LoadedImage, file_extension, write_mask
from synthfm.inference.propagation import PropagationConfig, PropagationResult, SlicePrompts, VolumeSlices, propagate

# Label-map format for each input format (lossless raster for 2D, the same family for volumes).
_DEFAULT_MASK_EXTENSION = {
    "PNG": ".png", "JPEG": ".png", "TIFF": ".tif", "BMP": ".png", "DICOM": ".png",
    "DICOM series": ".nii.gz", "NIfTI": ".nii.gz", "NRRD": ".nrrd", "MetaImage": ".mha",
}
MAX_UNDO = 64
MAX_LABEL = int(np.iinfo(np.uint16).max)


@dataclass(frozen=True)
class Click:
    """A click in slice pixels: x = column, y = row; positive = True for an object click."""

    x: float
    y: float
    positive: bool


@dataclass
class _UndoEntry:
    object_id: int
    slice_index: int
    clicks: list[Click]
    box: np.ndarray | None
    logits: np.ndarray | None
    labels_before: np.ndarray  # the label slice (or, after propagation, the whole stack) before the action
    whole_stack: bool
    candidates: tuple | None
    candidate: int


def default_output(loaded: LoadedImage) -> Path:
    """``<input name>_labels<ext>`` next to the input (ext from :data:`_DEFAULT_MASK_EXTENSION`)."""
    path = Path(loaded.path)
    ext = _DEFAULT_MASK_EXTENSION.get(loaded.format, ".png" if loaded.kind == "2d" else ".nii.gz")
    if loaded.kind == "2d" and loaded.format in ("NIfTI", "NRRD", "MetaImage"):
        ext = file_extension(path)  # a 2D image stored as a volume file keeps its format
    stem = path.name[: -len(file_extension(path))] if file_extension(path) else path.name
    return path.parent / f"{stem}_labels{ext}"


def window_choices(data: np.ndarray, initial: IntensityWindow, modality: str | None = None) -> list[IntensityWindow]:
    """The intensity windows offered: ``initial`` first, then the CT windows for CT data, else a
    percentile stretch and the full value range (duplicates dropped)."""
    options = [initial]
    ct_like = initial.name in CT_WINDOWS or initial.name == "custom" or choose_auto_preset(data, modality) in CT_WINDOWS
    if ct_like:
        options += [resolve_window(data, name) for name in CT_WINDOWS]
    else:
        options.append(resolve_window(data, "mr"))
        lo, hi = float(np.nanmin(data)), float(np.nanmax(data))
        options.append(IntensityWindow(lo, hi if hi > lo else lo + 1.0, "full"))
    seen, out = set(), []
    for w in options:
        if (w.lo, w.hi) not in seen:
            seen.add((w.lo, w.hi))
            out.append(w)
    return out


class AnnotationSession:
    """State and actions of one annotation session (see the module docstring).

    predictor: a :class:`~synthfm.inference.predictor.Predictor`.  image: the
    :class:`~synthfm.io.images.LoadedImage` (2D, or a volume in the radiological view).  window:
    intensity preset for the model (resolved once on the whole image).  log: called with one line
    per action.  Attributes: ``labels`` (the image's spatial shape, uint16), ``slice_index``,
    ``object_id``, ``message`` (the last status line), ``score`` (the last predicted IoU or None).
    """

    def __init__(self, predictor, image: LoadedImage, window: str | tuple | IntensityWindow = "auto",
                 refine: bool = False, propagation: PropagationConfig | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.predictor = predictor
        self.image = image
        self.refine = bool(refine)
        self.propagation = propagation or PropagationConfig()
        self.log = log or (lambda line: None)
        self.is_volume = image.kind == "3d"
        stack = image.array if self.is_volume else image.array[None]
        initial = resolve_window(image.array, window, image.modality)
        self.windows = window_choices(image.array, initial, image.modality)
        self.window_index = 0
        self.slices = VolumeSlices(predictor, stack, axis=0, window=initial)
        self.labels = np.zeros(image.spatial_shape, dtype=np.uint16)
        self._label_stack = self.labels if self.is_volume else self.labels[None]
        self.slice_index = self.num_slices // 2
        self.object_id = 1
        self.clicks: dict[tuple[int, int], list[Click]] = {}
        self.boxes: dict[tuple[int, int], np.ndarray] = {}
        self.logits: dict[tuple[int, int], np.ndarray] = {}
        # (masks (C,H,W), scores (C,), low-res logits (C,S/4,S/4)) of the last prediction
        self.candidates: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.candidate = 0
        self.multimask = False
        self.undo_stack: list[_UndoEntry] = []
        self.dirty = False
        self.score: float | None = None
        self.last_propagation: PropagationResult | None = None
        self.message = "click on the object"

    # ------------------------------------------------------------------ read-only views
    @property
    def num_slices(self) -> int:
        return self.slices.num_slices

    @property
    def window(self) -> IntensityWindow:
        return self.windows[self.window_index]

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of a slice."""
        return tuple(self._label_stack.shape[1:3])

    def label_slice(self, k: int | None = None) -> np.ndarray:
        """The label map's slice ``k`` (default: current), a writable view (H, W) uint16."""
        return self._label_stack[self.slice_index if k is None else int(k)]

    def current_clicks(self) -> list[Click]:
        return self.clicks.get((self.object_id, self.slice_index), [])

    def current_box(self) -> np.ndarray | None:
        return self.boxes.get((self.object_id, self.slice_index))

    def object_ids(self) -> list[int]:
        """Label ids present in the label map."""
        return [int(i) for i in np.unique(self.labels) if i != 0]

    # ------------------------------------------------------------------ actions
    def _say(self, line: str) -> None:
        self.message = line
        self.log(line)

    def _push_undo(self, whole_stack: bool = False) -> None:
        key = (self.object_id, self.slice_index)
        before = self._label_stack.copy() if whole_stack else self.label_slice().copy()
        self.undo_stack.append(_UndoEntry(self.object_id, self.slice_index, list(self.clicks.get(key, [])),
                                          self.boxes.get(key), self.logits.get(key), before, whole_stack,
                                          self.candidates, self.candidate))
        del self.undo_stack[:-MAX_UNDO]

    def go_to_slice(self, k: int) -> None:
        """Make slice ``k`` (clamped to the stack) the one clicks go to."""
        k = min(max(int(k), 0), self.num_slices - 1)
        if k != self.slice_index:
            self.slice_index = k
            self.candidates = None

    def add_click(self, x: float, y: float, positive: bool = True) -> None:
        """A click at slice pixel (x, y) (column, row): predict the current object on this slice."""
        if not click_inside(x, y, self.shape):
            h, w = self.shape
            self._say(f"click ({x:.0f}, {y:.0f}) is outside the image ({w} x {h})")
            return
        self._push_undo()
        key = (self.object_id, self.slice_index)
        self.clicks.setdefault(key, []).append(Click(float(x), float(y), bool(positive)))
        self.candidate = -1  # take the best-scoring candidate
        area = self._predict()
        sign = "+" if positive else "-"
        self._say(f"click {sign} ({x:.0f}, {y:.0f}) on slice {self.slice_index}, object {self.object_id}: "
                  f"{area} pixels (score {self.score:.2f})")

    def set_box(self, box) -> None:
        """Use ``box`` (x0, y0, x1, y1) slice pixels for the current object on this slice (None removes it)."""
        key = (self.object_id, self.slice_index)
        self._push_undo()
        if box is None:
            self.boxes.pop(key, None)
        else:
            b = np.asarray(box, dtype=np.float32).reshape(4)
            h, w = self.shape
            x0, x1 = sorted((float(np.clip(b[0], 0, w - 1)), float(np.clip(b[2], 0, w - 1))))
            y0, y1 = sorted((float(np.clip(b[1], 0, h - 1)), float(np.clip(b[3], 0, h - 1))))
            self.boxes[key] = np.array([x0, y0, x1, y1], dtype=np.float32)
        self.candidate = -1
        area = self._predict()
        self._say(f"box on slice {self.slice_index}, object {self.object_id}: {area} pixels"
                  + ("" if self.score is None else f" (score {self.score:.2f})"))

    def _predict(self) -> int:
        """Run the model on the current (object, slice) prompts and paint the result; the area painted."""
        key = (self.object_id, self.slice_index)
        clicks, box = self.clicks.get(key, []), self.boxes.get(key)
        if not clicks and box is None:
            self.candidates, self.score = None, None
            return self._paint(np.zeros(self.shape, dtype=bool))
        self.slices.set_slice(self.slice_index)
        coords, labels = self._prompt_arrays(key)
        previous = self.logits.get(key) if self.refine else None
        masks, scores, low_res = self.predictor.predict(point_coords=coords, point_labels=labels, box=box,
                                                        mask_input=previous, multimask_output=self.multimask)
        if self.candidate < 0 or self.candidate >= len(scores):
            self.candidate = int(np.argmax(scores))
        self.candidates = (masks, scores, low_res)
        self.logits[key] = low_res[self.candidate : self.candidate + 1]
        self.score = float(scores[self.candidate])
        return self._paint(masks[self.candidate])

    def _paint(self, mask: np.ndarray, k: int | None = None) -> int:
        """Replace the current object's pixels on slice ``k`` by ``mask`` (other objects keep theirs)."""
        lab = self.label_slice(k)
        lab[lab == self.object_id] = 0
        fill = np.asarray(mask, dtype=bool) & (lab == 0)
        lab[fill] = self.object_id
        self.dirty = True
        return int(fill.sum())

    def undo(self) -> None:
        """Take back the last change (click, box, reset, candidate, multimask switch or propagation)."""
        if not self.undo_stack:
            self._say("nothing to undo")
            return
        e = self.undo_stack.pop()
        self.object_id, self.slice_index = e.object_id, e.slice_index
        key = (e.object_id, e.slice_index)
        self.clicks[key] = e.clicks
        for store, value in ((self.boxes, e.box), (self.logits, e.logits)):
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value
        if e.whole_stack:
            self._label_stack[...] = e.labels_before
        else:
            self.label_slice()[...] = e.labels_before
        self.candidates, self.candidate = e.candidates, e.candidate
        self.dirty = True
        self._say(f"undone: object {self.object_id} on slice {self.slice_index} has {len(e.clicks)} click(s)")

    def reset(self) -> None:
        """Remove the current object's clicks, box and mask on this slice."""
        key = (self.object_id, self.slice_index)
        if not self.clicks.get(key) and key not in self.boxes and not (self.label_slice() == self.object_id).any():
            self._say(f"object {self.object_id} has nothing on slice {self.slice_index}")
            return
        self._push_undo()
        for store in (self.clicks, self.boxes, self.logits):
            store.pop(key, None)
        self._paint(np.zeros(self.shape, dtype=bool))
        self.candidates, self.score = None, None
        self._say(f"reset object {self.object_id} on slice {self.slice_index}")

    def set_window(self, index: int) -> None:
        """Use intensity window ``windows[index]`` for the model from the next prompt on."""
        self.window_index = int(index) % len(self.windows)
        self.slices.set_window(self.window)
        self._say(f"window {self.window.describe()}")

    def set_multimask(self, on: bool) -> None:
        """Switch SAM's 3-candidate output on/off; re-predicts the current object if it has prompts."""
        self.multimask = bool(on)
        if self.current_clicks() or self.current_box() is not None:
            self._push_undo()
            self.candidate = -1
            self._predict()
        self._say(f"multimask {'on (cycle the 3 candidates)' if self.multimask else 'off'}")

    def cycle_candidate(self) -> None:
        """Use the next of the three multimask candidates for the current object."""
        if self.candidates is None or len(self.candidates[1]) < 2:
            self._say("no candidates: turn multimask on and click")
            return
        self._push_undo()
        masks, scores, low_res = self.candidates
        self.candidate = (self.candidate + 1) % len(scores)
        # the chosen candidate's logits are what refine feeds back with the next click
        self.logits[(self.object_id, self.slice_index)] = low_res[self.candidate : self.candidate + 1]
        self.score = float(scores[self.candidate])
        area = self._paint(masks[self.candidate])
        self._say(f"candidate {self.candidate + 1}/{len(scores)}: score {self.score:.2f}, {area} pixels")

    def select_object(self, object_id: int) -> None:
        if not 1 <= int(object_id) <= MAX_LABEL:
            self._say(f"object ids are 1..{MAX_LABEL}")
            return
        self.object_id = int(object_id)
        self.candidates, self.score = None, None
        self._say(f"object {self.object_id}")

    def new_object(self) -> int:
        """Start the next unused label id; returns it."""
        used = (set(self.object_ids()) | {oid for (oid, _), clicks in self.clicks.items() if clicks}
                | {oid for (oid, _) in self.boxes} | {self.object_id})
        self.select_object(max(used) + 1)
        return self.object_id

    def propagate(self, max_slices: int | None = None) -> PropagationResult | None:
        """Follow the current object from this slice's prompts through the volume (both directions);
        its mask on every slice reached replaces what it had there (other objects keep their pixels)."""
        if not self.is_volume:
            self._say("a 2D image has one slice: nothing to propagate")
            return None
        key = (self.object_id, self.slice_index)
        clicks, box = self.clicks.get(key, []), self.boxes.get(key)
        if not clicks and box is None:
            self._say(f"click object {self.object_id} on slice {self.slice_index} first")
            return None
        coords, labels = self._prompt_arrays(key)
        try:
            result = propagate(self.slices, self.slice_index, coords, labels, box, config=self.propagation,
                               multimask=self.multimask, max_slices=max_slices, guides=self._guides())
        except UserError as exc:
            self._say(" ".join(str(exc).split()))
            return None
        self._push_undo(whole_stack=True)
        self._label_stack[self._label_stack == self.object_id] = 0
        fill = result.mask & (self._label_stack == 0)
        self._label_stack[fill] = self.object_id
        self.dirty = True
        self.last_propagation = result
        self._say(f"object {self.object_id}: {result.describe()}, {int(fill.sum())} voxels")
        return result

    def _prompt_arrays(self, key: tuple[int, int]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The clicks of (object, slice) ``key`` as (coords (N, 2) float32 (x, y), labels (N,) int64), or Nones."""
        clicks = self.clicks.get(key, [])
        if not clicks:
            return None, None
        return (np.array([[c.x, c.y] for c in clicks], dtype=np.float32),
                np.array([1 if c.positive else 0 for c in clicks], dtype=np.int64))

    def _guides(self) -> dict[int, SlicePrompts]:
        """The current object's prompts on the other slices: they steer :meth:`propagate` there."""
        guides = {}
        for oid, k in set(self.clicks) | set(self.boxes):
            if oid != self.object_id or k == self.slice_index:
                continue
            coords, labels = self._prompt_arrays((oid, k))
            if coords is None or not (labels == 1).any():
                if (oid, k) not in self.boxes:
                    continue  # negatives alone do not say where the object is
                coords = labels = None  # a box alone
            guides[k] = SlicePrompts(coords, labels, self.boxes.get((oid, k)))
        return guides

    def save(self, path: str | Path) -> Path:
        """Write the label map to ``path`` in the input's geometry (format from the extension);
        raises UserError (one line) when it cannot."""
        out = write_mask(Path(path), self.labels, like=self.image)
        self.dirty = False
        ids = self.object_ids()
        self._say(f"saved {out} ({len(ids)} object(s), {int((self.labels > 0).sum())} voxels)")
        return out
