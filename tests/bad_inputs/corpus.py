"""The bad-input corpus: one :class:`Case` per input, across ``synthfm segment/generate/export-onnx``,
``evaluate.py`` and ``train.py``.

Each case writes its input files into a fresh folder ``d`` (:func:`Case.argv`) next to an existing
output file ``d/out/mask.png`` holding :data:`SENTINEL`.  A *refused* case (``expect`` is a regex)
must give exactly one ``<prog>: error: ...`` line matching ``expect``, a non-zero exit, no
traceback, and leave every file under ``d`` as it was (segment runs pass ``--overwrite``, so this
checks that a failed run does not clobber even a replaceable output).  An *accepted* case
(``expect`` None) must succeed and pass ``check(d)``.  :func:`corpus_table` renders the table the
README and the report quote.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from . import files as F

SENTINEL = b"previous output, must survive\n"


@dataclass(frozen=True)
class Assets:
    """Shared good inputs, built once: a tiny checkpoint, a PNG, a CT volume, a PNG dataset."""

    root: Path
    model: Path  # tiny_cnn at 64 px
    model_vit: Path  # tiny_vit at 64 px
    png: Path  # (48, 64) uint8 disc
    nii: Path  # (5, 30, 40) int16 CT-like volume
    read_only: Path | None  # a folder this process cannot create files in (None: none found)


@dataclass(frozen=True)
class Case:
    name: str
    command: str  # "segment", "generate", "export-onnx", "evaluate", "train"
    what: str  # the input, for the table
    build: Callable[[Path, Assets], list[str]]  # writes inputs into d, returns argv after the program
    expect: str | None  # regex of the error line; None = an accepted input
    check: Callable[[Path], None] | None = None
    in_subprocess: bool = False
    needs_read_only: bool = False
    # in-process cases only: patch(monkeypatch, d, assets) fakes the machine (a full disk, a
    # stale environment variable, a held lock) after the inputs are built
    patch: Callable | None = None

    def argv(self, d: Path, assets: Assets) -> list[str]:
        (d / "out").mkdir(parents=True, exist_ok=True)
        (d / "out" / "mask.png").write_bytes(SENTINEL)
        return self.build(d, assets)


# ---------------------------------------------------------------------------------- helpers


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _seg(image: Path | str, *extra: str, point: str = "20,20", model: Path | str | None = None,
         out: Path | str | None = None, assets: Assets | None = None, overwrite: bool = True) -> list[str]:
    out = out if out is not None else Path(image).parent / "out" / "mask.png"
    argv = ["segment", str(image), "--out", str(out)]
    if point:
        argv += ["--point", point]
    if model is not None:
        argv += ["--model", str(model)]
    elif assets is not None:
        argv += ["--model", str(assets.model)]
    if overwrite:
        argv.append("--overwrite")
    return argv + list(extra)


def _seg_file(name: str, data: bytes | Callable[[], bytes], point: str = "20,20", *extra: str):
    def build(d: Path, a: Assets) -> list[str]:
        payload = data() if callable(data) else data
        return _seg(_write(d / name, payload), *extra, point=point, assets=a)

    return build


def _seg_array(name: str, array_fn: Callable[[], np.ndarray], point: str = "20,20", *extra: str):
    def build(d: Path, a: Assets) -> list[str]:
        arr = array_fn()
        path = d / name
        if name.endswith((".nii", ".nii.gz")):
            F.write_nifti(path, arr)
        else:
            assert cv2.imwrite(str(path), arr), name
        return _seg(path, *extra, point=point, assets=a)

    return build


def _mask_ok(shape: tuple[int, int]) -> Callable[[Path], None]:
    def check(d: Path) -> None:
        mask = cv2.imread(str(d / "out" / "mask.png"), cv2.IMREAD_UNCHANGED)
        assert mask is not None and mask.shape == shape and mask.dtype == np.uint8, None if mask is None else mask.shape
        assert set(np.unique(mask)) <= {0, 255}

    return check


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _png_disc() -> bytes:
    return F.encode(".png", F.disc())


def _nan_image() -> np.ndarray:
    img = F.disc(dtype=np.float32, lo=0.1, hi=0.8)
    img[:5, :] = np.nan
    img[-5:, :] = np.inf
    img[:, :3] = -np.inf
    return img


def _dataset(d: Path, *, labels=None, file_ending=".png", json_text: str | None = None,
             label_shape: tuple[int, int] | None = None, label_value: int = 1) -> Path:
    root = d / "Dataset001_Bad"
    (root / "imagesTs").mkdir(parents=True)
    (root / "labelsTs").mkdir()
    meta = {"name": "Bad", "labels": labels if labels is not None else {"background": 0, "organ": 1},
            "file_ending": file_ending, "modality": "CT", "channel_names": {"0": "CT"}}
    (root / "dataset.json").write_text(json_text if json_text is not None else json.dumps(meta))
    image = F.disc(48, 64)
    label = (F.disc(*(label_shape or (48, 64)), lo=0, hi=1) * label_value).astype(np.uint8)
    cv2.imwrite(str(root / "imagesTs" / "case00_0000.png"), image)
    cv2.imwrite(str(root / "labelsTs" / "case00.png"), label)
    return root


def _eval(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--data", str(data), "--method", "flood_fill", "--prompt", "1,0", "--out", str(out), "--quiet",
            "--no-overlays", *extra]


def _eval_case(**kw):
    def build(d: Path, a: Assets) -> list[str]:
        return _eval(_dataset(d, **kw), d / "eval_out")

    return build


def _recipe(text: str):
    def build(d: Path, a: Assets) -> list[str]:
        recipe = _write(d / "recipe.yaml", text.encode())
        return ["--preset", "tiny", "--recipe", str(recipe), "--out", str(d / "run"), "--quiet"]

    return build


def _generate_recipe(text: str):
    def build(d: Path, a: Assets) -> list[str]:
        recipe = _write(d / "recipe.yaml", text.encode())
        return ["generate", "--recipe", str(recipe), "-n", "2", "--size", "64", "--out", str(d / "synth")]

    return build


def _planted(name: str, zip_container: bool, role: str):
    """A malicious pickle as ``role``: "model" (posing as .safetensors), "sam" (--sam-checkpoint),
    "method" (evaluate --method), "state" (train --resume of a run whose last_state.pt is planted)."""

    def build(d: Path, a: Assets) -> list[str]:
        marker = d / "PWNED"
        path = _write(d / name, F.malicious_pickle(marker, zip_container=zip_container))
        if role == "model":
            return _seg(a.png, model=path, out=d / "out" / "mask.png")
        if role == "sam":
            return ["segment", str(a.png), "--point", "20,20", "--encoder", "vit_b", "--sam-checkpoint", str(path),
                    "--out", str(d / "out" / "mask.png"), "--overwrite"]
        if role == "method":
            return ["--data", str(_dataset(d)), "--method", str(path), "--prompt", "1,0", "--out", str(d / "eval_out"),
                    "--quiet"]
        raise AssertionError(role)

    return build


def _planted_state(d: Path, a: Assets) -> list[str]:
    run = d / "run"
    run.mkdir()
    from synthfm.synth.recipe import load_recipe, recipe_to_dict
    from synthfm.training.config import config_to_dict, preset_config

    payload = {"config": config_to_dict(preset_config("tiny", out=str(run))), "recipe": recipe_to_dict(load_recipe("synthfm"))}
    (run / "config.json").write_text(json.dumps(payload))
    _write(run / "last_state.pt", F.malicious_pickle(d / "PWNED", zip_container=True))
    return ["--resume", str(run), "--quiet"]


def _other_encoder_tensors(d: Path, a: Assets) -> list[str]:
    """tiny_vit tensors in a file whose metadata claims tiny_cnn."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(a.model_vit), "pt") as fh:
        meta = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    meta["encoder"] = json.dumps("tiny_cnn")
    path = d / "relabelled.safetensors"
    save_file(tensors, str(path), metadata=meta)
    return _seg(a.png, model=path, out=d / "out" / "mask.png")


def _read_only_out(d: Path, a: Assets) -> list[str]:
    assert a.read_only is not None
    return _seg(a.png, model=a.model, out=a.read_only / "mask.png")


def _huge_volume_header(d: Path, a: Assets) -> list[str]:
    return _seg(_write(d / "huge.nii", F.nifti_header_only((20000, 20000, 600))), "--slice", "0", assets=a,
                out=d / "out" / "mask.nii.gz")


def _vol(name: str, make: Callable[[Path], None], *extra: str, point: str = "20,15"):
    def build(d: Path, a: Assets) -> list[str]:
        path = d / name
        make(path)
        return _seg(path, *extra, point=point, assets=a, out=d / "out" / "mask.nii.gz")

    return build


def _dicom_cut(path: Path) -> None:
    _write(path, _truncated(F.dicom_bytes()))


def _nrrd_cut(path: Path) -> None:
    F.write_sitk(path.with_suffix(".tmp.nrrd"), np.zeros((6, 30, 40), np.int16))
    data = path.with_suffix(".tmp.nrrd").read_bytes()
    path.with_suffix(".tmp.nrrd").unlink()
    _write(path, _truncated(data))


def _nii_cut(path: Path) -> None:
    tmp = path.parent / "whole.nii.gz"
    # random voxels do not compress, so the cut falls in the data, after an intact header
    F.write_nifti(tmp, np.random.default_rng(0).integers(-1000, 1000, (40, 30, 6)).astype(np.int16))
    data = tmp.read_bytes()
    tmp.unlink()
    _write(path, _truncated(data))


def _volume_4d(path: Path) -> None:
    F.write_nifti(path, np.zeros((40, 30, 6, 3), np.int16))


def _float64_volume(path: Path) -> None:
    vol = np.zeros((40, 30, 4), np.float64)
    vol[10:30, 8:22, :] = 1.5
    F.write_nifti(path, vol)


def _volume_ok(d: Path) -> None:
    import SimpleITK as sitk

    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(d / "out" / "mask.nii.gz")))
    assert mask.shape == (4, 30, 40) and set(np.unique(mask)) <= {0, 1}
    assert not mask[[0, 2, 3]].any()  # only slice 1 is filled


# ------------------------------------------------------------------------------------ corpus

CASES: tuple[Case, ...] = (
    # --- image files given to segment
    Case("empty_png", "segment", "empty file named .png", _seg_file("empty.png", b""), r"empty\.png: file is empty"),
    Case("truncated_png", "segment", "PNG cut in half", _seg_file("cut.png", lambda: _truncated(_png_disc())),
         r"cut\.png: cannot decode PNG image", in_subprocess=True),
    Case("text_as_png", "segment", "a text file named .png", _seg_file("notes.png", b"this is not an image\n" * 4),
         r"notes\.png: cannot decode PNG image"),
    Case("corrupt_jpeg", "segment", "JPEG magic followed by garbage",
         _seg_file("bad.jpg", b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4), r"bad\.jpg: cannot decode JPEG image"),
    Case("unsupported_ext", "segment", "a .gif file", _seg_file("anim.gif", b"GIF89a" + b"\x00" * 64),
         r"anim\.gif: unsupported file type '\.gif'"),
    Case("no_such_file", "segment", "a path that does not exist", lambda d, a: _seg(d / "missing.png", assets=a),
         r"missing\.png: file not found"),
    Case("huge_png_header", "segment", "PNG header declaring 20000x20000", _seg_file("huge.png", F.png_header_only(20000, 20000)),
         r"huge\.png: image of 20000 x 20000 = 400000000 pixels exceeds the limit of 268435456 \(2\*\*28\) pixels",
         in_subprocess=True),
    Case("huge_jpeg_header", "segment", "JPEG header declaring 60000x60000",
         _seg_file("huge.jpg", F.jpeg_header_only(60000, 60000)), r"huge\.jpg: image of 60000 x 60000 .* exceeds the limit"),
    Case("huge_nifti_header", "segment", "NIfTI header declaring 20000x20000x600 (no data)", _huge_volume_header,
         r"huge\.nii: volume of 20000 x 20000 x 600 .* exceeds the limit of 1073741824 \(2\*\*30\) voxels"),
    Case("rgba_png", "segment", "RGBA PNG (accepted: alpha dropped)",
         _seg_array("rgba.png", lambda: np.dstack([F.disc()] * 3 + [np.full((48, 64), 128, np.uint8)])),
         None, _mask_ok((48, 64))),
    Case("png_16bit", "segment", "16-bit PNG (accepted: percentile window)",
         _seg_array("deep.png", lambda: F.disc(dtype=np.uint16, lo=1000, hi=40000)), None, _mask_ok((48, 64))),
    Case("float64_volume", "segment", "float64 NIfTI volume (accepted)",
         _vol("f64.nii.gz", _float64_volume, "--slice", "1"), None, _volume_ok),
    Case("nan_inf_tiff", "segment", "float32 TIFF with NaN and +-Inf rows (accepted: non-finite -> 0)",
         _seg_array("nan.tif", _nan_image), None, _mask_ok((48, 64))),
    Case("all_nan_tiff", "segment", "float32 TIFF that is all NaN",
         _seg_array("allnan.tif", lambda: np.full((48, 64), np.nan, np.float32)), r"allnan\.tif: image has no finite pixel value"),
    Case("constant_png", "segment", "constant image (accepted: any mask, no crash)",
         _seg_array("flat.png", lambda: np.full((48, 64), 77, np.uint8)), None, _mask_ok((48, 64))),
    Case("one_pixel_png", "segment", "1x1 image (accepted)", _seg_array("dot.png", lambda: np.full((1, 1), 200, np.uint8), "0,0"),
         None, _mask_ok((1, 1))),
    Case("one_row_png", "segment", "1x50 image (accepted)", _seg_array("row.png", lambda: F.disc(1, 50), "25,0"),
         None, _mask_ok((1, 50))),
    Case("volume_4d", "segment", "4D NIfTI (40x30x6x3)", _vol("t.nii.gz", _volume_4d, "--slice", "0"),
         r"t\.nii\.gz: 4D images are not supported"),
    Case("truncated_nifti", "segment", "NIfTI .nii.gz cut in half", _vol("cut.nii.gz", _nii_cut, "--slice", "0"),
         r"cut\.nii\.gz: corrupt or truncated gzip data"),
    Case("corrupt_nifti", "segment", "random bytes named .nii.gz",
         _vol("junk.nii.gz", lambda p: _write(p, np.random.default_rng(0).bytes(600)), "--slice", "0"),
         r"junk\.nii\.gz: cannot read NIfTI header"),
    Case("corrupt_nrrd", "segment", "NRRD header with 3 dimensions but 2 sizes",
         _vol("bad.nrrd", lambda p: _write(p, F.nrrd_inconsistent_header()), "--slice", "0"), r"bad\.nrrd: cannot read NRRD header"),
    Case("truncated_nrrd", "segment", "raw NRRD cut in half", _vol("cut.nrrd", _nrrd_cut, "--slice", "0"),
         r"cut\.nrrd: cannot read NRRD pixel data"),
    Case("empty_dicom", "segment", "empty .dcm file", _seg_file("empty.dcm", b""), r"empty\.dcm: file is empty"),
    Case("truncated_dicom", "segment", "DICOM cut in half", _vol("cut.dcm", _dicom_cut, point="5,5"),
         r"cut\.dcm: truncated DICOM pixel data \(\d+ of 2560 bytes\)"),
    Case("dicom_no_pixels", "segment", "DICOM without pixel data",
         _seg_file("nopix.dcm", lambda: F.dicom_bytes(with_pixels=False)), r"nopix\.dcm: DICOM file has no pixel data"),
    Case("dicom_huge_header", "segment", "DICOM whose Rows/Columns say 30000x30000",
         _seg_file("huge.dcm", lambda: F.dicom_bytes(rows_tag=30000, cols_tag=30000)), r"huge\.dcm: image of 30000 x 30000 .* exceeds the limit"),
    # --- prompts and slices
    Case("click_outside", "segment", "click at x=500 on a 64-wide image", lambda d, a: _seg(a.png, point="500,5", assets=a,
         out=d / "out" / "mask.png"), r"click \(500, 5\) is outside the image \(64 x 48 pixels"),
    Case("click_not_numeric", "segment", "--point a,b", lambda d, a: _seg(a.png, point="a,b", assets=a, out=d / "out" / "mask.png"),
         r"Invalid value for '--point': expected X,Y numbers, got 'a,b'"),
    Case("click_nan", "segment", "--point nan,3", lambda d, a: _seg(a.png, point="nan,3", assets=a, out=d / "out" / "mask.png"),
         r"expected 2 finite numbers X,Y"),
    Case("no_prompt", "segment", "no click and no box", lambda d, a: _seg(a.png, point="", assets=a, out=d / "out" / "mask.png"),
         r"give at least one positive click"),
    Case("slice_out_of_range", "segment", "--slice 99 of a 5-slice volume",
         lambda d, a: _seg(a.nii, "--slice", "99", assets=a, out=d / "out" / "mask.nii.gz"),
         r"slice 99 is out of range: the volume has 5 axial slices \(0\.\.4\)"),
    Case("slice_negative", "segment", "--slice -1", lambda d, a: _seg(a.nii, "--slice", "-1", assets=a, out=d / "out" / "mask.nii.gz"),
         r"slice -1 is out of range"),
    # --- outputs
    Case("out_missing_folder", "segment", "--out in a folder that does not exist",
         lambda d, a: _seg(a.png, assets=a, out=d / "nowhere" / "mask.png"), r"output folder does not exist: .*nowhere"),
    Case("out_read_only_folder", "segment", "--out in a folder we cannot write", _read_only_out,
         r"(output folder is not writable|cannot create a file in)", needs_read_only=True),
    Case("out_exists", "segment", "--out exists, no --overwrite",
         lambda d, a: _seg(a.png, assets=a, out=d / "out" / "mask.png", overwrite=False),
         r"output file exists \(pass --overwrite to replace it\)"),
    Case("out_is_input", "segment", "--out is the input file", lambda d, a: _seg(_write(d / "in.png", _png_disc()), assets=a,
         out=d / "in.png"), r"--out would overwrite INPUT"),
    Case("out_bad_ext", "segment", "--out mask.jpg (lossy mask)", lambda d, a: _seg(a.png, assets=a, out=d / "out" / "mask.jpg"),
         r"--out must end with one of"),
    # --- checkpoints
    Case("ckpt_truncated", "segment", "checkpoint cut in half",
         lambda d, a: _seg(a.png, model=_write(d / "cut.safetensors", _truncated(a.model.read_bytes())), out=d / "out" / "mask.png"),
         r"cut\.safetensors is truncated"),
    Case("ckpt_random_bytes", "segment", "random bytes named .safetensors",
         lambda d, a: _seg(a.png, model=_write(d / "junk.safetensors", np.random.default_rng(1).bytes(4096)), out=d / "out" / "mask.png"),
         r"junk\.safetensors is not a safetensors checkpoint"),
    Case("ckpt_other_encoder", "segment", "tiny_vit checkpoint with --encoder tiny_cnn",
         lambda d, a: _seg(a.png, "--encoder", "tiny_cnn", model=a.model_vit, out=d / "out" / "mask.png"),
         r"--encoder tiny_cnn does not match the checkpoint's encoder tiny_vit"),
    Case("ckpt_relabelled", "segment", "tiny_vit tensors whose metadata claims tiny_cnn", _other_encoder_tensors,
         r"relabelled\.safetensors does not match a tiny_cnn model at 64 px: \d+ missing keys"),
    Case("ckpt_pickle_as_safetensors", "segment", "torch.save pickle (with a code payload) named .safetensors",
         _planted("evil.safetensors", True, "model"), r"evil\.safetensors is a PyTorch pickle/zip file, not a safetensors",
         in_subprocess=True),
    Case("ckpt_raw_pickle", "segment", "raw pickle (code payload) named .safetensors", _planted("raw.safetensors", False, "model"),
         r"raw\.safetensors is a PyTorch pickle/zip file"),
    Case("sam_pth_pickle", "segment", "--sam-checkpoint .pth whose pickle runs code", _planted("sam_evil.pth", True, "sam"),
         r"refusing to load .*sam_evil\.pth: it holds Python objects other than tensors"),
    Case("model_is_folder", "segment", "--model is a folder", lambda d, a: _seg(a.png, model=d, out=d / "out" / "mask.png"),
         r"model path is a folder"),
    Case("export_truncated_ckpt", "export-onnx", "export-onnx of a truncated checkpoint",
         lambda d, a: ["export-onnx", "--model", str(_write(d / "cut.safetensors", _truncated(a.model.read_bytes()))),
                       "--out", str(d / "onnx")], r"cut\.safetensors is truncated"),
    # --- evaluate.py
    Case("eval_empty_folder", "evaluate", "an empty data folder",
         lambda d, a: _eval(Path(d / "empty").mkdir() or d / "empty", d / "eval_out"), r"no dataset found in .*empty",
         in_subprocess=True),
    Case("eval_json_missing_keys", "evaluate", "dataset.json without 'labels'",
         _eval_case(json_text=json.dumps({"file_ending": ".png"})), r"dataset\.json: 'labels' must be a non-empty object"),
    Case("eval_json_invalid", "evaluate", "dataset.json that is not JSON", _eval_case(json_text="{labels: oops"),
         r"cannot read .*dataset\.json"),
    Case("eval_bad_ending", "evaluate", "file_ending .gif", _eval_case(file_ending=".gif"), r"unsupported 'file_ending' '\.gif'"),
    Case("eval_label_size", "evaluate", "label map 40x40 for a 48x64 image", _eval_case(label_shape=(40, 40)),
         r"no object to evaluate .*case00: image size \(48, 64\) != label size \(40, 40\)"),
    Case("eval_unknown_label_id", "evaluate", "label id 7 not in dataset.json", _eval_case(label_value=7),
         r"no object to evaluate .*case00: label ids \[7\] not in dataset\.json labels"),
    Case("eval_out_is_file", "evaluate", "--out is an existing file",
         lambda d, a: _eval(_dataset(d), d / "out" / "mask.png"), r"--out is a file, not a folder"),
    Case("eval_pickle_method", "evaluate", "--method evil.safetensors (pickle with a code payload)",
         _planted("evil.safetensors", True, "method"), r"evil\.safetensors is a PyTorch pickle/zip file"),
    # --- recipes (train.py and generate)
    Case("recipe_unknown_key", "train", "recipe with an unknown key", _recipe("image_sise: 64\n"),
         r"recipe\.yaml: image_sise: unknown key", in_subprocess=True),
    Case("recipe_wrong_type", "train", "recipe with a string where a number goes", _recipe("modules:\n  shape: lots\n"),
         r"recipe\.yaml: modules\.shape: expected a number \(got 'lots'\)"),
    Case("recipe_bad_range", "train", "recipe range with lo > hi",
         _recipe("flavours:\n  generic:\n    num_noises_range: [2, 1]\n"), r"generic\.num_noises_range: range has lo > hi"),
    Case("recipe_bad_probability", "generate", "recipe probability 1.5",
         _generate_recipe("modules:\n  shape: 1.5\n  boundary: -0.5\n"), r"modules\.shape: probability must be in \[0, 1\]"),
    Case("recipe_not_yaml", "generate", "recipe that is not YAML", _generate_recipe("modules: [unclosed\n"), r"not valid YAML"),
    Case("recipe_not_mapping", "generate", "recipe that is a YAML list", _generate_recipe("- 1\n- 2\n"),
         r"<top level>: expected a mapping"),
    Case("train_state_pickle", "train", "--resume of a run whose last_state.pt pickle runs code", _planted_state,
         r"(cannot read training state|refusing to load) .*last_state\.pt"),
    Case("train_resume_bad_config", "train", "--resume of a folder whose config.json has no config section",
         lambda d, a: (d / "run").mkdir() or (d / "run" / "config.json").write_text('{"placeholder": 1}') and
         ["--resume", str(d / "run"), "--quiet"], r"config\.json is not a synthfm run config \(no 'config' section\)"),
    Case("train_resume_no_recipe", "train", "--resume of a run whose config.json has no recipe section",
         lambda d, a: (d / "run").mkdir() or (d / "run" / "config.json").write_text('{"config": {}}') and
         ["--resume", str(d / "run"), "--quiet"], r"config\.json is not a synthfm run config \(no 'recipe' section\)"),
    Case("train_finetune_not_dataset", "train", "--finetune on a folder without dataset.json",
         lambda d, a: (d / "plain").mkdir() or ["--preset", "tiny", "--finetune", str(d / "plain"), "--out",
                                                 str(d / "run"), "--quiet"], r"no dataset\.json in .*plain"),
    Case("train_finetune_label_mismatch", "train", "--finetune on a dataset whose label is smaller than its image",
         lambda d, a: ["--preset", "tiny", "--finetune", str(_dataset(d, label_shape=(20, 20))), "--out", str(d / "run"),
                       "--quiet"], r"--finetune .*case case00: image size .* != label size"),
    Case("train_finetune_no_object", "train", "--finetune on a dataset whose labels are all background",
         lambda d, a: ["--preset", "tiny", "--finetune", str(_dataset(d, label_value=0)), "--out", str(d / "run"),
                       "--quiet"], r"--finetune .*no usable object"),
    Case("train_out_missing_parent", "train", "--out under a missing folder",
         lambda d, a: ["--preset", "tiny", "--out", str(d / "nowhere" / "run"), "--quiet"],
         r"output folder's parent does not exist"),
)


def corpus_table(results: dict[str, str] | None = None, cases: tuple[Case, ...] | None = None) -> str:
    """The corpus as a Markdown table (input, command, expected message or "accepted", result)."""
    lines = ["| # | input | command | expected | result |", "|---|---|---|---|---|"]
    for i, case in enumerate(CASES if cases is None else cases, 1):
        expected = "accepted (exit 0, sane mask)" if case.expect is None else f"`{case.expect}`"
        result = (results or {}).get(case.name, "")
        lines.append(f"| {i} | {case.what} | {case.command}{' (subprocess)' if case.in_subprocess else ''} | "
                     f"{expected.replace('|', '/')} | {result} |")
    return "\n".join(lines)
