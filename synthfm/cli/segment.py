"""``synthfm segment``: click on an image or a volume slice, get a mask file.

Everything that can be checked is checked before the model is loaded or any file written
(prompts, output paths, input file, slice, clicks inside the image, checkpoint); outputs are
written atomically, so a failed run never leaves a half-written file or clobbers an old one.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from synthfm.cli.options import AXIS_NAMES, BOX, POINT, SLICE_CLICK, model_options
from synthfm.errors import UserError

OVERLAY_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


@click.command("segment")
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--point", "points", multiple=True, type=POINT, help="Positive click (x=column, y=row pixels); repeatable.")
@click.option("--negative", "negatives", multiple=True, type=POINT, help="Negative click X,Y; repeatable.")
@click.option("--box", type=BOX, default=None, help="Box prompt X0,Y0,X1,Y1 in pixels.")
@click.option("--slice", "slice_index", type=int, default=None, help="Slice K of a volume: voxel index K along the axis of --axis (clicks are on this slice).")
@click.option("--axis", type=click.Choice(AXIS_NAMES), default="axial", show_default=True,
              help="Plane of the radiological view (README: Volumes); --slice counts along its axis.")
@click.option("--window", default="auto", show_default=True,
              help="Intensity preset: auto, none, soft_tissue, lung, bone, brain, liver, mr, us, or LEVEL,WIDTH.")
@model_options
@click.option("--multimask", is_flag=True,
              help="Ask for SAM's 3 masks and keep the best-scoring one (refused if the checkpoint did not train them).")
@click.option("--allow-untrained", is_flag=True,
              help="Use outputs the checkpoint did not train (--multimask, --stop-score) anyway; for experiments.")
@click.option("--out", "out_path", default=None, type=click.Path(path_type=Path),
              help="Mask file: .png/.bmp/.tif for 2D input, .nii.gz/.nii/.nrrd/.mha (any input).")
@click.option("--out-dir", type=click.Path(path_type=Path), default=None,
              help="Batch: several INPUTs (or folders of them), one model load; writes OUT_DIR/NAME_mask.png "
                   "(2D) or NAME_mask.nii.gz (see synthfm/cli/segment_batch.py).")
@click.option("--out-ext", default=None, help="With --out-dir: mask file type for every input, e.g. .nii.gz or .tif.")
@click.option("--overlays", is_flag=True, help="With --out-dir: also write OUT_DIR/NAME_overlay.png.")
@click.option("--overlay", "overlay_path", type=click.Path(path_type=Path), default=None,
              help="Also write a PNG of the (windowed) image with the mask and clicks drawn.")
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@click.option("--propagate", is_flag=True,
              help="Volumes: segment slice K, then follow the object slice by slice in both directions.")
@click.option("--stop-area", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.1, show_default=True,
              help="--propagate stops where the mask is smaller than this fraction of slice K's mask.")
@click.option("--stop-score", type=float, default=None,
              help="--propagate also stops where the predicted IoU falls below this (off by default; needs a "
                   "checkpoint that trained its IoU head).")
@click.option("--guide", "guides", multiple=True, type=SLICE_CLICK,
              help="--propagate: a positive click X,Y on another slice K that steers the object there (the "
                   "stop rule does not end it before K); repeatable.")
def segment(inputs, points, negatives, box, slice_index, axis, window, model, encoder, sam_checkpoint,
            multimask, allow_untrained, device, out_path, out_dir, out_ext, overlays, overlay_path, overwrite,
            propagate, stop_area, stop_score, guides) -> int | None:
    """Segment one object in INPUT from clicks (a 2D image, or slice --slice of a volume).

    INPUT: PNG/JPEG/TIFF/BMP, DICOM file or series folder, NIfTI, NRRD, MHA/MHD.  Clicks are in
    the pixel coordinates of the image (or of slice K of a volume).  For a volume, OUT is a
    volume mask of the same size and geometry with only slice K filled, or with --propagate
    every slice the object was followed to (it stops where the mask vanishes, no longer overlaps
    the previous slice's, or shrinks below --stop-area of slice K's; see synthfm/inference/propagation.py).

    Batch: several INPUTs (files, or folders of image/volume files) with --out-dir DIR instead of
    --out: one model load, the same prompts on each, DIR/NAME_mask.png (2D) or DIR/NAME_mask.nii.gz;
    an input that fails gets one error line and the others are still done (exit 1 if any failed).
    """
    if out_dir is not None or len(inputs) > 1:
        from synthfm.cli.segment_batch import segment_batch

        if out_dir is None or out_path is not None or overlay_path is not None:
            raise UserError("several INPUTs need --out-dir DIR (and --overlays, not --out/--overlay)")
        if guides:
            raise UserError("--guide clicks belong to one volume; give one INPUT with --out")
        return segment_batch(inputs, out_dir, out_ext, overlays, points=points, negatives=negatives, box=box,
                             slice_index=slice_index, axis=axis, window=window, model=model, encoder=encoder,
                             sam_checkpoint=sam_checkpoint, multimask=multimask, allow_untrained=allow_untrained,
                             device=device, overwrite=overwrite, propagate=propagate, stop_area=stop_area,
                             stop_score=stop_score)
    input_path = inputs[0]
    if out_path is None:
        raise UserError("--out MASK is required (or --out-dir DIR for a batch)")
    if out_ext is not None or overlays:
        raise UserError("--out-ext and --overlays go with --out-dir; with --out, the file name says the type")
    from synthfm.io.atomic import check_writable_output
    from synthfm.io.intensity import parse_preset
    from synthfm.io.images import MASK_RASTER_EXTENSIONS, MASK_VOLUME_EXTENSIONS, file_extension
    from synthfm.devices import resolve_device
    from synthfm.inference.predictor import Predictor
    from synthfm.prompts import check_prompts_inside
    from synthfm.weights import model_spec
    from synthfm.weights.outputs import score_text

    _check_prompt_options(points, box, stop_area)
    if guides and not propagate:
        raise UserError("--guide steers --propagate; add --propagate (or click on slice K with --point)")
    preset = parse_preset(window)
    dev = resolve_device(device)
    out_ext = file_extension(out_path)
    if out_ext not in MASK_RASTER_EXTENSIONS + MASK_VOLUME_EXTENSIONS:
        allowed = " ".join(MASK_RASTER_EXTENSIONS + MASK_VOLUME_EXTENSIONS)
        raise UserError(f"--out must end with one of: {allowed} (got {out_path.name})")
    for given, flag in ((out_path, "--out"), (overlay_path, "--overlay")):
        if given is not None and input_path.exists() and given.resolve() == input_path.resolve():
            raise UserError(f"{flag} would overwrite INPUT ({input_path}); choose another file")
    check_writable_output(out_path, overwrite=overwrite)
    if overlay_path is not None:
        if file_extension(overlay_path) not in OVERLAY_EXTENSIONS:
            raise UserError(f"--overlay must be an image file ({' '.join(OVERLAY_EXTENSIONS)}), got {overlay_path.name}")
        if overlay_path.resolve() == out_path.resolve():
            raise UserError("--overlay and --out must be different files")
        check_writable_output(overlay_path, overwrite=overwrite)
    model_source = model_spec(model, encoder, sam_checkpoint)
    if not allow_untrained:
        _check_trained_outputs(model_source, multimask, stop_score)

    loaded, image, slice_index, where = _load_input(input_path, slice_index, axis)
    if loaded.kind == "3d" and out_ext not in MASK_VOLUME_EXTENSIONS:
        raise UserError(f"INPUT is a volume: --out must be a volume file ({' '.join(MASK_VOLUME_EXTENSIONS)})")
    if propagate and loaded.kind != "3d":
        raise UserError(f"--propagate needs a volume; {input_path} is a 2D image")
    coords, labels = _clicks(points, negatives)
    check_prompts_inside(coords, box, image.shape[:2], box_name="--box")
    coords = None if coords is None else coords.astype(np.float32)

    predictor = Predictor.from_checkpoint(model_source, device=dev, allow_untrained=allow_untrained)
    window_obj = _resolve_window(loaded, preset)
    if propagate:
        steer = _guide_prompts(guides, loaded, slice_index, axis)
        _segment_propagated(loaded, slice_index, axis, window_obj, predictor, coords, labels, box, multimask,
                            stop_area, stop_score, out_path, overlay_path, input_path, overwrite, steer)
        return
    predictor.set_image(image, preset=window_obj)
    masks, scores, _ = predictor.predict(
        point_coords=coords, point_labels=labels,
        box=None if box is None else np.asarray(box, dtype=np.float32),
        multimask_output=multimask,
    )
    best = int(np.argmax(scores))
    mask = masks[best]

    _write_outputs(loaded, mask, slice_index, axis, out_path, overlay_path, predictor.image_uint8, coords, labels, box,
                   overwrite)
    chosen = (f"mask {best + 1}/3 (scores {', '.join(f'{s:.3f}' for s in scores)})" if multimask
              else f"score {score_text(float(scores[0]))}")
    click.echo(
        f"{input_path}{where}: window {window_obj.describe()}; {int(mask.sum())} pixels, {chosen} -> {out_path}"
        + (f" (overlay {overlay_path})" if overlay_path is not None else "")
    )


def _guide_prompts(guides, loaded, slice_index: int, axis: str) -> dict:
    """--guide K:X,Y clicks as propagate()'s guides (slice -> SlicePrompts), each checked against its slice."""
    from synthfm.inference.propagation import SlicePrompts
    from synthfm.io.images import axis_index, slice_of
    from synthfm.prompts import check_prompts_inside

    n = loaded.array.shape[axis_index(axis)]
    by_slice: dict[int, list[tuple[float, float]]] = {}
    for k, x, y in guides:
        if k >= n:
            raise UserError(f"--guide {k}:{x:g},{y:g}: slice {k} is out of range (the volume has {n} {axis} slices, 0..{n - 1})")
        if k == slice_index:
            raise UserError(f"--guide {k}:{x:g},{y:g} is on slice K itself; give that click with --point")
        try:
            check_prompts_inside(np.array([[x, y]]), None, slice_of(loaded, k, axis).shape[:2])
        except UserError as exc:
            raise UserError(f"--guide {k}:{x:g},{y:g}: {exc}") from None
        by_slice.setdefault(k, []).append((x, y))
    return {k: SlicePrompts(np.asarray(c, np.float32), np.ones(len(c), np.int64)) for k, c in by_slice.items()}


def _segment_propagated(loaded, slice_index, axis, window_obj, predictor, coords, labels, box, multimask,
                        stop_area, stop_score, out_path, overlay_path, input_path, overwrite, guides=None) -> None:
    from synthfm.inference.overlays import render_overlay
    from synthfm.io.images import slice_of
    from synthfm.inference.propagation import PropagationConfig, VolumeSlices, propagate

    config = PropagationConfig(min_area_fraction=stop_area, min_score=stop_score)
    slices = VolumeSlices(predictor, loaded.array, axis=axis, window=window_obj)
    result = propagate(slices, slice_index, point_coords=coords, point_labels=labels,
                       box=None if box is None else np.asarray(box, dtype=np.float32), config=config,
                       multimask=multimask, guides=guides)
    overlay = None
    if overlay_path is not None:
        slices.set_slice(slice_index)
        overlay = render_overlay(predictor.image_uint8, slice_of(result.mask, slice_index, axis), coords, labels, box)
    _commit(out_path, result.mask, loaded, overlay_path, overlay, overwrite)
    click.echo(
        f"{input_path} slice {slice_index} ({axis}, of {slices.num_slices}): window {window_obj.describe()}; "
        f"propagated {result.describe()}; {int(result.mask.sum())} voxels -> {out_path}"
        + (f" (overlay of slice {slice_index}: {overlay_path})" if overlay_path is not None else "")
    )


def _check_trained_outputs(model_source, multimask: bool, stop_score: float | None) -> None:
    """Refuse options that read outputs the checkpoint did not train (before loading anything)."""
    from synthfm.weights.outputs import trained_outputs_for_spec

    if not multimask and stop_score is None:
        return
    outputs = trained_outputs_for_spec(model_source)
    hint = "pass --allow-untrained to use them anyway"
    if multimask:
        outputs.require("multimask", "--multimask", "drop --multimask, or " + hint)
        outputs.require("iou_scores", "--multimask (it keeps the best-scoring mask)", "drop --multimask, or " + hint)
    if stop_score is not None:
        outputs.require("iou_scores", "--stop-score", "drop it (--stop-area still applies), or " + hint)


def _load_input(path: Path, slice_index: int | None, axis: str):
    """Read INPUT; for a volume pick slice K.  Returns (LoadedImage, 2D image, K or None, description)."""
    from synthfm.io.images import check_slice, read_image, slice_of
    from synthfm.io.orientation import radiological_view

    loaded = radiological_view(read_image(path))  # the one volume convention (README: --slice, --point)
    if loaded.kind == "2d":
        if slice_index is not None:
            raise UserError(f"--slice applies to volumes only; {path} is a 2D image")
        _check_finite(loaded.array, str(path))
        if "exif_orientation" in loaded.meta:
            click.echo(f"note: {path} has EXIF orientation {loaded.meta['exif_orientation']} (viewers rotate or flip it); "
                       "clicks and the mask are in the stored pixel frame, not the displayed one", err=True)
        return loaded, loaded.array, None, ""
    n = loaded.num_slices(axis)
    if slice_index is None:
        if n != 1:
            raise UserError(f"{path} is a volume: pass --slice K (0..{n - 1} along {axis})")
        slice_index = 0
    check_slice(loaded, slice_index, axis)
    image = slice_of(loaded, slice_index, axis)
    _check_finite(image, f"{path} slice {slice_index} ({axis})")
    return loaded, image, slice_index, f" slice {slice_index} ({axis}, of {n})"


def _check_finite(image: np.ndarray, where: str) -> None:
    if image.dtype.kind == "f" and not np.isfinite(image).any():
        raise UserError(f"{where}: image has no finite pixel value (all NaN or Inf)")


def _clicks(points, negatives) -> tuple[np.ndarray | None, np.ndarray | None]:
    pairs = list(points) + list(negatives)
    if not pairs:
        return None, None
    coords = np.asarray(pairs, dtype=np.float64).reshape(-1, 2)  # float64: 1e308 must not overflow before the check
    labels = np.asarray([1] * len(points) + [0] * len(negatives), dtype=np.int64)
    return coords, labels


def _resolve_window(loaded, preset):
    """Resolve the preset on the whole volume (consistent across slices) or on the 2D image."""
    from synthfm.io.intensity import resolve_window

    return resolve_window(loaded.array, preset, loaded.modality)


def _write_outputs(loaded, mask, slice_index, axis, out_path, overlay_path, image8, coords, labels, box,
                   overwrite: bool = True) -> None:
    from synthfm.inference.overlays import render_overlay
    from synthfm.io.images import embed_slice

    result = embed_slice(loaded.array.shape, slice_index, axis, mask) if loaded.kind == "3d" else mask
    overlay = None if overlay_path is None else render_overlay(image8, mask, coords, labels, box)
    _commit(out_path, result, loaded, overlay_path, overlay, overwrite)


def _commit(out_path, mask, loaded, overlay_path, overlay, overwrite: bool) -> None:
    """Mask and overlay written as one step: both verified before either replaces a file."""
    from synthfm.inference.overlays import write_overlay
    from synthfm.io.atomic import write_together
    from synthfm.io.images import write_mask

    jobs = [(out_path, lambda tmp: write_mask(out_path, mask, like=loaded, into=tmp))]
    if overlay is not None:
        jobs.append((overlay_path, lambda tmp: write_overlay(overlay_path, overlay, into=tmp)))
    write_together(jobs, exclusive=not overwrite)


def _check_prompt_options(points, box, stop_area: float) -> None:
    """UserError unless there is a click or a box and --stop-area is in [0, 1) (single and batch form)."""
    if not points and box is None:
        raise UserError("give at least one positive click (--point X,Y) or a box (--box X0,Y0,X1,Y1)")
    if not 0.0 <= stop_area < 1.0:  # click's FloatRange lets nan through
        raise UserError(f"--stop-area must be a number in [0, 1), got {stop_area}")
