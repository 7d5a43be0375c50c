"""Batch form of ``synthfm segment``: several inputs (files, or folders of files) in one call, one model load.

``synthfm segment A.png B.png scans/ --point X,Y --out-dir masks/`` applies the same prompts (and
--slice, --axis, --window, --propagate, ...) to every input and writes, for input ``NAME.ext``,

* ``masks/NAME_mask.png`` for a 2D raster input (PNG/JPEG/TIFF/BMP), ``masks/NAME_mask.nii.gz`` for
  anything else (volumes, DICOM), or ``masks/NAME_mask<--out-ext>`` when given;
* ``masks/NAME_overlay.png`` with ``--overlays``.

A folder INPUT is expanded to the image and volume files directly inside it (sorted by name, not
recursive); a folder with none of those is taken as one DICOM series, as in the single-input form.

Everything that can be checked without reading the inputs is checked before the model is loaded:
the prompts, the output folder, duplicate output names, and that no output exists already (unless
--overwrite).  Each input is then read, checked and segmented on its own: a failure (unreadable
file, click outside that image, a 2D image given --slice, ...) prints one line
``synthfm: error: INPUT: message`` and the next input is processed; the command exits 1 if any
input failed, after a summary line.  Outputs are written atomically, as in the single form.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from synthfm.errors import UserError

EXIT_SOME_FAILED = 1
MASK_SUFFIX = "_mask"
OVERLAY_SUFFIX = "_overlay.png"


@dataclass(frozen=True)
class BatchItem:
    """One input of a batch and the files it will write (overlay None without --overlays)."""

    input_path: Path
    out_path: Path
    overlay_path: Path | None


def expand_inputs(inputs) -> list[Path]:
    """INPUT arguments -> input paths: files as given, folders expanded (see the module docstring).

    Raises UserError for an argument that does not exist, or when nothing is left.
    """
    from synthfm.io.images import RASTER_EXTENSIONS, VOLUME_EXTENSIONS, file_extension

    known = RASTER_EXTENSIONS + VOLUME_EXTENSIONS
    paths: list[Path] = []
    for given in inputs:
        given = Path(given)
        if not given.exists():
            raise UserError(f"INPUT {given} does not exist")
        if given.is_dir():
            inside = sorted(p for p in given.iterdir() if p.is_file() and file_extension(p) in known
                            and not p.name.startswith("."))
            paths.extend(inside if inside else [given])  # no image files: a DICOM series folder
        else:
            paths.append(given)
    if not paths:
        raise UserError("no INPUT to segment")
    return paths


def _stem(path: Path) -> str:
    from synthfm.io.images import file_extension

    ext = file_extension(path)
    return path.name[: len(path.name) - len(ext)] if ext and path.is_file() else path.name


def plan_outputs(paths: list[Path], out_dir: Path, out_ext: str | None, overlays: bool,
                 overwrite: bool) -> list[BatchItem]:
    """The output files of each input; UserError before any work if two inputs would write the same
    file, an output would replace an input, the folder is not usable, or an output exists (no --overwrite)."""
    from synthfm.io.atomic import check_writable_output
    from synthfm.io.images import MASK_RASTER_EXTENSIONS, MASK_VOLUME_EXTENSIONS, RASTER_EXTENSIONS, file_extension

    if out_ext is not None:
        out_ext = out_ext.lower() if out_ext.startswith(".") else "." + out_ext.lower()
        if out_ext not in MASK_RASTER_EXTENSIONS + MASK_VOLUME_EXTENSIONS:
            allowed = " ".join(MASK_RASTER_EXTENSIONS + MASK_VOLUME_EXTENSIONS)
            raise UserError(f"--out-ext must be one of: {allowed} (got {out_ext})")
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out-dir {out_dir} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    items, owners = [], {}
    inputs = {p.resolve() for p in paths}
    for path in paths:
        ext = out_ext or (".png" if path.is_file() and file_extension(path) in RASTER_EXTENSIONS else ".nii.gz")
        stem = _stem(path)
        item = BatchItem(path, out_dir / f"{stem}{MASK_SUFFIX}{ext}",
                         out_dir / f"{stem}{OVERLAY_SUFFIX}" if overlays else None)
        for target in (item.out_path, item.overlay_path):
            if target is None:
                continue
            key = os.path.normcase(str(target.resolve()))
            if key in owners:
                raise UserError(f"{owners[key]} and {path} would both write {target}: rename one, or run them separately")
            if target.resolve() in inputs:
                raise UserError(f"{target} would overwrite an INPUT; choose another --out-dir")
            owners[key] = path
        items.append(item)
    existing = [t for item in items for t in (item.out_path, item.overlay_path) if t is not None and t.exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise UserError(f"{existing[0]} exists{more}; pass --overwrite to replace")
    for item in items:
        check_writable_output(item.out_path, overwrite=True)
    return items


def segment_batch(inputs, out_dir: Path, out_ext: str | None, overlays: bool, *, points, negatives, box,
                  slice_index, axis, window, model, encoder, sam_checkpoint, multimask, allow_untrained, device,
                  overwrite, propagate, stop_area, stop_score) -> int:
    """Run the batch (module docstring); returns the exit code (0, or 1 if any input failed)."""
    from synthfm.cli.segment import _check_prompt_options, _check_trained_outputs, _clicks
    from synthfm.devices import resolve_device
    from synthfm.inference.predictor import Predictor
    from synthfm.io.intensity import parse_preset
    from synthfm.weights import model_spec

    _check_prompt_options(points, box, stop_area)
    preset = parse_preset(window)
    dev = resolve_device(device)
    items = plan_outputs(expand_inputs(inputs), Path(out_dir), out_ext, overlays, overwrite)
    model_source = model_spec(model, encoder, sam_checkpoint)
    if not allow_untrained:
        _check_trained_outputs(model_source, multimask, stop_score)
    coords, labels = _clicks(points, negatives)

    predictor = Predictor.from_checkpoint(model_source, device=dev, allow_untrained=allow_untrained)
    failed = 0
    for item in items:
        try:
            line = _segment_item(item, predictor, preset, coords, labels, box, slice_index, axis, multimask,
                                 propagate, stop_area, stop_score, overwrite)
        except UserError as exc:
            failed += 1
            click.echo(f"synthfm: error: {item.input_path}: {' '.join(str(exc).split())}", err=True)
            continue
        except Exception as exc:  # a bug on one input must not lose the others' results
            if os.environ.get("SYNTHFM_DEBUG", "") not in ("", "0"):
                raise
            failed += 1
            click.echo(f"synthfm: error: {item.input_path}: unexpected {type(exc).__name__}: "
                       f"{' '.join(str(exc).split())} (SYNTHFM_DEBUG=1 shows the traceback)", err=True)
            continue
        click.echo(line)
    done = len(items) - failed
    click.echo(f"segmented {done} of {len(items)} inputs -> {out_dir}" + (f"; {failed} failed" if failed else ""),
               err=bool(failed))
    return EXIT_SOME_FAILED if failed else 0


def _segment_item(item: BatchItem, predictor, preset, coords, labels, box, slice_index, axis, multimask, propagate,
                  stop_area, stop_score, overwrite) -> str:
    """Segment one input exactly as the single-input command does; returns its report line."""
    from synthfm.cli.segment import _load_input, _resolve_window, _write_outputs
    from synthfm.io.images import MASK_VOLUME_EXTENSIONS, file_extension
    from synthfm.prompts import check_prompts_inside
    from synthfm.weights.outputs import score_text

    loaded, image, k, where = _load_input(item.input_path, slice_index, axis)
    if loaded.kind == "3d" and file_extension(item.out_path) not in MASK_VOLUME_EXTENSIONS:
        raise UserError(f"is a volume: its mask must be a volume file (--out-ext {' '.join(MASK_VOLUME_EXTENSIONS)})")
    if propagate and loaded.kind != "3d":
        raise UserError("--propagate needs a volume; this is a 2D image")
    check_prompts_inside(coords, box, image.shape[:2], box_name="--box")  # on float64: huge values fail here
    coords = None if coords is None else coords.astype(np.float32)
    window_obj = _resolve_window(loaded, preset)
    box_arr = None if box is None else np.asarray(box, dtype=np.float32)
    if propagate:
        return _propagated(item, loaded, k, axis, window_obj, predictor, coords, labels, box_arr, multimask,
                           stop_area, stop_score, overwrite)
    predictor.set_image(image, preset=window_obj)
    masks, scores, _ = predictor.predict(point_coords=coords, point_labels=labels, box=box_arr,
                                         multimask_output=multimask)
    best = int(np.argmax(scores))
    _write_outputs(loaded, masks[best], k, axis, item.out_path, item.overlay_path, predictor.image_uint8, coords,
                   labels, box, overwrite)
    chosen = (f"mask {best + 1}/3 (scores {', '.join(f'{s:.3f}' for s in scores)})" if multimask
              else f"score {score_text(float(scores[0]))}")
    return (f"{item.input_path}{where}: window {window_obj.describe()}; {int(masks[best].sum())} pixels, {chosen} "
            f"-> {item.out_path}" + (f" (overlay {item.overlay_path})" if item.overlay_path is not None else ""))


def _propagated(item, loaded, k, axis, window_obj, predictor, coords, labels, box, multimask, stop_area,
                stop_score, overwrite) -> str:
    from synthfm.cli.segment import _commit
    from synthfm.inference.overlays import render_overlay
    from synthfm.inference.propagation import PropagationConfig, VolumeSlices, propagate
    from synthfm.io.images import slice_of

    slices = VolumeSlices(predictor, loaded.array, axis=axis, window=window_obj)
    result = propagate(slices, k, point_coords=coords, point_labels=labels, box=box,
                       config=PropagationConfig(min_area_fraction=stop_area, min_score=stop_score),
                       multimask=multimask)
    overlay = None
    if item.overlay_path is not None:
        slices.set_slice(k)
        overlay = render_overlay(predictor.image_uint8, slice_of(result.mask, k, axis), coords, labels, box)
    _commit(item.out_path, result.mask, loaded, item.overlay_path, overlay, overwrite)
    return (f"{item.input_path} slice {k} ({axis}, of {slices.num_slices}): window {window_obj.describe()}; "
            f"propagated {result.describe()}; {int(result.mask.sum())} voxels -> {item.out_path}")
