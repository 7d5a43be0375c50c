"""Write a folder of synthetic samples: PNG images and label maps, targets.json and a gallery.

Layout of ``DIR``::

    images/000000.png   8-bit grey image (round(255 * image))
    labels/000000.png   16-bit label map (0 = background)
    targets.json        recipe, seed, size, and per sample: module, flavour, all targets with
                        validity, and the valid targets' label ids
    gallery.png         up to 16 samples with the outlines of their valid targets

Everything is written into a hidden temporary folder inside ``DIR`` and moved into place only
when the whole run succeeded, so a failed or interrupted run leaves ``DIR`` as it was.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from synthfm.io.atomic import atomic_write_bytes, new_output_folder
from synthfm.errors import UserError
from synthfm.synth.gallery import MAX_TILES, save_gallery
from synthfm.synth.generator import sample_at
from synthfm.synth.memory import keep_freed_memory
from synthfm.synth.recipe import Recipe, recipe_to_dict
from synthfm.synth.sample import Sample

OUTPUTS = ("images", "labels", "targets.json", "gallery.png")


@dataclass(frozen=True)
class _Job:
    recipe: Recipe
    seed: int
    size: int
    folder: str


def sample_record(index: int, sample: Sample) -> dict:
    """The targets.json entry of one sample."""
    name = f"{index:06d}.png"
    return {
        "index": index,
        "image": f"images/{name}",
        "labels": f"labels/{name}",
        "module": sample.module,
        "flavour": sample.flavour,
        "valid_targets": [list(sample.targets[k].label_ids) for k in sample.valid_targets],
        "targets": [{"label_ids": list(t.label_ids), "valid": t.valid, "reason": t.reason} for t in sample.targets],
    }


def _encode_png(array: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", array)
    if not ok:  # pragma: no cover - cv2 only fails here on unsupported dtypes
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def _write_one(job: _Job, index: int) -> tuple[dict, Sample | None]:
    sample = sample_at(job.recipe, job.seed, index, job.size)
    image8 = np.round(sample.image * 255.0).astype(np.uint8)
    name = f"{index:06d}.png"
    atomic_write_bytes(Path(job.folder, "images", name), _encode_png(image8))
    atomic_write_bytes(Path(job.folder, "labels", name), _encode_png(sample.labels))
    return sample_record(index, sample), (sample if index < MAX_TILES else None)


def _init_worker() -> None:
    # Fresh (spawned) processes: safe to pin OpenCV to one thread, the pool is the parallelism.
    cv2.setNumThreads(1)
    keep_freed_memory()


def _results(job: _Job, n: int, workers: int) -> Iterator[tuple[dict, Sample | None]]:
    if workers <= 1:
        for index in range(n):
            yield _write_one(job, index)
        return
    # "spawn", not fork: a forked child cannot safely touch the parent's OpenCV/torch thread pools.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker) as pool:
        yield from pool.imap(_Call(job), range(n), chunksize=max(1, min(16, n // (4 * workers))))


class _Call:
    """Picklable ``index -> _write_one(job, index)``."""

    def __init__(self, job: _Job) -> None:
        self.job = job

    def __call__(self, index: int) -> tuple[dict, Sample | None]:
        return _write_one(self.job, index)


STAGING_PREFIX = ".synthfm-generate-"


def _stale_staging(out: Path) -> list[Path]:
    """Staging folders left by a killed run (their process no longer exists)."""
    stale = []
    for entry in out.glob(STAGING_PREFIX + "*"):
        pid = entry.name[len(STAGING_PREFIX):].split("-")[0]
        if entry.is_dir() and not (pid.isdigit() and _alive(int(pid))):
            stale.append(entry)
    return stale


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_output_folder(out: Path, overwrite: bool) -> None:
    """Raise UserError unless ``out`` is missing, an empty folder, or ``overwrite`` is set.

    Staging folders of killed runs do not count (they are removed when the run starts).  With
    ``overwrite``, images/ and labels/ may hold only the files the previous run listed in its
    targets.json: replacing them must not delete anything generate did not write.
    """
    if out.exists() and not out.is_dir():
        raise UserError(f"output path exists and is not a folder: {out}")
    if not out.is_dir():
        return
    stale = set(_stale_staging(out))
    if any(e not in stale for e in out.iterdir()) and not overwrite:
        raise UserError(f"output folder is not empty (pass --overwrite to replace its samples): {out}")
    if overwrite:
        _check_only_ours(out)


def _check_only_ours(out: Path) -> None:
    present = [out / d for d in ("images", "labels") if (out / d).exists()]
    if not present:
        return
    listed: set[str] = set()
    try:
        manifest = json.loads((out / "targets.json").read_text())
        for record in manifest["samples"]:
            listed.update((record["image"], record["labels"]))
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"--overwrite refuses to replace {present[0]}: {out} has no readable targets.json, so "
                        "these are not files generate wrote; choose another --out") from None
    for folder in present:
        if not folder.is_dir():
            raise UserError(f"--overwrite refuses to replace {folder}: not a folder generate wrote")
        for entry in folder.iterdir():
            if f"{folder.name}/{entry.name}" not in listed:
                raise UserError(f"--overwrite refuses to replace {folder}: it holds {entry.name}, which generate "
                                "did not write; move it away first")


def write_dataset(
    recipe: Recipe,
    out: str | Path,
    n: int,
    size: int,
    seed: int = 0,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Generate samples 0..n-1 of ``seed`` into ``out`` (layout in the module docstring).

    With ``overwrite``, the previous images/, labels/, targets.json and gallery.png in ``out`` are
    replaced (other files are left alone).  ``progress(k)`` is called after each sample.
    Returns the path of targets.json.
    """
    out = Path(out)
    check_output_folder(out, overwrite)
    # a failed run into a new folder leaves no folder behind (if nobody else wrote into it)
    with new_output_folder(out):
        return _write_into(recipe, out, n, size, seed, workers, progress, overwrite)


def _write_into(recipe: Recipe, out: Path, n: int, size: int, seed: int, workers: int,
                progress: Callable[[int], None] | None, overwrite: bool) -> Path:
    for stale in _stale_staging(out):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=out))
    try:
        (staging / "images").mkdir()
        (staging / "labels").mkdir()
        job = _Job(recipe=recipe, seed=int(seed), size=int(size), folder=str(staging))
        records, tiles = [], []
        for record, sample in _results(job, n, workers):
            records.append(record)
            if sample is not None:
                tiles.append(sample)
            if progress is not None:
                progress(1)
        manifest = {"recipe": recipe_to_dict(recipe), "seed": int(seed), "size": int(size), "n": int(n), "samples": records}
        atomic_write_bytes(staging / "targets.json", json.dumps(manifest, indent=1).encode("utf-8"))
        save_gallery(staging / "gallery.png", tiles, [f"{r['index']}: {r['module']}/{r['flavour']}" for r in records])
        _swap_in(staging, out, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / "targets.json"


def _swap_in(staging: Path, out: Path, overwrite: bool = True) -> None:
    """Move the staged outputs over the old ones (old ones go to the staging folder, then away).

    Without ``overwrite`` nothing is replaced: outputs that appeared meanwhile (another run into
    the same new folder) make this run fail instead of both "succeeding".
    """
    if not overwrite:
        taken = [name for name in OUTPUTS if (out / name).exists() or (out / name).is_symlink()]
        if taken:
            raise UserError(f"{out} received {taken[0]} from another run meanwhile; pass --overwrite to replace it")
    for name in OUTPUTS:
        target = out / name
        if target.exists() or target.is_symlink():
            os.replace(target, staging / f".old-{name}")
        os.replace(staging / name, target)
