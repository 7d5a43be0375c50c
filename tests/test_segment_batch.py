"""`synthfm segment` batch form: several inputs / folders, one model load, per-file failures, nothing clobbered."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import SimpleITK as sitk
from click.testing import CliRunner

from synthfm.cli import cli
from synthfm.cli.support import run_click


def _disc(path: Path, shape=(60, 80), centre=(30, 40), value=180) -> Path:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < 15**2).astype(np.uint8) * value + 20
    cv2.imwrite(str(path), img)
    return path


@pytest.fixture()
def inputs(tmp_path):
    d = tmp_path / "scans"
    d.mkdir()
    _disc(d / "a.png")
    _disc(d / "b.png", centre=(25, 45), value=120)
    _disc(d / "small.png", shape=(20, 20), centre=(10, 10))  # the click 40,30 is outside it
    (d / "broken.png").write_bytes(b"\x89PNG not really")
    (d / "notes.txt").write_text("not an image")  # not an image extension: not taken from the folder
    vol = np.full((4, 30, 40), -1000, np.int16)
    vol[:, 10:20, 12:30] = 50
    sitk.WriteImage(sitk.GetImageFromArray(vol), str(tmp_path / "ct.nii.gz"))
    return {"dir": d, "nii": tmp_path / "ct.nii.gz", "root": tmp_path}


def _run(capsys, argv):
    code = run_click(cli, argv, prog_name="synthfm")
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, out.out, out.err


def test_folder_batch_one_load_per_file_failures(inputs, tiny_checkpoint, capsys, monkeypatch):
    from synthfm.inference.predictor import Predictor

    loads = []
    original = Predictor.from_checkpoint.__func__

    def counting(cls, *args, **kwargs):
        loads.append(args)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(Predictor, "from_checkpoint", classmethod(counting))
    out_dir = inputs["root"] / "masks"
    code, out, err = _run(capsys, ["segment", str(inputs["dir"]), "--point", "40,30", "--model", str(tiny_checkpoint),
                                   "--out-dir", str(out_dir), "--overlays"])
    assert code == 1  # two inputs failed
    assert len(loads) == 1
    written = sorted(p.name for p in out_dir.iterdir())
    assert written == ["a_mask.png", "a_overlay.png", "b_mask.png", "b_overlay.png"]
    errors = [line for line in err.splitlines() if line.startswith("synthfm: error:")]
    assert len(errors) == 2
    assert any(str(inputs["dir"] / "broken.png") in line for line in errors)
    assert any(str(inputs["dir"] / "small.png") in line and "outside the image" in line for line in errors)
    assert "segmented 2 of 4 inputs" in err and "2 failed" in err
    assert len([line for line in out.splitlines() if "->" in line]) == 2

    # the batch writes what the single-input form writes for the same file
    single = inputs["root"] / "single.png"
    code, _, _ = _run(capsys, ["segment", str(inputs["dir"] / "b.png"), "--point", "40,30", "--model",
                               str(tiny_checkpoint), "--out", str(single)])
    assert code == 0
    np.testing.assert_array_equal(cv2.imread(str(single), cv2.IMREAD_UNCHANGED),
                                  cv2.imread(str(out_dir / "b_mask.png"), cv2.IMREAD_UNCHANGED))


def test_files_and_volume_with_slice(inputs, tiny_checkpoint, capsys):
    out_dir = inputs["root"] / "vol_masks"
    code, out, err = _run(capsys, ["segment", str(inputs["nii"]), str(inputs["dir"] / "a.png"), "--point", "20,15",
                                   "--slice", "2", "--model", str(tiny_checkpoint), "--out-dir", str(out_dir)])
    assert code == 1
    assert "--slice applies to volumes only" in err and str(inputs["dir"] / "a.png") in err
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out_dir / "ct_mask.nii.gz")))
    assert mask.shape == (4, 30, 40)
    assert not mask[[0, 1, 3]].any()  # only slice 2 is filled
    assert not (out_dir / "a_mask.png").exists()


def test_nothing_overwritten_without_flag(inputs, tiny_checkpoint, capsys):
    out_dir = inputs["root"] / "masks"
    out_dir.mkdir()
    (out_dir / "b_mask.png").write_bytes(b"keep me")
    argv = ["segment", str(inputs["dir"] / "a.png"), str(inputs["dir"] / "b.png"), "--point", "40,30",
            "--model", str(tiny_checkpoint), "--out-dir", str(out_dir)]
    code, _, err = _run(capsys, argv)
    assert code != 0 and "b_mask.png exists" in err and "--overwrite" in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in out_dir.iterdir()) == ["b_mask.png"]  # checked before anything was written
    assert (out_dir / "b_mask.png").read_bytes() == b"keep me"
    code, _, _ = _run(capsys, argv + ["--overwrite"])
    assert code == 0
    assert cv2.imread(str(out_dir / "b_mask.png"), cv2.IMREAD_UNCHANGED).shape == (60, 80)


def test_batch_usage_errors(inputs, tiny_checkpoint, tmp_path, capsys):
    a, b = str(inputs["dir"] / "a.png"), str(inputs["dir"] / "b.png")
    m = ["--model", str(tiny_checkpoint), "--point", "40,30"]
    other = tmp_path / "other"
    other.mkdir()
    _disc(other / "a.png")

    def one_line(argv):
        code, _, err = _run(capsys, argv)
        lines = err.strip().splitlines()
        assert code != 0 and len(lines) == 1 and lines[0].startswith("synthfm: error:"), err
        return lines[0]

    assert "need --out-dir" in one_line(["segment", a, b, *m, "--out", str(tmp_path / "o.png")])
    assert "would both write" in one_line(["segment", a, str(other / "a.png"), *m, "--out-dir", str(tmp_path / "x")])
    assert "--out-ext must be one of" in one_line(["segment", a, *m, "--out-dir", str(tmp_path / "y"), "--out-ext", "jpg"])
    assert "does not exist" in one_line(["segment", a, str(tmp_path / "missing.png"), *m, "--out-dir", str(tmp_path / "z")])
    assert "go with --out-dir" in one_line(["segment", a, *m, "--out", str(tmp_path / "o.png"), "--overlays"])
    assert not (tmp_path / "o.png").exists()


def test_out_ext_for_all(inputs, tiny_checkpoint):
    out_dir = inputs["root"] / "tifs"
    result = CliRunner().invoke(cli, ["segment", str(inputs["dir"] / "a.png"), "--point", "40,30", "--model",
                                      str(tiny_checkpoint), "--out-dir", str(out_dir), "--out-ext", ".tif"])
    assert result.exit_code == 0, result.output
    assert [p.name for p in out_dir.iterdir()] == ["a_mask.tif"]


def test_propagate_in_batch(inputs, tiny_checkpoint, capsys):
    out_dir = inputs["root"] / "prop"
    code, out, err = _run(capsys, ["segment", str(inputs["nii"]), "--point", "20,15", "--slice", "2", "--propagate",
                                   "--model", str(tiny_checkpoint), "--out-dir", str(out_dir), "--overlays"])
    assert code == 0, err
    assert "propagated" in out
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out_dir / "ct_mask.nii.gz")))
    assert mask.shape == (4, 30, 40)
    assert (out_dir / "ct_overlay.png").exists()
    code, _, err = _run(capsys, ["segment", str(inputs["nii"]), "--point", "20,15", "--slice", "2", "--propagate",
                                 "--stop-area", "nan", "--model", str(tiny_checkpoint), "--out-dir", str(out_dir),
                                 "--overwrite"])
    assert code != 0 and "--stop-area must be" in err
