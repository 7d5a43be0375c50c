"""train.py: bad options exit 2 with one clear line, before any work; a tiny run end to end."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from synthfm.cli.support import run_click
from synthfm.cli.train import train_command
from synthfm.training.config import TrainConfig, preset_config, validate_config

REPO = Path(__file__).resolve().parents[1]

TINY = ["--preset", "tiny", "--quiet"]


def _run(capsys, args):
    code = run_click(train_command, args, prog_name="train.py")
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("train.py: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--encoder", "resnet9000"], "unknown encoder 'resnet9000'"),
        (["--lr", "0"], "--lr must be a positive number"),
        (["--lr", "-1e-4"], "--lr must be a positive number"),
        (["--epochs", "0"], "--epochs must be a positive integer"),
        (["--batch-size", "0"], "--batch-size must be a positive integer"),
        (["--prompts-per-image", "0"], "--prompts-per-image must be a positive integer"),
        (["--size", "100"], "--size must be a multiple of 16"),
        (["--box-fraction", "1.5"], "--box-fraction must be in [0, 1]"),
        (["--encoder", "vit_b"], "needs its official weights: pass --sam-checkpoint"),
        (["--encoder", "vit_b", "--sam-checkpoint", "/nonexistent/sam_vit_b.pth"], "SAM checkpoint file not found"),
        (["--encoder", "vit_b", "--train-encoder", "--sam-checkpoint", "x.pth"], "--train-encoder is not supported"),
        (["--sam-checkpoint", "x.pth"], "only applies to SAM's vit_* encoders"),
        (["--device", "tpu"], "unknown --device 'tpu'"),
        (["--recipe", "no_such_recipe_name"], "no_such_recipe_name"),
    ],
)
def test_bad_options_exit_2_with_one_line(capsys, tmp_path, args, needle):
    out = tmp_path / "run"
    code, _, err = _run(capsys, [*TINY, "--out", str(out), *args])
    assert code == 2
    line = _one_error_line(err)
    assert needle in line
    assert not out.exists()  # nothing was created


def test_recipe_error_names_key(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("modules:\n  shape: 2.0\n")
    code, _, err = _run(capsys, [*TINY, "--out", str(tmp_path / "run"), "--recipe", str(bad)])
    assert code == 2
    assert "modules.shape" in _one_error_line(err)


def test_out_not_empty_needs_resume_or_overwrite(capsys, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    code, _, err = _run(capsys, [*TINY, "--out", str(out)])
    assert code == 2
    assert "--overwrite" in _one_error_line(err)
    code, _, err = _run(capsys, [*TINY, "--out", str(out), "--overwrite"])
    assert code == 2
    assert "not a training run folder" in _one_error_line(err)
    assert (out / "precious.txt").read_text() == "keep me"


def test_resume_of_nothing_and_conflicting_options(capsys, tmp_path):
    code, _, err = _run(capsys, ["--resume", str(tmp_path / "none")])
    assert code == 2 and "nothing to resume" in _one_error_line(err)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"config": {"encoder": "tiny_cnn", "size": 64, "out": str(run)}}))
    code, _, err = _run(capsys, ["--resume", str(run), "--lr", "0.5"])
    assert code == 2 and "cannot change lr" in _one_error_line(err)
    code, _, err = _run(capsys, ["--resume", str(run), "--preset", "paper"])
    assert code == 2 and "--preset" in _one_error_line(err)
    code, _, err = _run(capsys, ["--resume", str(run), "--out", str(tmp_path / "elsewhere")])
    assert code == 2 and "own folder" in _one_error_line(err)


def test_paper_preset_values():
    c = preset_config("paper", sam_checkpoint=__file__)
    assert (c.encoder, c.size, c.epochs, c.images_per_epoch, c.batch_size, c.lr) == ("vit_h", 1024, 100, 10_000, 1, 1e-4)
    assert c.train_encoder is False and c.lr_schedule == "constant"
    validate_config(c, ("vit_h",))


def test_every_config_field_has_a_cli_option():
    from synthfm.cli.train import _CONFIG_OPTIONS

    names = {p.name for p in train_command.params}
    for field in TrainConfig.__dataclass_fields__:
        assert field in _CONFIG_OPTIONS
        assert field in names or (field == "compile" and "compile_" in names)


def test_script_entry_prints_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), *TINY, "--out", str(tmp_path / "r"), "--lr", "0"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert proc.returncode == 2
    assert _one_error_line(proc.stderr) == "train.py: error: --lr must be a positive number, got 0.0"


def test_tiny_run_writes_outputs(capsys, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = _run(capsys, [*TINY, "--out", str(out), "--epochs", "1", "--images-per-epoch", "8",
                                      "--val-images", "4", "--seed", "3"])
    assert code == 0, err
    assert "1/1 steps" in stdout or "2/2 steps" in stdout
    for name in ("config.json", "last.safetensors", "last_state.pt", "best.safetensors", "log.csv", "val.csv"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert list(rows[0]) == ["step", "epoch", "images_seen", "loss", "lr", "img_s", "wall_s"]
    assert int(rows[-1]["images_seen"]) == 8
    val = list(csv.DictReader(open(out / "val.csv")))
    assert len(val) == 1 and {"dice_1_0", "dice_3_0", "dice_1_2", "dice_3_2", "mean"} <= set(val[0])
    assert 0.0 <= float(val[0]["mean"]) <= 1.0
    from synthfm.weights.checkpoint import load_checkpoint, read_metadata

    meta = read_metadata(out / "last.safetensors")
    assert meta["train_config"]["seed"] == 3 and meta["images_seen"] == 8
    assert meta["recipe"]["name"] == "synthfm"
    model, _ = load_checkpoint(out / "best.safetensors")
    assert model.image_size == 64
    # a second run into the same folder is refused, --overwrite replaces it
    code, _, err = _run(capsys, [*TINY, "--out", str(out), "--epochs", "1", "--images-per-epoch", "8"])
    assert code == 2 and "--resume" in _one_error_line(err)
