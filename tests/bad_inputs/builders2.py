"""Input builders and machine fakes for the second-round corpus (:mod:`bad_inputs.corpus_round2`)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import zlib
from pathlib import Path

import cv2
import numpy as np

from . import files as F
from . import files2 as G
from .corpus import SENTINEL, Assets, _dataset, _eval, _mask_ok, _seg, _write

_HELD_LOCKS: list[int] = []


def _seg_at(name: str, make, *extra: str, point: str = "20,15", out: str = "mask.png"):
    """segment d/<name> (made by make(path, d)) to d/out/<out> (a sentinel file there first)."""

    def build(d: Path, a: Assets) -> list[str]:
        path = d / name
        made = make(path, d)
        target = d / "out" / out
        if not target.exists():
            target.write_bytes(SENTINEL)
        args = [str(d / "out" / "overlay.png") if x == "OVERLAY" else x for x in extra]
        return _seg(made if isinstance(made, Path) else path, *args, point=point, assets=a, out=target)

    return build


def _ct_slice_seg(*extra: str, out: str):
    """segment slice 2 of a small CT volume (d/ct.nii.gz) to d/out/<out> (a sentinel file there first)."""
    return _seg_at("ct.nii.gz", lambda p, d: F.write_sitk(p, G.ct_volume()), "--slice", "2", *extra, out=out)


def _disc_seg(*extra: str, out: str = "mask.png", point: str = "20,15", model=None):
    def build(d: Path, a: Assets) -> list[str]:
        target = d / "out" / out
        if not target.exists():
            target.write_bytes(SENTINEL)
        return _seg(a.png, *extra, point=point, assets=None if model else a, model=model(d, a) if model else None,
                    out=target)

    return build


def _ckpt(**kw):
    """segment with a variant of the tiny checkpoint (files2.checkpoint_variant keywords)."""
    return _disc_seg(model=lambda d, a: G.checkpoint_variant(a.model, d / "variant.safetensors", **kw))


def _set(key: str, value):
    def change(state):
        t = state[key]
        if value == "int8":
            state[key] = t.to(dtype=__import__("torch").int8)
        elif value == "bool":
            state[key] = t > 0
        else:
            state[key] = t.clone().fill_(value)

    return change


_FIRST_DECODER = "mask_decoder.iou_token.weight"


def _nifti_nan_slice(p: Path, d: Path):
    vol = np.zeros((40, 30, 6), np.float32)
    vol[10:30, 8:22] = 1.0
    vol[..., 2] = np.nan
    F.write_nifti(p, vol)


def _nifti_zooms(zooms):
    def make(p: Path, d: Path):
        import nibabel as nib

        img = nib.Nifti1Image(G.ct_volume((40, 30, 6)).astype(np.int16), np.eye(4))
        img.header.set_zooms(zooms)
        img.header["pixdim"][1:4] = zooms
        nib.save(img, str(p))

    return make


def _sheared(p: Path, d: Path):
    affine = np.eye(4)
    affine[0, 1] = 0.5
    F.write_nifti(p, G.ct_volume((40, 30, 6)), affine)


def _series(truncate: str | None = None, junk: bool = False, **kw):
    def make(p: Path, d: Path):
        paths = G.dicom_series(p, **kw)
        if truncate == "cut":
            paths[1].write_bytes(paths[1].read_bytes()[:400])
        elif truncate == "short":
            paths[2].write_bytes(paths[2].read_bytes()[:-600])
        if junk:
            (p / "notes.dcm").write_text("not dicom\n")

    return make


def _old_run(d: Path, a: Assets, extra_file: str | None = None) -> Path:
    """A (fake) previous training run in d/run: config.json, weights, state, log."""
    from synthfm.synth.recipe import load_recipe, recipe_to_dict
    from synthfm.training.config import config_to_dict, preset_config

    run = d / "run"
    run.mkdir()
    payload = {"config": config_to_dict(preset_config("tiny", out=str(run))), "recipe": recipe_to_dict(load_recipe("synthfm"))}
    (run / "config.json").write_text(json.dumps(payload))
    shutil.copy(a.model, run / "last.safetensors")
    (run / "last_state.pt").write_bytes(b"old state")
    (run / "log.csv").write_text("step,loss\n1,0.5\n")
    if extra_file:
        (run / extra_file).write_text("the user's notes\n")
    return run


def _train_overwrite(*extra: str, extra_file: str | None = None):
    def build(d: Path, a: Assets) -> list[str]:
        run = _old_run(d, a, extra_file)
        args = [str(d / "missing_sam.pth") if x == "OLDSAM" else x for x in extra]
        return ["--preset", "tiny", "--out", str(run), "--overwrite", "--quiet", "--epochs", "1", "--images-per-epoch", "2",
                "--batch-size", "1", "--val-images", "0", *args]

    return build


def _train_fresh(*extra: str):
    return lambda d, a: ["--preset", "tiny", "--out", str(d / "run"), "--quiet", *extra]


def _state_case(**fields):
    def build(d: Path, a: Assets) -> list[str]:
        run = _old_run(d, a)
        G.training_state(run / "last_state.pt", **fields)
        return ["--resume", str(run), "--quiet"]

    return build


def _resume_plain(d: Path, a: Assets) -> list[str]:
    return ["--resume", str(_old_run(d, a)), "--quiet"]


def _hold_lock(mp, d: Path, a: Assets) -> None:
    fd = os.open(d / "run", os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _HELD_LOCKS.append(fd)  # released when the case's folder is gone (closed at exit)


def _env(**values):
    def patch(mp, d: Path, a: Assets) -> None:
        for key, value in values.items():
            if value is None:
                mp.delenv(key, raising=False)
            else:
                mp.setenv(key, value)

    return patch


def _disk_full_cv2(kind: str):
    def patch(mp, d: Path, a: Assets) -> None:
        mp.setattr(cv2, "imwrite", (G.writes_nothing if kind == "empty" else G.writes_half)(cv2.imwrite))

    return patch


def _disk_full_sitk(kind: str):
    def patch(mp, d: Path, a: Assets) -> None:
        import SimpleITK as sitk

        mp.setattr(sitk, "WriteImage", (G.writes_nothing if kind == "empty" else G.writes_half)(sitk.WriteImage, 1))

    return patch


def _fsync_enospc(mp, d: Path, a: Assets) -> None:
    mp.setattr(os, "fsync", G.enospc)


def _oom_at_build(mp, d: Path, a: Assets) -> None:
    import synthfm.training.loop as loop

    def oom(config):
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")

    mp.setattr(loop, "build_training_model", oom)


def _yaml_bomb() -> str:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for k in range(1, 9):
        lines.append(f"a{k}: &a{k} [{', '.join(['*a' + str(k - 1)] * 10)}]")
    lines.append("modules: *a8")
    return "\n".join(lines) + "\n"


def _generate_into(prepare, *extra: str, overwrite: bool = True):
    def build(d: Path, a: Assets) -> list[str]:
        out = d / "synth"
        out.mkdir()
        prepare(out)
        return ["generate", "-n", "2", "--size", "64", "--out", str(out), *(["--overwrite"] if overwrite else []), *extra]

    return build


def _user_file_in_images(out: Path) -> None:
    (out / "images").mkdir()
    (out / "images" / "my_scan.png").write_bytes(F.encode(".png", F.disc()))
    (out / "targets.json").write_text(json.dumps({"samples": []}))


def _images_without_manifest(out: Path) -> None:
    (out / "images").mkdir()
    (out / "images" / "000000.png").write_bytes(F.encode(".png", F.disc()))


def _stale_staging(out: Path) -> None:
    (out / ".synthfm-generate-999999999-abc").mkdir()
    (out / ".synthfm-generate-999999999-abc" / "images").mkdir()


def _generated_ok(d: Path) -> None:
    out = d / "synth"
    assert (out / "targets.json").is_file() and len(list((out / "images").glob("*.png"))) == 2
    assert not list(out.glob(".synthfm-generate-*")), "the killed run's staging folder is gone"


def _eval_keeps_user_png(d: Path, a: Assets) -> list[str]:
    out = d / "eval_out"
    (out / "overlays").mkdir(parents=True)
    (out / "overlays" / "my_figure.png").write_bytes(F.encode(".png", F.disc()))
    argv = _eval(_dataset(d), out, "--overwrite")
    return [x for x in argv if x != "--no-overlays"]


def _eval_user_png_kept(d: Path) -> None:
    assert (d / "eval_out" / "overlays" / "my_figure.png").is_file()
    assert (d / "eval_out" / "summary.json").is_file()


def _eval_fifo_case(d: Path, a: Assets) -> list[str]:
    root = _dataset(d)
    image = root / "imagesTs" / "case00_0000.png"
    image.unlink()
    G.fifo(image)
    return _eval(root, d / "eval_out")


def _exif_ok(d: Path) -> None:
    _mask_ok((48, 64))(d)


def _detached_ok(d: Path) -> None:
    _mask_ok((48, 64))(d)


def _symlink_escape(p: Path, d: Path) -> Path:
    outside = d / "outside.raw"
    outside.write_bytes(G.disc_raw())
    sub = d / "hdr"
    sub.mkdir()
    os.symlink(outside, sub / "link.raw")
    return G.nhdr(sub / "evil.nhdr", "link.raw")


def zlib_bytes(n: int, rng: bool = False) -> bytes:
    data = np.random.default_rng(0).bytes(n) if rng else b"\x01" * n
    return zlib.compress(data)
