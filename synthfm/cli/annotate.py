"""``synthfm annotate``: open napari with the image and the synthfm widget (``synthfm[viewer]``).

Mouse: click = positive, Control-click or right click = negative (with the ``synthfm prompts`` layer
selected); draw a rectangle in ``synthfm box`` for a box.  The widget's buttons undo, reset, start
a new object, cycle multimask candidates, propagate through the volume and save the label map in
the input's geometry (see :mod:`synthfm.viewer.widget`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from synthfm.cli.options import model_options
from synthfm.errors import UserError


def check_display() -> None:
    """UserError when no window can be opened (Linux without a display, unless Qt is told to run
    off screen with ``QT_QPA_PLATFORM=offscreen``)."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        return
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise UserError("no display: synthfm annotate opens a napari window (set DISPLAY, or run it under xvfb-run); "
                        "use synthfm segment for scripted runs")
    display = os.environ.get("DISPLAY")
    if display and not os.environ.get("WAYLAND_DISPLAY") and not x_display_reachable(display):
        # Qt would abort the process with several lines of xcb errors
        raise UserError(f"cannot connect to the X display {display!r} (no X server there?); set DISPLAY to a "
                        "running one, or run under xvfb-run")


def x_display_reachable(display: str, timeout: float = 2.0) -> bool:
    """Whether an X server accepts connections at ``display`` (``:N``, ``unix:N``, ``host:N``, ``:N.S``).

    Only the socket is tried (no X protocol); an unparseable name counts as reachable, so Qt decides.
    """
    import re
    import socket

    m = re.fullmatch(r"(?:([^:/]*)/)?([^:]*):(\d+)(?:\.\d+)?", display.strip())
    if not m:
        return True
    host, number = m.group(2), int(m.group(3))
    try:
        if host in ("", "unix"):
            path = f"/tmp/.X11-unix/X{number}"
            for address in (path, "\0" + path):  # file socket, then Linux abstract socket
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.settimeout(timeout)
                    try:
                        sock.connect(address)
                        return True
                    except OSError:
                        continue
            return False
        with socket.create_connection((host, 6000 + number), timeout=timeout):
            return True
    except OSError:
        return False


def import_napari():
    """napari, or a UserError naming the extra to install."""
    try:
        import napari
    except ImportError as exc:
        raise UserError(f"synthfm annotate needs napari and a Qt binding: pip install 'synthfm[viewer]' ({exc})") from None
    return napari


def open_viewer(input_path: Path, model_source: str = "default", device: str = "cpu", window: str = "auto",
                slice_index: int | None = None, show: bool = True):
    """A napari viewer with ``input_path`` opened by the synthfm reader and the widget docked;
    returns ``(viewer, widget)``."""
    from synthfm.io.images import check_slice, read_image
    from synthfm.io.intensity import parse_preset
    from synthfm.inference.predictor import Predictor
    from synthfm.viewer import ensure_registered
    from synthfm.viewer.reader import layer_data

    napari = import_napari()
    preset = parse_preset(window)
    loaded = read_image(input_path)
    data, kwargs, _ = layer_data(loaded)
    if slice_index is not None:
        if loaded.kind == "2d":
            raise UserError(f"--slice applies to volumes only; {input_path} is a 2D image")
        check_slice(kwargs["metadata"]["synthfm_image"], slice_index, 0)
    predictor = Predictor.from_checkpoint(model_source, device=device)
    ensure_registered()
    viewer = napari.Viewer(title=f"synthfm annotate - {Path(input_path).name}", show=show)
    viewer.add_image(data, **kwargs)
    _, widget = viewer.window.add_plugin_dock_widget("synthfm")
    widget.predictor = predictor
    widget.attach(viewer.layers[kwargs["name"]])
    if preset != "auto":
        from synthfm.io.intensity import resolve_window

        chosen = resolve_window(widget.session.image.array, preset, loaded.modality)
        widget.session.windows.insert(0, chosen)
        widget.window_choice.insertItem(0, chosen.describe())
        widget.window_choice.setCurrentIndex(0)
        widget._on_window(0)
    if slice_index is not None:
        viewer.dims.set_current_step(0, slice_index)
    return viewer, widget


@click.command("annotate")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@model_options
@click.option("--window", default="auto", show_default=True,
              help="Model intensity preset: auto, none, soft_tissue, lung, bone, brain, liver, mr, us, or LEVEL,WIDTH.")
@click.option("--slice", "slice_index", type=int, default=None, help="First axial slice shown (default: the middle one).")
def annotate(input_path, model, encoder, sam_checkpoint, window, slice_index, device) -> None:
    """Segment objects in INPUT by clicking in napari; save them as a label map from the widget.

    Click = positive, Control-click = negative; a rectangle in the 'synthfm box' layer is a box.
    The widget undoes, resets, starts new objects, propagates through volumes and saves the label
    map (object k = value k) in INPUT's exact geometry.
    """
    from synthfm.devices import resolve_device
    from synthfm.weights import model_spec

    check_display()
    napari = import_napari()
    dev = resolve_device(device)
    viewer, _ = open_viewer(input_path, model_spec(model, encoder, sam_checkpoint), dev, window, slice_index)
    click.echo(f"{input_path}: opened in napari; save the labels with the widget's 'save...' button")
    napari.run()
