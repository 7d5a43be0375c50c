"""`synthfm segment`: 2D and volume runs, geometry kept, one-line errors, nothing clobbered."""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from click.testing import CliRunner

from synthfm.cli import cli
from synthfm.cli.support import run_click

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_checkpoint):
    d = tmp_path_factory.mktemp("segment")
    model = tiny_checkpoint
    yy, xx = np.mgrid[:60, :80]
    disc = ((yy - 30) ** 2 + (xx - 40) ** 2 < 15**2).astype(np.uint8) * 180 + 20
    png = d / "disc.png"
    cv2.imwrite(str(png), disc)
    vol = np.full((5, 30, 40), -1000, np.int16)
    vol[:, 10:20, 12:30] = 50
    img = sitk.GetImageFromArray(vol)
    img.SetSpacing((0.8, 0.9, 3.5))
    img.SetOrigin((-20.0, 7.0, 100.0))
    img.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    nii = d / "ct.nii.gz"
    sitk.WriteImage(img, str(nii))
    return {"model": model, "png": png, "nii": nii, "dir": d}


def _err(capsys, argv) -> str:
    """Run through the console-script path; assert one error line, exit != 0, no traceback."""
    code = run_click(cli, argv, prog_name="synthfm")
    captured = capsys.readouterr()
    assert code != 0, captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("synthfm: error:"), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def test_2d_png_mask_and_overlay(files, tmp_path):
    out, overlay = tmp_path / "mask.png", tmp_path / "overlay.png"
    result = CliRunner().invoke(cli, [
        "segment", str(files["png"]), "--point", "40,30", "--negative", "2,2", "--box", "20,10,60,50",
        "--model", str(files["model"]), "--out", str(out), "--overlay", str(overlay),
    ])
    assert result.exit_code == 0, result.output
    assert "window none" in result.output and str(out) in result.output
    mask = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (60, 80) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    pic = cv2.imread(str(overlay), cv2.IMREAD_UNCHANGED)
    f = 7  # 80 x 60 is enlarged by 7 to reach a 512 px longer side (synthfm.inference.overlays)
    assert pic.shape[1] == 80 * f and pic.shape[0] > 60 * f  # + the legend
    b, g, r = pic[30 * f + 3, 40 * f + 3]
    assert g > 150 and r < 100  # the positive click is drawn green at (40, 30)


def test_volume_mask_keeps_geometry_and_fills_only_slice_k(files, tmp_path):
    out = tmp_path / "mask.nii.gz"
    result = CliRunner().invoke(cli, [
        "segment", str(files["nii"]), "--point", "20,15", "--slice", "3", "--window", "soft_tissue",
        "--model", str(files["model"]), "--out", str(out), "--multimask", "--allow-untrained",
    ])
    assert result.exit_code == 0, result.output
    assert "slice 3" in result.output and "soft_tissue" in result.output and "/3" in result.output
    src, got = sitk.ReadImage(str(files["nii"])), sitk.ReadImage(str(out))
    assert got.GetSize() == src.GetSize()
    np.testing.assert_allclose(got.GetSpacing(), src.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(got.GetOrigin(), src.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(got.GetDirection(), src.GetDirection(), atol=1e-6)
    arr = sitk.GetArrayFromImage(got)
    assert arr.dtype == np.uint8 and set(np.unique(arr)) <= {0, 1}
    others = np.delete(arr, 3, axis=0)
    assert others.sum() == 0


def test_volume_coronal_axis(files, tmp_path):
    out = tmp_path / "cor.nrrd"
    code = run_click(cli, [
        "segment", str(files["nii"]), "--point", "20,2", "--slice", "12", "--axis", "coronal",
        "--model", str(files["model"]), "--out", str(out),
    ])
    assert code == 0
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    # the file's x index runs toward anterior: the radiological view's coronal slice 12 (anterior on
    # top, counted from the front) is file voxel column 40 - 1 - 12 along array axis 2
    assert arr.shape == (5, 30, 40) and np.delete(arr, 40 - 1 - 12, axis=2).sum() == 0


def test_overwrite_rules(files, tmp_path, capsys):
    out = tmp_path / "m.png"
    out.write_bytes(b"old mask")
    base = ["segment", str(files["png"]), "--point", "40,30", "--model", str(files["model"]), "--out", str(out)]
    assert "--overwrite" in _err(capsys, base)
    assert out.read_bytes() == b"old mask"
    # a failing run with --overwrite leaves the old file alone too
    msg = _err(capsys, ["segment", str(files["png"]), "--point", "400,30", "--model", str(files["model"]),
                        "--out", str(out), "--overwrite"])
    assert "outside the image" in msg and out.read_bytes() == b"old mask"
    assert run_click(cli, base + ["--overwrite"]) == 0
    assert cv2.imread(str(out), cv2.IMREAD_UNCHANGED).shape == (60, 80)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png"]  # no temp files left


def test_bad_inputs_give_one_clear_line(files, tmp_path, capsys):
    m = ["--model", str(files["model"])]
    out = ["--out", str(tmp_path / "o.png")]
    png, nii = str(files["png"]), str(files["nii"])
    assert "file not found" in _err(capsys, ["segment", str(tmp_path / "nope.png"), "--point", "1,1", *m, *out])
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert "cannot decode PNG" in _err(capsys, ["segment", str(corrupt), "--point", "1,1", *m, *out])
    gif = tmp_path / "x.gif"
    gif.write_bytes(b"GIF89a")
    assert "unsupported file type" in _err(capsys, ["segment", str(gif), "--point", "1,1", *m, *out])
    assert "outside the image (80 x 60" in _err(capsys, ["segment", png, "--point", "80,10", *m, *out])
    assert "--box" in _err(capsys, ["segment", png, "--box", "10,10,90,20", *m, *out])
    assert "Invalid value for '--point'" in _err(capsys, ["segment", png, "--point", "ten,2", *m, *out])
    assert "Invalid value for '--point'" in _err(capsys, ["segment", png, "--point", "1,2,3", *m, *out])
    assert "at least one positive click" in _err(capsys, ["segment", png, "--negative", "1,2", *m, *out])
    assert "output folder does not exist" in _err(
        capsys, ["segment", png, "--point", "1,1", *m, "--out", str(tmp_path / "no" / "o.png")])
    assert "--slice applies to volumes only" in _err(capsys, ["segment", png, "--point", "1,1", "--slice", "0", *m, *out])
    vol_out = ["--out", str(tmp_path / "o.nii.gz")]
    assert "pass --slice K (0..4" in _err(capsys, ["segment", nii, "--point", "1,1", *m, *vol_out])
    assert "out of range" in _err(capsys, ["segment", nii, "--point", "1,1", "--slice", "5", *m, *vol_out])
    assert "volume file" in _err(capsys, ["segment", nii, "--point", "1,1", "--slice", "1", *m, *out])
    assert "unknown window" in _err(capsys, ["segment", png, "--point", "1,1", "--window", "abdomen", *m, *out])
    assert "--out must end with" in _err(capsys, ["segment", png, "--point", "1,1", *m, "--out", str(tmp_path / "o.jpg")])
    assert "--out MASK is required" in _err(capsys, ["segment", png, "--point", "1,1", *m])
    assert "would overwrite INPUT" in _err(capsys, ["segment", png, "--point", "1,1", *m, "--out", png, "--overwrite"])
    assert not any(p.name.startswith("o.") for p in tmp_path.iterdir())


def test_model_errors(files, tmp_path, capsys, monkeypatch):
    import synthfm.weights.source as pred

    png, out = str(files["png"]), ["--out", str(tmp_path / "o.png")]
    monkeypatch.setattr(pred, "DEFAULT_MODEL_PATH", tmp_path / "absent.safetensors")
    assert "no default model is shipped yet; pass --model PATH" in _err(capsys, ["segment", png, "--point", "1,1", *out])
    assert "no default model" in _err(capsys, ["segment", png, "--point", "1,1", "--model", "default", *out])
    assert "model file not found" in _err(capsys, ["segment", png, "--point", "1,1", "--model", str(tmp_path / "x"), *out])
    assert _err(capsys, ["segment", png, "--point", "1,1", "--model", png, *out])  # a PNG posing as a checkpoint
    data = files["model"].read_bytes()
    truncated = tmp_path / "trunc.safetensors"
    truncated.write_bytes(data[: len(data) // 3])
    assert _err(capsys, ["segment", png, "--point", "1,1", "--model", str(truncated), *out])
    assert "needs --sam-checkpoint" in _err(capsys, ["segment", png, "--point", "1,1", "--encoder", "vit_b", *out])
    assert "SAM checkpoint not found" in _err(
        capsys, ["segment", png, "--point", "1,1", "--encoder", "vit_b", "--sam-checkpoint", str(tmp_path / "s.pth"), *out])
    assert "does not match the checkpoint" in _err(
        capsys, ["segment", png, "--point", "1,1", "--model", str(files["model"]), "--encoder", "tiny_vit", *out])
    if not torch.cuda.is_available():
        assert "CUDA" in _err(capsys, ["segment", png, "--point", "1,1", "--model", str(files["model"]), "--device", "cuda", *out])
    assert not (tmp_path / "o.png").exists()


def test_real_subprocess_run(files, tmp_path):
    out = tmp_path / "sub.png"
    proc = subprocess.run(
        [sys.executable, "-m", "synthfm.cli", "segment", str(files["png"]), "--point", "40,30",
         "--model", str(files["model"]), "--out", str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert cv2.imread(str(out), cv2.IMREAD_UNCHANGED).shape == (60, 80)


@pytest.mark.slow
def test_plain_sam_and_external_encoder_checkpoint(files, tmp_path):
    """--encoder vit_b --sam-checkpoint (plain SAM at 1024) and a checkpoint referencing that file."""
    from synthfm.weights import official_sam
    from synthfm.weights.checkpoint import save_checkpoint as save

    shapes = official_sam.expected_sam_shapes("vit_b")
    sam_file = tmp_path / "my_sam_vit_b.pth"
    torch.save({k: torch.zeros(()).expand(s) for k, s in shapes.items()}, sam_file)  # tiny file, official keys
    out = tmp_path / "sam.png"
    code = run_click(cli, ["segment", str(files["png"]), "--point", "40,30", "--encoder", "vit_b",
                           "--sam-checkpoint", str(sam_file), "--out", str(out)])
    assert code == 0 and cv2.imread(str(out), cv2.IMREAD_UNCHANGED).shape == (60, 80)
    model = official_sam.build_model("vit_b", sam_checkpoint=sam_file, load_sam_decoder=False, image_size=256)
    ckpt = tmp_path / "decoder_only.safetensors"
    save(ckpt, model)
    out2 = tmp_path / "ext.png"
    assert run_click(cli, ["segment", str(files["png"]), "--point", "40,30", "--model", str(ckpt),
                           "--sam-checkpoint", str(sam_file), "--out", str(out2)]) == 0
    assert out2.exists()
    assert run_click(cli, ["segment", str(files["png"]), "--point", "40,30", "--model", str(ckpt),
                           "--out", str(tmp_path / "fails.png")]) != 0  # the SAM file is needed
