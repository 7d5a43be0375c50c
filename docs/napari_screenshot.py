"""Take the README's napari screenshot from a real run: open a volume with the synthfm reader, one
click on the labelled object's largest slice, propagate, screenshot.

    xvfb-run -a env QT_QPA_PLATFORM=offscreen .venv/bin/python docs/napari_screenshot.py \\
        IMAGE.nii.gz LABELS.nii.gz docs/napari_plugin.png

The click is the deepest interior point of the label on its largest axial slice (the same rule
as benchmarks/eval_propagation.py); prints the 3D Dice of the propagated mask against the label.
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import synthfm.viewer as plugin  # noqa: E402  (before napari: see synthfm/viewer/__init__.py)


def main(image_path: str, label_path: str, out: str) -> int:
    import napari
    from scipy.ndimage import distance_transform_edt

    from synthfm.io.images import read_image
    from synthfm.io.orientation import radiological_view

    plugin.ensure_registered()
    truth = radiological_view(read_image(Path(label_path))).array > 0
    k = int(np.argmax(truth.reshape(truth.shape[0], -1).sum(axis=1)))
    dist = distance_transform_edt(truth[k])
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    viewer = napari.Viewer(show=False)
    viewer.window._qt_window.resize(1100, 700)
    viewer.open(image_path, plugin="synthfm")
    _, widget = viewer.window.add_plugin_dock_widget("synthfm")
    widget.click((k, y, x))
    widget.propagate()
    widget.wait()
    mask = viewer.layers["synthfm masks"].data == 1
    dice = 2 * (mask & truth).sum() / max(1, mask.sum() + truth.sum())
    print(f"click (z, y, x) = ({k}, {y}, {x}); {widget.session.message}; 3D Dice {dice:.3f}")
    viewer.dims.set_current_step(0, k)
    viewer.screenshot(out, canvas_only=False, size=None)
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
