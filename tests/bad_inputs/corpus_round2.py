"""Second-round corpus (issue 18): full disks, files the user did not name, silent wrong results,
unbounded work, one-line refusals of the machine's own errors, races and smaller defects.

Same contract and runner as :mod:`bad_inputs.corpus` (``tests/test_hardening_round2.py``); cases
with ``patch`` fake the machine in-process (a disk that fills up, a stale environment, a held lock).
"""

from __future__ import annotations

import errno
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
from .corpus import SENTINEL, Assets, Case, _dataset, _eval, _generate_recipe, _mask_ok, _recipe, _seg, _write

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


def _png(d_name: str = "in.png"):
    return lambda p, d: _write(p, F.encode(".png", F.disc()))


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


def _volume_file(writer):
    def make(p: Path, d: Path):
        writer(p)

    return make


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


def _cases() -> tuple[Case, ...]:
    C = Case
    seg_png = _seg_at
    return (
        # --- 1. a full disk: the writer claims success, the file is empty or cut; the old output survives
        C("disk_full_png_empty", "segment", "full disk: cv2.imwrite writes 0 bytes and returns True", _disc_seg(),
          r"could not write .*mask\.png: wrote an empty file \(is the disk full\?\)", patch=_disk_full_cv2("empty")),
        C("disk_full_png_half", "segment", "full disk: PNG cut in half, no error reported", _disc_seg(),
          r"mask\.png: the PNG has no end chunk \(truncated\)", patch=_disk_full_cv2("half")),
        C("disk_full_tif_empty", "segment", "full disk: .tif mask written as 0 bytes", _disc_seg(out="mask.tif"),
          r"mask\.tif: wrote an empty file", patch=_disk_full_cv2("empty")),
        C("disk_full_nii_gz_empty", "segment", "full disk: SimpleITK writes a 0-byte .nii.gz",
          _seg_at("ct.nii.gz", lambda p, d: F.write_sitk(p, G.ct_volume()), "--slice", "2", out="mask.nii.gz"),
          r"mask\.nii\.gz: wrote an empty file", patch=_disk_full_sitk("empty")),
        C("disk_full_nii_gz_half", "segment", "full disk: .nii.gz cut in half",
          _seg_at("ct.nii.gz", lambda p, d: F.write_sitk(p, G.ct_volume()), "--slice", "2", out="mask.nii.gz"),
          r"mask\.nii\.gz: the gzip stream is truncated", patch=_disk_full_sitk("half")),
        C("disk_full_nii_half", "segment", "full disk: uncompressed .nii cut in half",
          _seg_at("ct.nii.gz", lambda p, d: F.write_sitk(p, G.ct_volume()), "--slice", "2", out="mask.nii"),
          r"mask\.nii: (the NIfTI file holds \d+ of \d+ bytes|the NIfTI header cannot be read back)",
          patch=_disk_full_sitk("half")),
        C("disk_full_nrrd_empty", "segment", "full disk: 0-byte .nrrd",
          _seg_at("ct.nii.gz", lambda p, d: F.write_sitk(p, G.ct_volume()), "--slice", "2", out="mask.nrrd"),
          r"mask\.nrrd: wrote an empty file", patch=_disk_full_sitk("empty")),
        C("disk_full_nrrd_half", "segment", "full disk: .nrrd cut in half",
          _seg_at("ct.nii.gz", lambda p, d: F.write_sitk(p, G.ct_volume()), "--slice", "2", out="mask.nrrd"),
          r"mask\.nrrd: the image cannot be read back", patch=_disk_full_sitk("half")),
        C("disk_full_mha_half", "segment", "full disk: .mha cut in half",
          _seg_at("ct.nii.gz", lambda p, d: F.write_sitk(p, G.ct_volume()), "--slice", "2", out="mask.mha"),
          r"mask\.mha: the image cannot be read back", patch=_disk_full_sitk("half")),
        C("disk_full_overlay", "segment", "full disk while the overlay is written: the mask is not replaced either",
          _seg_at("ct.nii.gz", lambda p, d: F.write_sitk(p, G.ct_volume()), "--slice", "2", "--overlay", "OVERLAY",
                  out="mask.nii.gz"),
          r"overlay\.png: wrote an empty file", patch=_disk_full_cv2("empty")),
        C("disk_full_fsync_segment", "segment", "fsync reports ENOSPC while the mask is written", _disc_seg(),
          r"No space left on device.*previous outputs were kept", patch=_fsync_enospc),
        C("disk_full_generate", "generate", "generate on a full disk (fsync ENOSPC)",
          lambda d, a: ["generate", "-n", "2", "--size", "64", "--out", str(d / "synth")],
          r"No space left on device", patch=_fsync_enospc),
        C("disk_full_evaluate", "evaluate", "evaluate.py on a full disk (fsync ENOSPC)",
          lambda d, a: _eval(_dataset(d), d / "eval_out"), r"No space left on device", patch=_fsync_enospc),
        C("disk_full_train", "train", "train.py on a full disk (fsync ENOSPC): the new run folder is removed",
          _train_fresh("--epochs", "1", "--images-per-epoch", "2", "--batch-size", "1", "--val-images", "0"),
          r"No space left on device", patch=_fsync_enospc),
        # --- 2. train/generate/evaluate --overwrite lose nothing
        C("train_overwrite_bad_sam", "train", "--overwrite with a bad SAM file: refused before the old run is touched",
          _train_overwrite("--encoder", "vit_b", "--sam-checkpoint", "OLDSAM"),
          r"SAM checkpoint file not found: .*missing_sam\.pth"),
        C("train_overwrite_random_sam", "train", "--overwrite with random bytes as SAM file",
          lambda d, a: _train_overwrite("--encoder", "vit_b", "--sam-checkpoint",
                                        str(_write(d / "sam.pth", np.random.default_rng(3).bytes(256))))(d, a),
          r"--sam-checkpoint .*sam\.pth is not a PyTorch \.pth file"),
        C("train_overwrite_oom", "train", "--overwrite, then out of memory while building: the old run comes back",
          _train_overwrite(), r"out of memory", patch=_oom_at_build),
        C("train_overwrite_user_file", "train", "--overwrite of a run folder that also holds a user's file",
          _train_overwrite(extra_file="notes.txt"), r"--overwrite refuses to clear .*notes\.txt"),
        C("train_overwrite_bad_init", "train", "--overwrite with --init of random bytes",
          lambda d, a: _train_overwrite("--init", str(_write(d / "init.safetensors", b"\x00" * 64)))(d, a),
          r"init\.safetensors is not a safetensors checkpoint"),
        C("generate_overwrite_user_file", "generate", "generate --overwrite where images/ holds a user's file",
          _generate_into(_user_file_in_images), r"--overwrite refuses to replace .*images: it holds my_scan\.png"),
        C("generate_overwrite_no_manifest", "generate", "generate --overwrite of images/ without targets.json",
          _generate_into(_images_without_manifest), r"--overwrite refuses to replace .*no readable targets\.json"),
        C("generate_after_killed_run", "generate", "rerun after a killed generate left its staging folder (accepted)",
          _generate_into(_stale_staging, overwrite=False), None, _generated_ok),
        C("evaluate_overwrite_keeps_user_png", "evaluate", "evaluate --overwrite keeps a user's PNG in overlays/ (accepted)",
          _eval_keeps_user_png, None, _eval_user_png_kept),
        # --- 3. files the user did not name
        C("nrrd_data_file_absolute", "segment", "detached NRRD header: data file /etc/passwd",
          _seg_at("evil.nhdr", lambda p, d: G.nhdr(p, "/etc/passwd")),
          r"evil\.nhdr: its data file '/etc/passwd' is outside the header's folder", in_subprocess=True),
        C("nrrd_data_file_dotdot", "segment", "detached NRRD: data file ../secret.raw",
          _seg_at("evil.nhdr", lambda p, d: G.nhdr(p, "../secret.raw")), r"its data file '\.\./secret\.raw' is outside"),
        C("nrrd_data_file_list", "segment", "detached NRRD: data file LIST naming /etc/hostname",
          _seg_at("evil.nhdr", lambda p, d: p.write_text("NRRD0004\ntype: uint8\ndimension: 3\nsizes: 64 48 1\n"
                                                         "encoding: raw\ndata file: LIST\n/etc/hostname\n")),
          r"its data file '/etc/hostname' is outside"),
        C("nrrd_data_file_pattern", "segment", "detached NRRD: data file pattern /tmp/x%03d.raw",
          _seg_at("evil.nhdr", lambda p, d: p.write_text("NRRD0004\ntype: uint8\ndimension: 3\nsizes: 64 48 2\n"
                                                         "encoding: raw\ndata file: /tmp/x%03d.raw 1 2 1\n\n")),
          r"its data file '/tmp/x%03d\.raw' is outside"),
        C("nrrd_data_file_symlink_out", "segment", "detached NRRD: data file is a symlink leading out of the folder",
          _seg_at("unused", _symlink_escape), r"evil\.nhdr: its data file 'link\.raw' leads outside the header's folder"),
        C("nrrd_inline_header_data_file", "segment", "a .nrrd (not .nhdr) whose header names /etc/passwd",
          _seg_at("evil.nrrd", lambda p, d: G.nhdr(p, "/etc/passwd")), r"evil\.nrrd: its data file '/etc/passwd'"),
        C("nrrd_data_file_fifo", "segment", "detached NRRD whose data file is a FIFO next to it",
          _seg_at("f.nhdr", lambda p, d: (G.fifo(d / "data.raw"), G.nhdr(p, "data.raw"))[1]),
          r"data\.raw: the data file named in the header is a FIFO"),
        C("nrrd_detached_ok", "segment", "detached NRRD with its data next to it (accepted)",
          _seg_at("ok.nhdr", lambda p, d: G.nhdr(p, "ok.raw", raw=G.disc_raw())), None, _detached_ok),
        C("mhd_data_file_absolute", "segment", "MetaImage header: ElementDataFile /etc/passwd",
          _seg_at("evil.mhd", lambda p, d: G.mhd(p, "/etc/passwd")), r"evil\.mhd: its data file '/etc/passwd' is outside"),
        C("mhd_data_file_dotdot", "segment", "MetaImage: ElementDataFile ../../etc/passwd",
          _seg_at("evil.mhd", lambda p, d: G.mhd(p, "../../etc/passwd")), r"its data file '\.\./\.\./etc/passwd' is outside"),
        C("mhd_data_file_list", "segment", "MetaImage: ElementDataFile LIST with an absolute name",
          _seg_at("evil.mhd", lambda p, d: p.write_text("ObjectType = Image\nNDims = 3\nDimSize = 64 48 1\n"
                                                        "ElementType = MET_UCHAR\nElementDataFile = LIST\n/etc/hostname\n")),
          r"its data file '/etc/hostname' is outside"),
        C("mha_data_file_absolute", "segment", "a .mha whose ElementDataFile is /etc/passwd",
          _seg_at("evil.mha", lambda p, d: G.mhd(p, "/etc/passwd")), r"evil\.mha: its data file '/etc/passwd'"),
        C("mhd_detached_ok", "segment", "MetaImage with its data next to it (accepted)",
          _seg_at("ok.mhd", lambda p, d: G.mhd(p, "ok.raw", raw=G.disc_raw())), None, _detached_ok),
        # --- 4. silent wrong results
        C("mha_compressed_garbage", "segment", "compressed MHA whose data are random bytes",
          _seg_at("g.mha", lambda p, d: G.mha_compressed(p, np.random.default_rng(0).bytes(500)), "--slice", "2",
                  out="mask.nii.gz"), r"g\.mha: corrupt compressed pixel data"),
        C("mha_compressed_short", "segment", "compressed MHA whose zlib stream holds too few voxels",
          _seg_at("s.mha", lambda p, d: G.mha_compressed(p, zlib_bytes(1000)), "--slice", "2", out="mask.nii.gz"),
          r"s\.mha: compressed pixel data inflate to 1000 bytes, the header needs 14400"),
        C("mha_compressed_cut", "segment", "compressed MHA whose zlib stream is cut",
          _seg_at("c.mha", lambda p, d: G.mha_compressed(p, zlib_bytes(14400, rng=True)[:300]), "--slice", "2",
                  out="mask.nii.gz"), r"c\.mha: compressed pixel data inflate to \d+ bytes"),
        C("mha_compressed_ok", "segment", "compressed MHA written by SimpleITK (accepted)",
          _seg_at("ok.mha", lambda p, d: __import__("SimpleITK").WriteImage(
              __import__("SimpleITK").GetImageFromArray(G.ct_volume()), str(p), True), "--slice", "2", out="mask.nii.gz"),
          None, lambda d: None),
        C("dicom_series_truncated_file", "segment", "DICOM series with one file cut to 400 bytes",
          _seg_at("series", _series("cut"), "--slice", "1", out="mask.nii.gz", point="5,5"),
          r"series: slice01\.dcm is a DICOM file that cannot be read as part of a series"),
        C("dicom_series_short_pixels", "segment", "DICOM series with one file missing the end of its pixels",
          _seg_at("series", _series("short"), "--slice", "1", out="mask.nii.gz", point="5,5"),
          r"series: (slice02\.dcm has truncated pixel data|slice02\.dcm is a DICOM file that cannot be read)"),
        C("dicom_series_junk_dcm", "segment", "DICOM series folder with a text file named .dcm",
          _seg_at("series", _series(junk=True), "--slice", "1", out="mask.nii.gz", point="5,5"),
          r"notes\.dcm is a DICOM file that cannot be read"),
        C("dicom_rescale_text", "segment", "DICOM whose RescaleSlope is text",
          _seg_at("t.dcm", lambda p, d: _write(p, G.dicom_single(raw_slope=b"abcd")), point="5,5"),
          r"t\.dcm: (RescaleSlope/RescaleIntercept are not numbers|corrupt or truncated DICOM)"),
        C("dicom_rescale_zero", "segment", "DICOM whose RescaleSlope is 0",
          _seg_at("z.dcm", lambda p, d: _write(p, G.dicom_single(slope="0")), point="5,5"),
          r"z\.dcm: invalid RescaleSlope 0"),
        C("dicom_spacing_zero", "segment", "DICOM with PixelSpacing 0\\0",
          _seg_at("s.dcm", lambda p, d: _write(p, G.dicom_single(spacing="0\\0")), point="5,5"),
          r"s\.dcm: invalid voxel spacing"),
        C("dicom_spacing_negative", "segment", "DICOM with PixelSpacing -1\\-1",
          _seg_at("n.dcm", lambda p, d: _write(p, G.dicom_single(spacing="-1\\-1")), point="5,5"),
          r"n\.dcm: invalid voxel spacing"),
        C("nrrd_spacing_negative", "segment", "NRRD volume with a negative spacing",
          _seg_at("neg.nrrd", lambda p, d: _write(p, b"NRRD0004\ntype: short\ndimension: 3\nsizes: 40 30 6\n"
                                                  b"spacings: 1 -1 1\nencoding: raw\n\n" + G.ct_volume().tobytes()),
                  "--slice", "2", out="mask.nii.gz"),
          r"neg\.nrrd: (invalid voxel spacing|cannot read NRRD header)"),
        C("nifti_spacing_zero", "segment", "NIfTI with a zero voxel size (accepted: ITK reads it as 1, the mask is written)",
          _seg_at("z.nii", _nifti_zooms((1.0, 0.0, 1.0)), "--slice", "2", out="mask.nii.gz"), None,
          lambda d: __import__("SimpleITK").ReadImage(str(d / "out" / "mask.nii.gz"))),
        C("nifti_all_nan_slice", "segment", "float NIfTI whose slice 2 is all NaN (ITK reads it as 0)",
          _seg_at("nan.nii.gz", _nifti_nan_slice, "--slice", "2", out="mask.nii.gz"),
          r"nan\.nii\.gz slice 2 \(axial\): image has no finite pixel value"),
        C("nifti_sheared", "segment", "valid NIfTI with a sheared affine",
          _seg_at("shear.nii.gz", _sheared, "--slice", "2", out="mask.nii.gz"),
          r"shear\.nii\.gz: a valid NIfTI file that cannot be used: its affine is sheared"),
        C("ckpt_nan_weights", "segment", "checkpoint with a NaN weight tensor", _ckpt(tensors=_set(_FIRST_DECODER, float("nan"))),
          r"variant\.safetensors: tensor mask_decoder\.iou_token\.weight holds NaN or infinite values"),
        C("ckpt_inf_weights", "segment", "checkpoint with an infinite weight", _ckpt(tensors=_set(_FIRST_DECODER, float("inf"))),
          r"holds NaN or infinite values"),
        C("ckpt_int8_tensor", "segment", "checkpoint with an int8 tensor", _ckpt(tensors=_set(_FIRST_DECODER, "int8")),
          r"tensor mask_decoder\.iou_token\.weight has dtype int8"),
        C("ckpt_bool_tensor", "segment", "checkpoint with a bool tensor", _ckpt(tensors=_set(_FIRST_DECODER, "bool")),
          r"has dtype bool"),
        C("ckpt_pixel_std_zero", "segment", "checkpoint metadata pixel_std [0, 0, 0]", _ckpt(meta={"pixel_std": [0, 0, 0]}),
          r"invalid pixel_std \[0, 0, 0\] \(3 finite numbers, each > 0\)"),
        C("ckpt_pixel_std_negative", "segment", "checkpoint metadata pixel_std with a negative value",
          _ckpt(meta={"pixel_std": [58.0, -1.0, 57.0]}), r"invalid pixel_std"),
        C("ckpt_pixel_mean_text", "segment", "checkpoint metadata pixel_mean as text", _ckpt(meta={"pixel_mean": "grey"}),
          r"invalid pixel_mean"),
        C("ckpt_encoder_list", "segment", "checkpoint metadata encoder is a JSON list", _ckpt(meta={"encoder": ["tiny_cnn"]}),
          r"invalid encoder"),
        C("ckpt_image_size_text", "segment", "checkpoint metadata image_size is a string", _ckpt(meta={"image_size": "big"}),
          r"invalid image_size 'big'"),
        C("ckpt_image_size_huge", "segment", "checkpoint metadata image_size 10**6", _ckpt(meta={"image_size": 10**6}),
          r"invalid image_size '1000000' \(an integer from 16 to 4096\)"),
        C("ckpt_image_size_bool", "segment", "checkpoint metadata image_size true", _ckpt(meta={"image_size": True}),
          r"invalid image_size"),
        C("ckpt_encoder_source_list", "segment", "checkpoint metadata encoder_source is a list",
          _ckpt(meta={"encoder_source": [1, 2]}), r"invalid encoder_source"),
        C("ckpt_encoder_frozen_text", "segment", "checkpoint metadata encoder_frozen is a string",
          _ckpt(meta={"encoder_frozen": "yes"}), r"invalid encoder_frozen"),
        C("ckpt_metadata_not_mapping", "segment", "safetensors file whose metadata table is a list",
          _disc_seg(model=lambda d, a: G.safetensors_raw_header(d / "list.safetensors", {"__metadata__": ["a"]})),
          r"list\.safetensors (has a malformed metadata table|is not a safetensors checkpoint)"),
        C("window_huge", "segment", "--window 1e308,1e308", _disc_seg("--window", "1e308,1e308"),
          r"window L=1e\+308, W=1e\+308 is out of range"),
        C("window_inf", "segment", "--window inf,400", _disc_seg("--window", "inf,400"), r"level finite"),
        C("window_width_tiny", "segment", "--window 1e9,1e-6 (width rounds away)", _disc_seg("--window", "1e9,1e-6"),
          r"is out of range"),
        C("window_three_numbers", "segment", "--window 1,2,3", _disc_seg("--window", "1,2,3"), r"custom window must be 'LEVEL,WIDTH'"),
        C("exif_rotated_jpeg", "segment", "JPEG with EXIF orientation 6 (accepted: stored frame, a note)",
          _seg_at("rot.jpg", lambda p, d: _write(p, G.jpeg_with_exif(6))), None, _exif_ok),
        C("resume_state_missing_keys", "train", "--resume with a last_state.pt without its counters",
          _state_case(loop=...), r"last_state\.pt is damaged or not written by synthfm"),
        C("resume_state_loop_not_json", "train", "--resume: last_state.pt whose counters are not JSON",
          _state_case(loop="{oops"), r"last_state\.pt is damaged"),
        C("resume_state_loop_wrong_types", "train", "--resume: counters of the wrong type",
          _state_case(loop=json.dumps({"step": "one", "next_index": [0]})), r"last_state\.pt is damaged"),
        C("resume_state_negative_step", "train", "--resume: negative step counter",
          _state_case(loop=json.dumps({"step": -5, "next_index": [0]})), r"last_state\.pt is damaged"),
        C("resume_state_rng_not_tensor", "train", "--resume: RNG state that is not a byte tensor",
          _state_case(rng={"torch_cpu": [1, 2, 3]}), r"last_state\.pt is damaged"),
        C("resume_state_sha_not_text", "train", "--resume: weights hash that is a number",
          _state_case(weights_sha256=12), r"last_state\.pt is damaged"),
        C("resume_state_list", "train", "--resume: last_state.pt holding a list",
          lambda d, a: (__import__("torch").save([1, 2], _old_run(d, a) / "last_state.pt"), ["--resume", str(d / "run"), "--quiet"])[1],
          r"last_state\.pt is not a synthfm training state"),
        # --- 5. unbounded work and hangs
        C("fifo_input", "segment", "a FIFO named .png as INPUT (would hang)", _seg_at("pipe.png", lambda p, d: G.fifo(p)),
          r"pipe\.png: the file is a FIFO \(named pipe\), not a regular file", in_subprocess=True),
        C("dev_zero_input", "segment", "a symlink to /dev/zero named .png (endless)",
          _seg_at("zero.png", lambda p, d: os.symlink("/dev/zero", p)), r"zero\.png: the file is a character device"),
        C("fifo_volume", "segment", "a FIFO named .nii.gz", _seg_at("pipe.nii.gz", lambda p, d: G.fifo(p), out="mask.nii.gz"),
          r"pipe\.nii\.gz: the file is a FIFO"),
        C("fifo_dicom_ext", "segment", "a FIFO named .dcm", _seg_at("pipe.dcm", lambda p, d: G.fifo(p)), r"pipe\.dcm: the file is a FIFO"),
        C("fifo_model", "segment", "a FIFO as --model", _disc_seg(model=lambda d, a: G.fifo(d / "m.safetensors")),
          r"m\.safetensors: the model file is a FIFO"),
        C("dev_zero_model", "segment", "/dev/zero (via a symlink) as --model",
          _disc_seg(model=lambda d, a: (os.symlink("/dev/zero", d / "z.safetensors"), d / "z.safetensors")[1]),
          r"z\.safetensors: the model file is a character device"),
        C("fifo_sam", "segment", "a FIFO as --sam-checkpoint",
          lambda d, a: ["segment", str(a.png), "--point", "20,15", "--encoder", "vit_b", "--sam-checkpoint",
                        str(G.fifo(d / "sam.pth")), "--out", str(d / "out" / "mask.png"), "--overwrite"],
          r"sam\.pth: the SAM checkpoint is a FIFO"),
        C("random_bytes_sam", "segment", "random bytes as --sam-checkpoint .pth",
          lambda d, a: ["segment", str(a.png), "--point", "20,15", "--encoder", "vit_b", "--sam-checkpoint",
                        str(_write(d / "sam_vit_b_x.pth", np.random.default_rng(5).bytes(2048))), "--out",
                        str(d / "out" / "mask.png"), "--overwrite"],
          r"sam_vit_b_x\.pth is not a PyTorch checkpoint \(neither a torch\.save zip nor a pickle"),
        C("fifo_recipe", "train", "a FIFO as --recipe", lambda d, a: ["--preset", "tiny", "--recipe", str(G.fifo(d / "r.yaml")),
                                                                       "--out", str(d / "run"), "--quiet"],
          r"r\.yaml: the recipe file is a FIFO"),
        C("bigtiff_huge", "segment", "zlib BigTIFF whose header says 20000 x 20000",
          _seg_at("big.tif", lambda p, d: _write(p, G.bigtiff(20000, 20000))),
          r"big\.tif: image of 20000 x 20000 = 400000000 pixels exceeds the limit"),
        C("bigtiff_no_size", "segment", "BigTIFF without width/length tags", _seg_at("nosize.tif", lambda p, d: _write(p, G.bigtiff(0, 0, False))),
          r"nosize\.tif: image of 4294967296 x 4294967296 .* exceeds the limit"),
        C("bigtiff_big_endian_huge", "segment", "big-endian BigTIFF magic with a truncated header",
          _seg_at("be.tif", lambda p, d: _write(p, b"MM\x00+\x00\x08\x00\x00")), r"be\.tif: image of .* exceeds the limit"),
        C("recipe_alias_bomb", "train", "YAML alias bomb (10**9 values) in a recipe", _recipe(_yaml_bomb()),
          r"recipe\.yaml: YAML expands to more than 100000 values \(aliases\?\)"),
        C("recipe_alias_bomb_generate", "generate", "YAML alias bomb given to generate", _generate_recipe(_yaml_bomb()),
          r"YAML expands to more than"),
        C("recipe_deep_nesting", "train", "recipe nested 2000 levels deep", _recipe("modules: " + "[" * 2000 + "]" * 2000 + "\n"),
          r"recipe\.yaml: YAML nested too deeply"),
        C("recipe_deep_mapping", "generate", "recipe of 100 nested mappings",
          _generate_recipe("".join(f"{'  ' * k}k{k}:\n" for k in range(100)) + "  " * 100 + "v: 1\n"),
          r"YAML nested too deeply"),
        C("recipe_400_digits", "train", "a 400-digit number in a recipe", _recipe("modules:\n  shape: " + "9" * 400 + "\n"),
          r"modules\.shape: number is too large \(at most 1e\+09 in magnitude\) \(got 9999"),
        C("recipe_huge_range", "generate", "an integer range up to 10**12",
          _generate_recipe("flavours:\n  generic:\n    num_noises_range: [1, 1000000000000]\n"), r"number is too large"),
        C("recipe_huge_file", "generate", "a 2 MiB recipe file", _generate_recipe("# padding\n" * 200_000),
          r"recipe\.yaml: recipe file is \d+ bytes; a recipe is a short YAML file"),
        C("recipe_not_utf8", "generate", "recipe bytes that are not UTF-8",
          lambda d, a: ["generate", "--recipe", str(_write(d / "recipe.yaml", b"modules:\xff\xfe\n")), "-n", "1",
                        "--size", "64", "--out", str(d / "synth")], r"cannot read recipe .*recipe\.yaml"),
        C("recipe_long_key_repr", "generate", "a recipe key of 10,000 characters (message stays short)",
          _generate_recipe('"' + "k" * 10000 + '": 1\n'), r"^.{0,400}$"),
        C("generate_size_huge", "generate", "generate --size 1000000", lambda d, a: ["generate", "--size", "1000000", "-n", "1",
                                                                                     "--out", str(d / "synth")],
          r"--size must be at most 4096"),
        C("generate_n_huge", "generate", "generate -n 10**12", lambda d, a: ["generate", "-n", str(10**12), "--size", "64",
                                                                             "--out", str(d / "synth")], r"-n must be at most"),
        C("generate_workers_huge", "generate", "generate --workers 100000",
          lambda d, a: ["generate", "--workers", "100000", "-n", "1", "--size", "64", "--out", str(d / "synth")],
          r"--workers must be at most 256"),
        C("generate_seed_huge", "generate", "generate --seed 2**70",
          lambda d, a: ["generate", "--seed", str(2**70), "-n", "1", "--size", "64", "--out", str(d / "synth")],
          r"--seed must be below 2\*\*63"),
        C("train_size_huge", "train", "train.py --size 100000", _train_fresh("--size", "100000"), r"--size must be at most 4096"),
        C("train_batch_huge", "train", "train.py --batch-size 10**7", _train_fresh("--batch-size", str(10**7)),
          r"--batch-size must be at most 4096"),
        C("train_epochs_huge", "train", "train.py --epochs 10**12", _train_fresh("--epochs", str(10**12)),
          r"--epochs must be at most"),
        C("train_prompts_huge", "train", "train.py --prompts-per-image 100000", _train_fresh("--prompts-per-image", "100000"),
          r"--prompts-per-image must be at most 256"),
        C("train_workers_huge", "train", "train.py --workers 10000", _train_fresh("--workers", "10000"), r"--workers must be at most 256"),
        C("train_lr_huge", "train", "train.py --lr 1e300", _train_fresh("--lr", "1e300"), r"--lr must be at most"),
        C("train_seed_huge", "train", "train.py --seed 2**80", _train_fresh("--seed", str(2**80)), r"--seed must be at most"),
        # --- 6. the machine's errors in one line
        C("input_name_too_long", "segment", "INPUT path with a 300-character file name",
          lambda d, a: _seg(d / ("x" * 300 + ".png"), assets=a, out=d / "out" / "mask.png"), r"File name too long"),
        C("out_name_too_long", "segment", "--out with a 300-character file name",
          lambda d, a: _seg(a.png, assets=a, out=d / "out" / ("m" * 300 + ".png")), r"File name too long"),
        C("model_name_too_long", "segment", "--model with a 300-character file name",
          _disc_seg(model=lambda d, a: d / ("c" * 300 + ".safetensors")), r"File name too long"),
        C("eval_data_name_too_long", "evaluate", "--data with a 300-character folder name",
          lambda d, a: _eval(d / ("D" * 300), d / "eval_out"), r"File name too long"),
        C("train_out_name_too_long", "train", "--out with a 300-character folder name",
          lambda d, a: ["--preset", "tiny", "--out", str(d / ("r" * 300)), "--quiet"], r"File name too long"),
        C("input_through_file", "segment", "INPUT path that goes through a file (a.png/b.png)",
          lambda d, a: _seg(_write(d / "a.png", b"x") / "b.png", assets=a, out=d / "out" / "mask.png"),
          r"(Not a directory|b\.png: file not found)"),
        C("input_symlink_loop", "segment", "INPUT is a symlink loop",
          lambda d, a: (os.symlink(d / "loop.png", d / "loop.png"), _seg(d / "loop.png", assets=a, out=d / "out" / "mask.png"))[1],
          r"loop\.png: (cannot access the file \(Too many levels of symbolic links\)|file not found)"),
        C("device_meta", "segment", "--device meta", _disc_seg("--device", "meta"), r"unknown --device 'meta'"),
        C("device_xpu", "segment", "--device xpu", _disc_seg("--device", "xpu"), r"unknown --device 'xpu'"),
        C("device_garbage", "segment", "--device cuda:abc", _disc_seg("--device", "cuda:abc"), r"(unknown --device|CUDA is not available)"),
        C("train_device_meta", "train", "train.py --device meta", _train_fresh("--device", "meta"), r"--device"),
        C("export_fifo_model", "export-onnx", "export-onnx of a FIFO",
          lambda d, a: ["export-onnx", "--model", str(G.fifo(d / "m.safetensors")), "--out", str(d / "onnx")],
          r"m\.safetensors: the model file is a FIFO"),
        C("export_nan_model", "export-onnx", "export-onnx of a checkpoint with NaN weights",
          lambda d, a: ["export-onnx", "--model", str(G.checkpoint_variant(a.model, d / "nan.safetensors",
                                                                           tensors=_set(_FIRST_DECODER, float("nan")))),
                        "--out", str(d / "onnx")], r"holds NaN or infinite values"),
        C("export_bad_metadata", "export-onnx", "export-onnx of a checkpoint whose image_size is a list",
          lambda d, a: ["export-onnx", "--model", str(G.checkpoint_variant(a.model, d / "m.safetensors", meta={"image_size": [64]})),
                        "--out", str(d / "onnx")], r"invalid image_size"),
        C("torchrun_stale_env", "train", "WORLD_SIZE=2 set, RANK missing (stale torchrun environment)",
          _train_fresh(), r"WORLD_SIZE is set \(2\) but RANK is not", patch=_env(WORLD_SIZE="2", RANK=None)),
        C("torchrun_env_text", "train", "WORLD_SIZE=two", _train_fresh(), r"WORLD_SIZE='two' is not an integer",
          patch=_env(WORLD_SIZE="two")),
        C("torchrun_rank_out_of_range", "train", "RANK=5 with WORLD_SIZE=2", _train_fresh(),
          r"inconsistent torchrun environment: RANK=5", patch=_env(WORLD_SIZE="2", RANK="5", MASTER_ADDR="x", MASTER_PORT="1")),
        C("torchrun_no_master", "train", "WORLD_SIZE/RANK set but no MASTER_ADDR", _train_fresh(),
          r"MASTER_ADDR/MASTER_PORT are not set", patch=_env(WORLD_SIZE="2", RANK="0", MASTER_ADDR=None, MASTER_PORT=None)),
        C("eval_nsd_nan", "evaluate", "--nsd-tolerance nan", lambda d, a: _eval(_dataset(d), d / "eval_out", "--nsd-tolerance", "nan"),
          r"--nsd-tolerance must be a finite number"),
        C("eval_nsd_inf", "evaluate", "--nsd-tolerance inf", lambda d, a: _eval(_dataset(d), d / "eval_out", "--nsd-tolerance", "inf"),
          r"--nsd-tolerance must be a finite number"),
        C("eval_interactive_huge", "evaluate", "--interactive 1000000 clicks",
          lambda d, a: _eval(_dataset(d), d / "eval_out", "--interactive", "1000000"),
          r"Invalid value for '--interactive': 1000000 is not in the range 0<=x<=100"),
        C("eval_fifo_image", "evaluate", "a dataset whose image is a FIFO", _eval_fifo_case,
          r"no object to evaluate .*case00.*FIFO"),
        # --- 7. races
        C("train_locked_folder", "train", "--resume of a run folder another train.py holds", _resume_plain,
          r"another training process is using .*run \(it is locked\)", patch=_hold_lock),
        # --- 8. smaller
        C("debug_no_is_off", "segment", "SYNTHFM_DEBUG=no still gives one line", lambda d, a: _seg(d / "missing.png", assets=a),
          r"missing\.png: file not found", patch=_env(SYNTHFM_DEBUG="no")),
        C("debug_false_is_off", "segment", "SYNTHFM_DEBUG=false still gives one line", lambda d, a: _seg(d / "missing.png", assets=a),
          r"missing\.png: file not found", patch=_env(SYNTHFM_DEBUG="false")),
        C("annotate_unreachable_display", "annotate", "annotate with DISPLAY=:97 (no X server)",
          lambda d, a: ["annotate", str(a.png)], r"cannot connect to the X display ':97'",
          patch=_env(DISPLAY=":97", WAYLAND_DISPLAY=None, QT_QPA_PLATFORM=None)),
        C("annotate_no_display", "annotate", "annotate without any display", lambda d, a: ["annotate", str(a.png)],
          r"no display", patch=_env(WAYLAND_DISPLAY=None, QT_QPA_PLATFORM=None)),
        C("click_huge", "segment", "--point 1e308,1e308", _disc_seg(point="1e308,1e308"), r"is outside the image"),
        C("box_inf", "segment", "--box 0,0,inf,10", _disc_seg("--box", "0,0,inf,10"), r"(finite|outside)"),
        C("slice_huge", "segment", "--slice 10**30 of a 5-slice volume",
          lambda d, a: _seg(a.nii, "--slice", str(10**30), assets=a, out=d / "out" / "mask.nii.gz"),
          r"slice 1000000000000000000000000000000 is out of range"),
        C("stop_area_nan", "segment", "--stop-area nan", lambda d, a: _seg(a.nii, "--slice", "2", "--propagate", "--stop-area", "nan",
                                                                          assets=a, out=d / "out" / "mask.nii.gz"),
          r"--stop-area must be a number in \[0, 1\), got nan"),
        C("nifti_2d_all_nan", "segment", "a 2D float NIfTI that is all NaN",
          _seg_at("flat.nii", lambda p, d: F.write_nifti(p, np.full((64, 48), np.nan, np.float32)), out="mask.nii.gz"),
          r"image has no finite pixel value"),
    )


def zlib_bytes(n: int, rng: bool = False) -> bytes:
    data = np.random.default_rng(0).bytes(n) if rng else b"\x01" * n
    return zlib.compress(data)


CASES2: tuple[Case, ...] = _cases()
