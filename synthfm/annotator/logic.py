"""The logic of ``synthfm annotate``: clicks -> masks -> a label map, with undo, slices and objects.

:class:`Annotator` holds all the state and has one method per user action (``add_click``,
``undo``, ``next_slice``, ``save``, ...), plus ``on_key`` / ``on_mouse`` that translate OpenCV key
codes and mouse events into those actions.  It never opens a window: ``synthfm.annotator.window``
draws it and runs the OpenCV window loop, and tests call the handlers directly.

Model: each object has a label id (1, 2, ...; keys ``1``-``9`` pick one, ``tab`` starts a new one).
Each (object, slice) pair has its own click list; after every click the model predicts the
object's mask on the current slice from all of that pair's clicks (the slice is encoded once and
cached), and the mask is written into the label map.  An object's pixels never overwrite another
object's: correct a leak with a negative click.  With ``refine`` the previous prediction's
low-res logits are also given as ``mask_input`` (SAM's demo does this; the shipped models are
not trained with mask inputs, so it is off by default: ``benchmarks/eval_propagation.py``
measures whether it helps a model).  With multimask on, the model proposes three masks, the
best-scoring one is used, and ``c`` cycles through the others.

Saving writes the label map (uint8, or uint16 above 255 objects) in the input's geometry through
``synthfm.io.images.write_mask`` (atomic).  An existing file is replaced only after a confirmation key
(``y``) unless the session was started with ``overwrite``; once this session has written the file,
later saves replace it without asking.  Quitting with unsaved changes asks for ``y`` first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from synthfm.errors import UserError
from synthfm.prompts import click_inside
from synthfm.io.intensity import CT_WINDOWS, IntensityWindow, choose_auto_preset, resolve_window
from synthfm.io.images import LoadedImage, axis_index, write_mask
from synthfm.io.orientation import radiological_view
from synthfm.inference.propagation import VolumeSlices

MAX_UNDO = 64
MAX_LABEL = int(np.iinfo(np.uint16).max)
# Key codes as cv2.waitKeyEx returns them (ASCII, and X11 keysyms for the arrows and page keys).
KEY_TAB, KEY_ESC, KEY_ENTER = 9, 27, 13
KEY_LEFT, KEY_UP, KEY_RIGHT, KEY_DOWN, KEY_PAGE_UP, KEY_PAGE_DOWN = 65361, 65362, 65363, 65364, 65365, 65366
# cv2 mouse events (kept as numbers so this module does not need cv2).
EVENT_LBUTTONDOWN, EVENT_RBUTTONDOWN, EVENT_MOUSEWHEEL = 1, 2, 10

HELP = ("left click +, right click -, u undo, r reset, n/p or wheel: slice, w window, m multimask, c candidate, "
        "1-9/tab object, s save, q quit")


@dataclass(frozen=True)
class Click:
    """A click in image pixels: x = column, y = row; positive = True for a left click."""

    x: float
    y: float
    positive: bool


@dataclass
class _UndoEntry:
    object_id: int
    slice_index: int
    clicks: list[Click]
    logits: np.ndarray | None
    label_slice: np.ndarray  # the label map's slice before the action
    candidates: tuple | None
    candidate: int


def window_choices(data: np.ndarray, initial: IntensityWindow, modality: str | None = None) -> list[IntensityWindow]:
    """The intensity windows ``w`` cycles through: ``initial`` first, then the CT windows for CT
    data, else a percentile stretch and the full value range (duplicates dropped)."""
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


class Annotator:
    """State and actions of one annotation session (see the module docstring).

    predictor: a :class:`~synthfm.inference.predictor.Predictor`.  image: the :class:`~synthfm.io.images.LoadedImage`
    (2D, or a volume sliced along ``axis``).  out_path: where ``save`` writes the label map.
    window: intensity preset (resolved once on the whole image/volume).  log: called with one line
    per action (the CLI prints them).
    """

    def __init__(self, predictor, image: LoadedImage, out_path: str | Path, axis: str | int = "axial",
                 window: str | tuple | IntensityWindow = "auto", refine: bool = False, overwrite: bool = False,
                 start_slice: int | None = None, log: Callable[[str], None] | None = None) -> None:
        self.predictor = predictor
        image = radiological_view(image)  # volumes in the one convention (synthfm.io.orientation)
        self.image = image
        self.out_path = Path(out_path)
        self.refine = bool(refine)
        self.overwrite = bool(overwrite)
        self.log = log or (lambda line: None)
        self.is_volume = image.kind == "3d"
        stack = image.array if self.is_volume else image.array[None]
        self.axis = axis_index(axis) if self.is_volume else 0
        initial = resolve_window(image.array, window, image.modality)
        self.windows = window_choices(image.array, initial, image.modality)
        self.window_index = 0
        self.slices = VolumeSlices(predictor, stack, axis=self.axis, window=initial)
        self.labels = np.zeros(image.spatial_shape, dtype=np.uint16)
        self._label_stack = self.labels if self.is_volume else self.labels[None]
        n = self.num_slices
        self.slice_index = n // 2 if start_slice is None else int(start_slice)
        if not 0 <= self.slice_index < n:
            raise UserError(f"slice {start_slice} is out of range (0..{n - 1})")
        self.object_id = 1
        self.clicks: dict[tuple[int, int], list[Click]] = {}
        self.logits: dict[tuple[int, int], np.ndarray] = {}
        # (masks (C,H,W), scores (C,), low-res logits (C,S/4,S/4)) of the last prediction
        self.candidates: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.candidate = 0
        self.multimask = False
        self.undo_stack: list[_UndoEntry] = []
        self.dirty = False
        self.saved_once = False
        self.pending: str | None = None  # "overwrite" or "quit": waiting for a confirmation key
        self.done = False
        self.message = HELP
        self.version = 0  # bumped on every change; the view redraws when it moves

    # ------------------------------------------------------------------ read-only views
    @property
    def num_slices(self) -> int:
        return self.slices.num_slices

    @property
    def window(self) -> IntensityWindow:
        return self.windows[self.window_index]

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the current slice."""
        return tuple(self.label_slice().shape)

    def label_slice(self, k: int | None = None) -> np.ndarray:
        """The label map's slice ``k`` (default: current), a writable view (H, W) uint16."""
        index: list = [slice(None)] * 3
        index[self.axis] = self.slice_index if k is None else k
        return self._label_stack[tuple(index)]

    def display_image(self) -> np.ndarray:
        """The current slice as the model sees it: uint8 (H, W) or (H, W, 3) with the current window."""
        return self.window.apply(self.slices.image(self.slice_index))

    def current_clicks(self) -> list[Click]:
        return self.clicks.get((self.object_id, self.slice_index), [])

    def object_ids(self) -> list[int]:
        """Label ids present in the label map."""
        ids = np.unique(self.labels)
        return [int(i) for i in ids if i != 0]

    # ------------------------------------------------------------------ actions
    def _changed(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        self.version += 1

    def _push_undo(self) -> None:
        key = (self.object_id, self.slice_index)
        self.undo_stack.append(_UndoEntry(self.object_id, self.slice_index, list(self.clicks.get(key, [])),
                                          self.logits.get(key), self.label_slice().copy(), self.candidates, self.candidate))
        del self.undo_stack[:-MAX_UNDO]

    def add_click(self, x: float, y: float, positive: bool) -> None:
        """A click at image pixel (x, y) (column, row): predict the current object on this slice."""
        self.pending = None
        h, w = self.shape
        if not click_inside(x, y, (h, w)):
            self._changed(f"click ({x:.0f}, {y:.0f}) is outside the image ({w} x {h})")
            return
        self._push_undo()
        key = (self.object_id, self.slice_index)
        self.clicks.setdefault(key, []).append(Click(float(x), float(y), bool(positive)))
        self.candidate = -1  # take the best-scoring candidate
        area, score = self._predict()
        sign = "+" if positive else "-"
        line = (f"click {sign} ({x:.0f}, {y:.0f}) on slice {self.slice_index}, object {self.object_id}: "
                f"{area} pixels (score {score:.2f})")
        self.log(line)
        self._changed(line)

    def _predict(self) -> tuple[int, float]:
        """Run the model on the current (object, slice) clicks and paint the result; (area, score)."""
        key = (self.object_id, self.slice_index)
        clicks = self.clicks.get(key, [])
        if not clicks:
            self._paint(np.zeros(self.shape, dtype=bool))
            self.candidates = None
            return 0, 0.0
        self.slices.set_slice(self.slice_index)
        coords = np.array([[c.x, c.y] for c in clicks], dtype=np.float32)
        labels = np.array([1 if c.positive else 0 for c in clicks], dtype=np.int64)
        previous = self.logits.get(key) if self.refine else None
        masks, scores, low_res = self.predictor.predict(point_coords=coords, point_labels=labels, mask_input=previous,
                                                        multimask_output=self.multimask)
        if self.candidate < 0 or self.candidate >= len(scores):
            self.candidate = int(np.argmax(scores))
        self.candidates = (masks, scores, low_res)
        self.logits[key] = low_res[self.candidate : self.candidate + 1]
        return self._paint(masks[self.candidate]), float(scores[self.candidate])

    def _paint(self, mask: np.ndarray) -> int:
        """Replace the current object's pixels on this slice by ``mask`` (other objects keep theirs)."""
        lab = self.label_slice()
        lab[lab == self.object_id] = 0
        fill = np.asarray(mask, dtype=bool) & (lab == 0)
        lab[fill] = self.object_id
        self.dirty = True
        return int(fill.sum())

    def undo(self) -> None:
        """Take back the last change (click, reset, candidate or multimask switch)."""
        self.pending = None
        if not self.undo_stack:
            self._changed("nothing to undo")
            return
        e = self.undo_stack.pop()
        self.object_id, self.slice_index = e.object_id, e.slice_index
        key = (e.object_id, e.slice_index)
        self.clicks[key] = e.clicks
        if e.logits is None:
            self.logits.pop(key, None)
        else:
            self.logits[key] = e.logits
        self.label_slice()[...] = e.label_slice
        self.candidates, self.candidate = e.candidates, e.candidate
        self.dirty = True
        self._changed(f"undone: object {self.object_id} on slice {self.slice_index} has {len(e.clicks)} click(s)")

    def reset(self) -> None:
        """Remove the current object's clicks and mask on this slice."""
        self.pending = None
        key = (self.object_id, self.slice_index)
        if not self.clicks.get(key) and not (self.label_slice() == self.object_id).any():
            self._changed(f"object {self.object_id} has nothing on slice {self.slice_index}")
            return
        self._push_undo()
        self.clicks.pop(key, None)
        self.logits.pop(key, None)
        self._paint(np.zeros(self.shape, dtype=bool))
        self.candidates = None
        self._changed(f"reset object {self.object_id} on slice {self.slice_index}")

    def go_to_slice(self, k: int) -> None:
        self.pending = None
        k = min(max(int(k), 0), self.num_slices - 1)
        if k != self.slice_index:
            self.slice_index = k
            self.candidates = None
        self._changed(f"slice {k + 1}/{self.num_slices}")

    def next_slice(self, step: int = 1) -> None:
        if not self.is_volume:
            self._changed("a 2D image has one slice")
            return
        self.go_to_slice(self.slice_index + step)

    def cycle_window(self) -> None:
        """Next intensity window; the model sees the new window from the next click on."""
        self.pending = None
        self.window_index = (self.window_index + 1) % len(self.windows)
        self.slices.set_window(self.window)
        self._changed(f"window {self.window.describe()}")

    def toggle_multimask(self) -> None:
        """Switch SAM's 3-candidate output on/off; re-predicts the current object if it has clicks."""
        self.pending = None
        self.multimask = not self.multimask
        if self.current_clicks():
            self._push_undo()
            self.candidate = -1
            self._predict()
        self._changed(f"multimask {'on (c cycles the 3 candidates)' if self.multimask else 'off'}")

    def cycle_candidate(self) -> None:
        """Use the next of the three multimask candidates for the current object."""
        self.pending = None
        if self.candidates is None or len(self.candidates[1]) < 2:
            self._changed("no candidates: turn multimask on (m) and click")
            return
        self._push_undo()
        masks, scores, low_res = self.candidates
        self.candidate = (self.candidate + 1) % len(scores)
        # the chosen candidate's logits are what refine feeds back with the next click
        self.logits[(self.object_id, self.slice_index)] = low_res[self.candidate : self.candidate + 1]
        area = self._paint(masks[self.candidate])
        self._changed(f"candidate {self.candidate + 1}/{len(scores)}: score {scores[self.candidate]:.2f}, {area} pixels")

    def select_object(self, object_id: int) -> None:
        self.pending = None
        if not 1 <= int(object_id) <= MAX_LABEL:
            self._changed(f"object ids are 1..{MAX_LABEL}")
            return
        self.object_id = int(object_id)
        self.candidates = None
        self._changed(f"object {self.object_id}")

    def new_object(self) -> None:
        """Start the next unused label id."""
        used = set(self.object_ids()) | {oid for (oid, _), clicks in self.clicks.items() if clicks} | {self.object_id}
        self.select_object(max(used) + 1)

    def save(self) -> bool:
        """Write the label map; asks first (``pending = "overwrite"``) if that would replace a file
        this session did not write.  Returns True when written."""
        if self.out_path.exists() and not (self.overwrite or self.saved_once) and self.pending != "overwrite":
            self.pending = "overwrite"
            self._changed(f"{self.out_path.name} exists: press y to overwrite it, any other key to cancel")
            return False
        self.pending = None
        try:
            write_mask(self.out_path, self.labels, like=self.image)
        except (UserError, OSError) as exc:
            self._changed(f"could not save: {' '.join(str(exc).split())}")
            self.log(self.message)
            return False
        self.dirty = False
        self.saved_once = True
        ids = self.object_ids()
        line = f"saved {self.out_path} ({len(ids)} object(s), {int((self.labels > 0).sum())} pixels)"
        self.log(line)
        self._changed(line)
        return True

    def quit(self) -> None:
        """Stop; with unsaved changes, ask first (``pending = "quit"``)."""
        if self.dirty and self.pending != "quit":
            self.pending = "quit"
            self._changed("unsaved changes: y = quit without saving, s = save and quit, any other key = go on")
            return
        self.done = True
        self._changed("bye")

    def _confirm(self, key: int) -> None:
        pending, self.pending = self.pending, None
        if key == ord("y"):
            if pending == "overwrite":
                self.pending = "overwrite"
                self.save()
            else:
                self.done = True
        elif key == ord("s") and pending == "quit":
            if self.save():
                self.done = True
        else:
            self._changed("cancelled")

    # ------------------------------------------------------------------ event translation
    def on_key(self, key: int) -> None:
        """Handle a key code from ``cv2.waitKeyEx`` (see the module docstring for the keys)."""
        if key is None or key < 0:
            return
        if 0 <= key < 256:
            key = ord(chr(key).lower())  # caps lock or shift: same keys
        if self.pending is not None:
            self._confirm(key)
            return
        if 0 <= key < 256:
            ch = chr(key)
            if ch in "123456789":
                self.select_object(int(ch))
                return
            action = {
                "u": self.undo, "r": self.reset, "n": self.next_slice, "p": lambda: self.next_slice(-1),
                "w": self.cycle_window, "m": self.toggle_multimask, "c": self.cycle_candidate,
                "s": self.save, "q": self.quit, chr(KEY_ESC): self.quit, chr(KEY_TAB): self.new_object,
                "h": lambda: self._changed(HELP),
            }.get(ch)
        else:
            action = {KEY_RIGHT: self.next_slice, KEY_UP: self.next_slice, KEY_PAGE_UP: self.next_slice,
                      KEY_LEFT: lambda: self.next_slice(-1), KEY_DOWN: lambda: self.next_slice(-1),
                      KEY_PAGE_DOWN: lambda: self.next_slice(-1)}.get(key)
        if action is not None:
            action()

    def on_mouse(self, event: int, x: float, y: float, flags: int = 0, to_image: Callable | None = None) -> None:
        """Handle a cv2 mouse event at display position (x, y); ``to_image`` maps it to image pixels."""
        if event == EVENT_MOUSEWHEEL:
            delta = (int(flags) >> 16) & 0xFFFF
            delta = delta - 0x10000 if delta >= 0x8000 else delta  # a signed 16-bit wheel delta
            if delta:
                self.next_slice(1 if delta > 0 else -1)
            return
        if event not in (EVENT_LBUTTONDOWN, EVENT_RBUTTONDOWN):
            return
        ix, iy = to_image(x, y) if to_image is not None else (x, y)
        h, w = self.shape
        if not (-0.5 <= ix <= w - 0.5 and -0.5 <= iy <= h - 0.5):
            return  # the status bar or the margin, not the image
        self.add_click(ix, iy, positive=event == EVENT_LBUTTONDOWN)
