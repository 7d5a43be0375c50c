"""``synthfm annotate``: click to segment in an OpenCV window; save a label map in the input's geometry.

Keys: left click = positive, right click = negative; ``u`` undo, ``r`` reset the object on this
slice, ``n``/``p`` (or the mouse wheel, arrow and page keys) next/previous slice, ``w`` cycle
intensity windows, ``m`` toggle multimask, ``c`` next multimask candidate, ``1``-``9`` pick an
object, ``tab`` start a new object, ``s`` save, ``q``/Esc quit (asks first with unsaved changes),
``y`` confirm a question, ``h`` show the keys.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from synthfm.cli.options import AXIS_NAMES, model_options
from synthfm.errors import UserError

# Mask format for each input format (lossless raster for 2D, the same family for volumes).
_DEFAULT_MASK_EXTENSION = {
    "PNG": ".png", "JPEG": ".png", "TIFF": ".tif", "BMP": ".png", "DICOM": ".png",
    "DICOM series": ".nii.gz", "NIfTI": ".nii.gz", "NRRD": ".nrrd", "MetaImage": ".mha",
}


def default_output(loaded) -> Path:
    """``<input name>_labels<ext>`` next to the input (ext from :data:`_DEFAULT_MASK_EXTENSION`)."""
    from synthfm.io.images import file_extension

    path = Path(loaded.path)
    ext = _DEFAULT_MASK_EXTENSION.get(loaded.format, ".png" if loaded.kind == "2d" else ".nii.gz")
    if loaded.kind == "2d" and loaded.format in ("NIfTI", "NRRD", "MetaImage"):
        ext = file_extension(path)  # a 2D image stored as a volume file keeps its format
    stem = path.name[: -len(file_extension(path))] if file_extension(path) else path.name
    return path.parent / f"{stem}_labels{ext}"


def check_display() -> None:
    """UserError when no window can be opened (Linux without an X or Wayland display)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise UserError("no display: synthfm annotate opens a window (set DISPLAY, or run it under xvfb-run); "
                        "use synthfm segment for scripted runs")


@click.command("annotate")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--out", "out_path", type=click.Path(path_type=Path), default=None,
              help="Label map to write with 's' (default: INPUT_labels.png/.nii.gz/... next to INPUT).")
@model_options
@click.option("--window", default="auto", show_default=True,
              help="Initial intensity preset: auto, none, soft_tissue, lung, bone, brain, liver, mr, us, or LEVEL,WIDTH.")
@click.option("--axis", type=click.Choice(AXIS_NAMES), default="axial", show_default=True,
              help="Plane of the radiological view (README: Volumes).")
@click.option("--slice", "slice_index", type=int, default=None, help="First slice shown (default: the middle one).")
@click.option("--refine", is_flag=True, help="Feed the previous mask's logits back with each click (SAM's demo).")
@click.option("--overwrite", is_flag=True, help="Let 's' replace an existing --out file without asking.")
def annotate(input_path, out_path, model, encoder, sam_checkpoint, window, axis, slice_index, refine, overwrite,
             device) -> None:
    """Segment objects in INPUT by clicking in a window; save them as a label map.

    Left click adds a positive click, right click a negative one; the mask follows each click.
    u undo, r reset, n/p or wheel: slice, w window, m multimask, c candidate, 1-9 or tab: object,
    s save, q quit.  The saved file is a label map (object k = value k) in INPUT's geometry.
    """
    from synthfm.annotator.logic import Annotator
    from synthfm.io.atomic import check_writable_output
    from synthfm.io.intensity import parse_preset
    from synthfm.io.images import MASK_RASTER_EXTENSIONS, MASK_VOLUME_EXTENSIONS, check_slice, file_extension, read_image
    from synthfm.devices import resolve_device
    from synthfm.inference.predictor import Predictor
    from synthfm.weights import model_spec

    from synthfm.io.orientation import radiological_view

    check_display()
    preset = parse_preset(window)
    dev = resolve_device(device)
    model_source = model_spec(model, encoder, sam_checkpoint)
    loaded = radiological_view(read_image(input_path))
    if loaded.kind == "2d" and slice_index is not None:
        raise UserError(f"--slice applies to volumes only; {input_path} is a 2D image")
    if slice_index is not None:
        check_slice(loaded, slice_index, axis)
    out = out_path or default_output(loaded)
    ext = file_extension(out)
    allowed = MASK_VOLUME_EXTENSIONS if loaded.kind == "3d" else MASK_RASTER_EXTENSIONS + MASK_VOLUME_EXTENSIONS
    if ext not in allowed:
        raise UserError(f"--out must end with one of: {' '.join(allowed)} (got {out.name})")
    if input_path.exists() and out.resolve() == input_path.resolve():
        raise UserError(f"--out would overwrite INPUT ({input_path}); choose another file")
    check_writable_output(out, overwrite=True)  # an existing file is confirmed in the window

    predictor = Predictor.from_checkpoint(model_source, device=dev)
    annotator = Annotator(predictor, loaded, out, axis=axis, window=preset, refine=refine, overwrite=overwrite,
                          start_slice=slice_index, log=click.echo)
    click.echo(f"{input_path}: {'x'.join(map(str, loaded.spatial_shape))} {loaded.format}; saving to {out} with 's'")
    from synthfm.annotator.window import run_window

    run_window(annotator, title=f"synthfm annotate - {Path(input_path).name}")
    if annotator.dirty:
        click.echo("quit without saving the last changes")
