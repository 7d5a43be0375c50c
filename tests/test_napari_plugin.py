"""The napari plugin end to end: reader, the "synthfm" widget's scripted API, propagation, saving.

The widget runs on a headless Qt (``QT_QPA_PLATFORM=offscreen``) with napari's ``ViewerModel``
(layers and dims, no OpenGL canvas), with the shipped default model on a generated volume whose
object is known.  The full ``napari.Viewer`` (``add_plugin_dock_widget("synthfm")``, a screenshot)
needs an OpenGL context: it runs in a subprocess under ``xvfb-run`` (offscreen Qt, GLX on Xvfb) where
that is installed (``apt-get install xvfb``).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
napari = pytest.importorskip("napari")

REPO = Path(__file__).resolve().parents[1]
SPACING, ORIGIN = (0.8, 0.8, 2.5), (10.0, -20.0, 5.0)


def _dice(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * (a & b).sum() / max(1, a.sum() + b.sum())


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    """A CT-like (24, 64, 64) volume with one bright ellipsoid; (path, object mask in file order)."""
    zz, yy, xx = np.mgrid[:24, :64, :64]
    obj = ((zz - 12) / 8.0) ** 2 + ((yy - 30) / 14.0) ** 2 + ((xx - 34) / 11.0) ** 2 <= 1
    rng = np.random.default_rng(0)
    vol = (np.where(obj, 60, -80) + rng.normal(0, 8, obj.shape)).astype(np.int16)
    img = sitk.GetImageFromArray(vol)
    img.SetSpacing(SPACING)
    img.SetOrigin(ORIGIN)
    path = tmp_path_factory.mktemp("napari") / "vol.nii.gz"
    sitk.WriteImage(img, str(path))
    return path, obj


@pytest.fixture(scope="module")
def qapp():
    from qtpy.QtWidgets import QApplication

    return QApplication.instance() or QApplication([])


def test_reader_gives_scale_and_contrast(volume):
    from synthfm.viewer.reader import METADATA_KEY, get_reader

    path, obj = volume
    assert get_reader(str(path.with_suffix(".xyz"))) is None
    data, kwargs, kind = get_reader(str(path))(str(path))[0]
    assert kind == "image" and data.shape == obj.shape
    np.testing.assert_allclose(kwargs["scale"], SPACING[::-1], rtol=1e-6)
    lo, hi = kwargs["contrast_limits"]
    assert lo < 0 < 60 <= hi + 1e-6  # a CT window that shows the object
    assert kwargs["metadata"][METADATA_KEY].path == path



def _open_in_widget(path):
    """(viewer model, synthfm widget, the reader's layer kwargs) with the volume at ``path`` opened."""
    from napari.components import ViewerModel

    from synthfm.viewer.reader import read_layers
    from synthfm.viewer.widget import SynthfmWidget

    viewer = ViewerModel()
    data, kwargs, _ = read_layers(str(path))[0]
    viewer.add_image(data, **kwargs)
    return viewer, SynthfmWidget(viewer), kwargs

def test_widget_click_propagate_save(volume, qapp, tmp_path, one_torch_thread):
    from synthfm.viewer.widget import MASKS_LAYER

    path, obj = volume
    viewer, widget, kwargs = _open_in_widget(path)
    widget.wait()
    assert widget.session is not None and MASKS_LAYER in viewer.layers
    masks = viewer.layers[MASKS_LAYER]
    np.testing.assert_allclose(masks.scale, SPACING[::-1], rtol=1e-6)

    widget.click((12, 30, 34))
    assert viewer.dims.current_step[0] == 12
    assert _dice(masks.data[12] == 1, obj[12]) > 0.8, widget.session.message
    assert widget.session.score is not None and 0.0 <= widget.session.score <= 1.5
    before = masks.data.copy()
    widget.click((12, 5, 5), positive=False)  # a negative click on background changes little
    assert _dice(masks.data[12] == 1, before[12] == 1) > 0.9
    widget.undo()
    np.testing.assert_array_equal(masks.data, before)

    result = widget.propagate()
    assert result is not None and len(result.records) > 10
    assert _dice(masks.data == 1, obj) > 0.5
    first, last = result.slice_range
    assert first <= 6 and last >= 18  # the object spans slices 5..19

    widget.click((18, 30, 34))  # a steering click on another slice of the same object
    after_click = masks.data.copy()
    viewer.dims.set_current_step(0, 12)
    steered = widget.propagate()
    assert steered.records[18].clicks == 1 and steered.slice_range[0] <= first and steered.slice_range[1] >= 18
    assert _dice(masks.data[18] == 1, obj[18]) > 0.7
    widget.undo()  # takes back the second propagation; the steering click stays
    np.testing.assert_array_equal(masks.data, after_click)

    assert widget.new_object() == 2
    widget.click((12, 52, 8))  # background: whatever comes back is object 2, never over object 1
    assert not ((masks.data == 2) & (before == 1)).any()
    widget.reset()
    assert not (masks.data == 2).any()

    out = widget.save(tmp_path / "labels.nii.gz")
    written = sitk.ReadImage(str(out))
    assert written.GetSize() == obj.shape[::-1]
    np.testing.assert_allclose(written.GetSpacing(), SPACING, rtol=1e-6)
    np.testing.assert_allclose(written.GetOrigin(), ORIGIN, atol=1e-6)
    np.testing.assert_allclose(written.GetDirection(), np.eye(3).reshape(-1), atol=1e-9)
    saved = sitk.GetArrayFromImage(written)
    view = kwargs["metadata"]["synthfm_image"].view
    np.testing.assert_array_equal(saved, view.to_file(masks.data))


def test_box_prompt(volume, qapp, one_torch_thread):
    from synthfm.viewer.widget import MASKS_LAYER

    path, obj = volume
    viewer, widget, kwargs = _open_in_widget(path)
    widget.box((12, 14, 21), (12, 46, 47))
    assert _dice(viewer.layers[MASKS_LAYER].data[12] == 1, obj[12]) > 0.7, widget.session.message


@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="the full napari window needs an OpenGL display: xvfb-run")
def test_full_viewer_under_xvfb(volume, tmp_path):
    """``add_plugin_dock_widget("synthfm")`` in a real napari.Viewer, a click, and a screenshot."""
    script = tmp_path / "run.py"
    shot = tmp_path / "shot.png"
    script.write_text(f"""
import numpy as np
import synthfm.viewer as plugin
plugin.ensure_registered()
import napari
viewer = napari.Viewer(show=False)
viewer.open({str(volume[0])!r}, plugin="synthfm")
_, widget = viewer.window.add_plugin_dock_widget("synthfm")
widget.click((12, 30, 34))
widget.wait()
assert (viewer.layers["synthfm masks"].data[12] == 1).sum() > 300, widget.session.message
viewer.screenshot({str(shot)!r}, canvas_only=False)
viewer.close()
""")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env["QT_QPA_PLATFORM"] = "offscreen"  # Qt's offscreen platform draws with GLX on the Xvfb display
    done = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", sys.executable, str(script)],
                          capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    import cv2

    image = cv2.imread(str(shot))
    assert image is not None and image.shape[0] > 100 and image.std() > 5


class _MouseEvent:
    """What napari passes to a layer's mouse_drag_callbacks: world position, type, modifiers, button."""

    def __init__(self, position, modifiers=(), button=1):
        self.position, self.modifiers, self.button, self.type = np.asarray(position, float), set(modifiers), button, "mouse_press"


def _press_release(widget, event, drag_to=None):
    gen = widget._on_mouse(widget.prompts_layer, event)
    next(gen)
    if drag_to is not None:
        event.type, event.position = "mouse_move", np.asarray(drag_to, float)
        next(gen)
    event.type = "mouse_release"
    with pytest.raises(StopIteration):
        next(gen)


def test_mouse_clicks_and_drawn_box(volume, qapp, one_torch_thread):
    """Click = positive, Control-click = negative, a drag is a pan; a drawn rectangle is the box."""

    path, obj = volume
    viewer, widget, kwargs = _open_in_widget(path)
    world = lambda z, y, x: (z * SPACING[2], y * SPACING[1], x * SPACING[0])  # noqa: E731
    viewer.dims.set_current_step(0, 12)
    _press_release(widget, _MouseEvent(world(12, 30, 34)))
    _press_release(widget, _MouseEvent(world(12, 5, 5), modifiers=["Control"]))
    _press_release(widget, _MouseEvent(world(12, 40, 40)), drag_to=world(12, 50, 50))
    clicks = widget.session.clicks[(1, 12)]
    assert [c.positive for c in clicks] == [True, False]
    np.testing.assert_allclose([clicks[0].x, clicks[0].y], [34, 30], atol=1e-4)
    assert len(widget.prompts_layer.data) == 2
    widget.new_object()
    # on slice 10: object 1 fills the ellipse on slice 12, and a new object never paints over another
    viewer.dims.set_current_step(0, 10)
    widget.box_layer.add_rectangles(np.array([[10, 17, 24], [10, 17, 44], [10, 43, 44], [10, 43, 24]], float))
    np.testing.assert_allclose(widget.session.boxes[(2, 10)], [24, 17, 44, 43])
    assert (widget.masks_layer.data[10] == 2).sum() > 0
