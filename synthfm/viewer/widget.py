"""The napari dock widget "synthfm": click to segment an image layer, follow objects through a volume.

    viewer = napari.Viewer()
    viewer.open("scan.nii.gz", plugin="synthfm")
    _, widget = viewer.window.add_plugin_dock_widget("synthfm")
    widget.click((40, 120, 88))            # (z, y, x) data coordinates; (y, x) for a 2D image
    widget.click((40, 130, 95), positive=False)
    widget.propagate()
    widget.new_object()
    widget.save("scan_labels.nii.gz")      # the input's exact geometry and voxel order

Mouse (with the ``synthfm prompts`` Points layer selected): click = positive, Control-click or
right click = negative; a rectangle drawn in the ``synthfm box`` Shapes layer is the object's box on
that slice.  Masks go to the Labels layer ``synthfm masks`` (one label id per object).  Buttons:
undo, reset, new object, next candidate (multimask), propagate, save; the status line shows the
predicted IoU score.  All state lives in :class:`synthfm.viewer.session.AnnotationSession`; this
module only translates Qt/napari events into its actions and shows the result.

Embeddings: when the shown slice changes, that slice is encoded in a worker thread
(``napari.qt.threading``) and cached; a lock keeps the model to one thread at a time, so a click
during encoding just waits for it.  Propagation from the button runs in a worker too; the scripted
methods (``click``, ``propagate``, ...) run synchronously so tests and notebooks see the result.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from qtpy.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QHBoxLayout, QLabel, QProgressBar, QPushButton,
                            QSpinBox, QVBoxLayout, QWidget)

from synthfm.errors import UserError
from synthfm.io.images import LoadedImage
from synthfm.viewer.reader import METADATA_KEY
from synthfm.viewer.session import AnnotationSession, default_output

PROMPTS_LAYER, BOX_LAYER, MASKS_LAYER = "synthfm prompts", "synthfm box", "synthfm masks"
POSITIVE_COLOUR, NEGATIVE_COLOUR = "lime", "red"


def image_of_layer(layer) -> LoadedImage:
    """The :class:`LoadedImage` behind an image layer: the one the synthfm reader attached, else one
    built from the layer (its scale as spacing, translate as origin, identity direction)."""
    loaded = layer.metadata.get(METADATA_KEY)
    if isinstance(loaded, LoadedImage):
        return loaded
    data = np.asarray(layer.data)
    rgb = bool(getattr(layer, "rgb", False))
    spatial = data.ndim - (1 if rgb else 0)
    if spatial not in (2, 3) or (rgb and spatial != 2):
        raise UserError(f"layer {layer.name!r} has shape {data.shape}: synthfm needs a 2D image or a 3D volume")
    scale = tuple(float(s) for s in layer.scale[-spatial:])
    translate = tuple(float(t) for t in layer.translate[-spatial:])
    direction = tuple(float(v) for v in np.eye(spatial).reshape(-1))
    return LoadedImage(data, "3d" if spatial == 3 else "2d", scale[::-1], translate[::-1], direction, None,
                       Path(f"{layer.name}.nii.gz" if spatial == 3 else f"{layer.name}.png"), "napari")


class SynthfmWidget(QWidget):
    """The dock widget (see the module docstring).  ``model``: what
    :meth:`synthfm.inference.predictor.Predictor.from_checkpoint` takes (loaded on first use),
    or give a ready ``predictor``."""

    def __init__(self, napari_viewer, model: str = "default", device: str = "cpu", predictor=None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.model_source, self.device = model, device
        self.predictor = predictor
        self.session: AnnotationSession | None = None
        self.image_layer = None
        self.prompts_layer = self.box_layer = self.masks_layer = None
        self._model_lock = threading.Lock()
        self._syncing = False
        self._workers: list = []
        self._build_controls()
        self.viewer.layers.events.inserted.connect(self._refresh_layer_choice)
        self.viewer.layers.events.removed.connect(self._refresh_layer_choice)
        self.viewer.dims.events.current_step.connect(self._on_step)
        self._refresh_layer_choice()

    # ------------------------------------------------------------------ controls
    def _build_controls(self) -> None:
        layout = QVBoxLayout(self)
        self.layer_choice = QComboBox()
        self.layer_choice.activated.connect(lambda _: self.attach(self._chosen_layer()))
        layout.addWidget(QLabel("image layer"))
        layout.addWidget(self.layer_choice)
        self.window_choice = QComboBox()
        self.window_choice.activated.connect(self._on_window)
        layout.addWidget(QLabel("model intensity window"))
        layout.addWidget(self.window_choice)
        row = QHBoxLayout()
        self.object_box = QSpinBox()
        self.object_box.setRange(1, 65535)
        self.object_box.valueChanged.connect(self._on_object)
        row.addWidget(QLabel("object"))
        row.addWidget(self.object_box)
        layout.addLayout(row)
        self.multimask_box = QCheckBox("multimask")
        self.multimask_box.toggled.connect(self._on_multimask)
        self.refine_box = QCheckBox("feed the last mask back (refine)")
        self.refine_box.toggled.connect(self._on_refine)
        layout.addWidget(self.multimask_box)
        layout.addWidget(self.refine_box)
        buttons = (("undo", self.undo), ("reset", self.reset), ("new object", self.new_object),
                   ("next candidate", self.next_candidate), ("propagate", self._propagate_in_worker),
                   ("save...", self._save_dialog))
        for i in range(0, len(buttons), 2):
            row = QHBoxLayout()
            for text, slot in buttons[i : i + 2]:
                button = QPushButton(text)
                button.clicked.connect(lambda _=False, f=slot: f())
                row.addWidget(button)
            layout.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        layout.addWidget(self.progress)
        self.status = QLabel("open an image (File > Open, or synthfm annotate FILE)")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        layout.addStretch(1)

    def _image_layers(self) -> list:
        from napari.layers import Image

        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def _chosen_layer(self):
        name = self.layer_choice.currentText()
        return next((layer for layer in self._image_layers() if layer.name == name), None)

    def _refresh_layer_choice(self, event=None) -> None:
        names = [layer.name for layer in self._image_layers()]
        current = self.image_layer.name if self.image_layer is not None else None
        self.layer_choice.clear()
        self.layer_choice.addItems(names)
        if current in names:
            self.layer_choice.setCurrentText(current)
        elif names and self.image_layer is None:
            self.attach(self._image_layers()[0])

    # ------------------------------------------------------------------ attaching to an image
    def attach(self, layer) -> None:
        """Segment image layer ``layer`` from now on (a new session: new empty masks)."""
        if layer is None or layer is self.image_layer:
            return
        try:
            image = image_of_layer(layer)
            if self.predictor is None:
                from synthfm.inference.predictor import Predictor

                self._say(f"loading model {self.model_source}...")
                self.predictor = Predictor.from_checkpoint(self.model_source, device=self.device)
            session = AnnotationSession(self.predictor, image, refine=self.refine_box.isChecked(), log=self._say)
        except UserError as exc:
            self._say(" ".join(str(exc).split()))
            return
        self.image_layer, self.session = layer, session
        self.layer_choice.setCurrentText(layer.name)
        self.window_choice.clear()
        self.window_choice.addItems([w.describe() for w in session.windows])
        self._make_layers()
        if session.is_volume:
            self.viewer.dims.set_current_step(0, session.slice_index)
        self._on_step()
        self._say(f"{layer.name}: {'x'.join(map(str, image.spatial_shape))}; click on an object "
                  f"(with {PROMPTS_LAYER!r} selected; Control-click = negative)")

    def _make_layers(self) -> None:
        for name in (PROMPTS_LAYER, BOX_LAYER, MASKS_LAYER):
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
        ndim = 3 if self.session.is_volume else 2
        geometry = {"scale": tuple(self.image_layer.scale[-ndim:]), "translate": tuple(self.image_layer.translate[-ndim:])}
        self.masks_layer = self.viewer.add_labels(self.session.labels, name=MASKS_LAYER, opacity=0.5, **geometry)
        self.box_layer = self.viewer.add_shapes(name=BOX_LAYER, ndim=ndim, edge_color="yellow", face_color="transparent",
                                                edge_width=2, **geometry)
        self.box_layer.events.data.connect(self._on_shapes)
        self.prompts_layer = self.viewer.add_points(name=PROMPTS_LAYER, ndim=ndim, size=6, **geometry)
        self.prompts_layer.mode = "pan_zoom"
        self.prompts_layer.mouse_drag_callbacks.append(self._on_mouse)
        self.viewer.layers.selection.active = self.prompts_layer

    # ------------------------------------------------------------------ scriptable API
    def _slice_and_pixel(self, position) -> tuple[int, float, float]:
        pos = [float(v) for v in position]
        if len(pos) != (3 if self.session.is_volume else 2):
            raise UserError(f"position must be {'(z, y, x)' if self.session.is_volume else '(y, x)'}, got {tuple(position)}")
        z = int(round(pos[0])) if self.session.is_volume else 0
        return z, pos[-1], pos[-2]

    def _require_session(self) -> AnnotationSession:
        if self.session is None:
            raise UserError("no image layer: open an image first")
        return self.session

    def _act(self, action, slice_index: int | None = None) -> None:
        """Run ``action(session)`` under the model lock on ``slice_index`` (default: the shown one)."""
        if self.session is None:
            return
        if slice_index is not None and self.session.is_volume:
            self.viewer.dims.set_current_step(0, slice_index)
        with self._model_lock:
            if slice_index is not None:
                self.session.go_to_slice(slice_index)
            action(self.session)
        self._show()

    def click(self, position, positive: bool = True) -> None:
        """A click at ``position``: (z, y, x) data coordinates for a volume, (y, x) for a 2D image."""
        self._require_session()
        z, x, y = self._slice_and_pixel(position)
        self._act(lambda s: s.add_click(x, y, positive), slice_index=z)

    def box(self, corner, opposite) -> None:
        """A box between two corners (data coordinates as for :meth:`click`; same slice)."""
        self._require_session()
        z, x0, y0 = self._slice_and_pixel(corner)
        _, x1, y1 = self._slice_and_pixel(opposite)
        self._act(lambda s: s.set_box([x0, y0, x1, y1]), slice_index=z)

    def undo(self) -> None:
        self._act(lambda s: s.undo())

    def reset(self) -> None:
        self._act(lambda s: s.reset())

    def next_candidate(self) -> None:
        self._act(lambda s: s.cycle_candidate())

    def new_object(self) -> int:
        """Start the next unused label id; returns it."""
        self._act(lambda s: s.new_object())
        return self._require_session().object_id

    def propagate(self):
        """Follow the current object through the volume from the shown slice's prompts (blocking);
        returns the :class:`~synthfm.inference.propagation.PropagationResult` (None if nothing to do)."""
        session = self._require_session()
        self._act(lambda s: s.propagate())
        return session.last_propagation

    def save(self, path) -> Path:
        """Write the label map to ``path`` in the input's exact geometry; returns the path."""
        session = self._require_session()
        out = session.save(path)
        self._show()
        return out

    def wait(self) -> None:
        """Block until background work (slice encodings, a propagation) is done."""
        from qtpy.QtCore import QCoreApplication, QThreadPool

        QThreadPool.globalInstance().waitForDone()
        QCoreApplication.processEvents()

    # ------------------------------------------------------------------ event handlers
    def _on_mouse(self, layer, event):
        if self.session is None or self.viewer.dims.ndisplay != 2:
            return
        start = np.asarray(event.position, dtype=float)
        dragged = False
        yield
        while event.type == "mouse_move":
            dragged = dragged or float(np.abs(np.asarray(event.position) - start).max()) > 1e-6
            yield
        if dragged:
            return  # a pan, not a click
        data = self.image_layer.world_to_data(start)[-(3 if self.session.is_volume else 2):]
        negative = event.button == 2 or "Control" in {getattr(m, "name", str(m)) for m in event.modifiers}
        try:
            self.click(data, positive=not negative)
        except UserError as exc:
            self._say(" ".join(str(exc).split()))

    def _on_shapes(self, event=None) -> None:
        if self._syncing or self.session is None or getattr(event, "action", "added") not in ("added", "changed"):
            return
        shapes = [np.asarray(v) for v, kind in zip(self.box_layer.data, self.box_layer.shape_type) if kind == "rectangle"]
        if not shapes:
            return
        verts = shapes[-1]
        lo, hi = verts.min(axis=0), verts.max(axis=0)
        try:
            self.box(lo, hi)
        except UserError as exc:
            self._say(" ".join(str(exc).split()))

    def _on_step(self, event=None) -> None:
        if self.session is None or not self.session.is_volume:
            return
        k = int(self.viewer.dims.current_step[0])
        self.session.go_to_slice(k)
        self._encode_in_worker(k)
        self._show()

    def _on_object(self, value: int) -> None:
        if self.session is not None and value != self.session.object_id:
            self._act(lambda s: s.select_object(value))

    def _on_window(self, index: int) -> None:
        if self.session is None:
            return
        self._act(lambda s: s.set_window(index))
        self.image_layer.contrast_limits = (self.session.window.lo, self.session.window.hi)

    def _on_multimask(self, on: bool) -> None:
        if self.session is not None and bool(on) != self.session.multimask:
            self._act(lambda s: s.set_multimask(on))

    def _on_refine(self, on: bool) -> None:
        if self.session is not None:
            self.session.refine = bool(on)

    # ------------------------------------------------------------------ workers
    def _start(self, work, done, busy: str) -> None:
        from napari.qt.threading import create_worker

        worker = create_worker(work)
        self._workers.append(worker)
        self.progress.setRange(0, 0)  # busy
        self._say(busy)

        def finished():
            self._workers.remove(worker)
            if not self._workers:
                self.progress.setRange(0, 1)
                self.progress.setValue(1)

        worker.returned.connect(done)
        worker.errored.connect(lambda exc: self._say(f"failed: {' '.join(str(exc).split())}"))
        worker.finished.connect(finished)
        worker.start()

    def _encode_in_worker(self, k: int) -> None:
        session = self.session

        def work():
            with self._model_lock:
                session.slices.set_slice(k)  # cached: a second visit costs nothing

        self._start(work, lambda _: None, f"encoding slice {k}...")

    def _propagate_in_worker(self) -> None:
        if self.session is None:
            return
        session = self.session

        def work():
            with self._model_lock:
                return session.propagate()

        self._start(work, lambda _: self._show(), "propagating...")

    def _save_dialog(self) -> None:
        if self.session is None:
            return
        suggested = str(default_output(self.session.image))
        path, _ = QFileDialog.getSaveFileName(self, "Save the label map", suggested)
        if path:
            try:
                self.save(path)
            except (UserError, OSError) as exc:
                self._say(f"could not save: {' '.join(str(exc).split())}")

    # ------------------------------------------------------------------ display
    def _say(self, line: str) -> None:
        self.status.setText(line)

    def _show(self) -> None:
        """Bring the layers and controls in line with the session."""
        s = self.session
        if s is None:
            return
        self.masks_layer.refresh()
        self._syncing = True
        try:
            keys = [(k, c) for (oid, k), clicks in s.clicks.items() if oid == s.object_id for c in clicks]
            if s.is_volume:
                points = [[k, c.y, c.x] for k, c in keys]
            else:
                points = [[c.y, c.x] for _, c in keys]
            ndim = 3 if s.is_volume else 2
            self.prompts_layer.data = np.asarray(points, dtype=float).reshape(-1, ndim)
            self.prompts_layer.face_color = [POSITIVE_COLOUR if c.positive else NEGATIVE_COLOUR for _, c in keys] or "white"
            rects = []
            for (oid, k), (x0, y0, x1, y1) in s.boxes.items():
                if oid == s.object_id:
                    corners = [[y0, x0], [y0, x1], [y1, x1], [y1, x0]]
                    rects.append([[k, *c] for c in corners] if s.is_volume else corners)
            self.box_layer.data = [np.asarray(r, dtype=float) for r in rects]
            if rects:
                self.box_layer.shape_type = ["rectangle"] * len(rects)
            self.object_box.setValue(s.object_id)
            self.multimask_box.setChecked(s.multimask)
        finally:
            self._syncing = False
        score = "" if s.score is None else f"  [score {s.score:.2f}]"
        self._say(s.message + score)
