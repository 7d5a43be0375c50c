"""``synthfm generate``: files written, refusal to overwrite, one-line errors (CliRunner and a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from synthfm.cli import cli
from synthfm.cli.support import run_click
from synthfm.synth.generator import sample_at
from synthfm.synth.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]


def _generate(*args: str):
    return CliRunner().invoke(cli, ["generate", *args], catch_exceptions=False)


def test_round_trip_writes_images_labels_targets_and_gallery(tmp_path):
    out = tmp_path / "synth"
    result = _generate("--recipe", "synthfm", "-n", "3", "--size", "64", "--seed", "5", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "wrote 3 samples" in result.output
    assert sorted(p.name for p in (out / "images").iterdir()) == ["000000.png", "000001.png", "000002.png"]
    assert (out / "gallery.png").stat().st_size > 0
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left behind
    manifest = json.loads((out / "targets.json").read_text())
    assert manifest["seed"] == 5 and manifest["size"] == 64 and manifest["n"] == 3
    recipe = load_recipe("synthfm")
    for record in manifest["samples"]:
        sample = sample_at(recipe, 5, record["index"], 64)
        image = cv2.imread(str(out / record["image"]), cv2.IMREAD_UNCHANGED)
        labels = cv2.imread(str(out / record["labels"]), cv2.IMREAD_UNCHANGED)
        assert image.dtype == np.uint8 and image.shape == (64, 64)
        assert labels.dtype == np.uint16 and np.array_equal(labels, sample.labels)
        assert np.abs(image.astype(np.float32) / 255 - sample.image).max() <= 0.5 / 255 + 1e-6
        assert (record["module"], record["flavour"]) == (sample.module, sample.flavour)
        assert record["valid_targets"] == [list(sample.targets[k].label_ids) for k in sample.valid_targets]
        assert len(record["targets"]) == len(sample.targets)


def test_refuses_a_non_empty_folder_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "synth"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code = run_click(cli, ["generate", "-n", "2", "--size", "32", "--out", str(out)], prog_name="synthfm")
    assert code != 0
    err = capsys.readouterr().err
    assert "not empty" in err and "--overwrite" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]

    assert _generate("-n", "4", "--size", "32", "--out", str(out), "--overwrite").exit_code == 0
    assert _generate("-n", "2", "--size", "32", "--out", str(out), "--overwrite").exit_code == 0
    # the second run replaced the first one's samples; unrelated files are left alone
    assert sorted(p.name for p in (out / "images").iterdir()) == ["000000.png", "000001.png"]
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "targets.json").read_text())["n"] == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["-n", "0"], "-n must be > 0"),
        (["--size", "16"], "--size must be >= 32"),
        (["--workers", "0"], "--workers must be >= 1"),
        (["--recipe", "nope"], "unknown recipe name 'nope'"),
        (["--recipe", "missing/recipe.yaml"], "recipe file not found"),
    ],
)
def test_bad_options_give_one_line_and_write_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "synth"
    code = run_click(cli, ["generate", "--size", "32", "-n", "1", *args, "--out", str(out)], prog_name="synthfm")
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("synthfm: error:") and message in err
    assert len(err.splitlines()) == 1
    assert not out.exists()


def test_a_bad_recipe_file_names_the_key(tmp_path, capsys):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("shape:\n  num_shapes_range: [5, 1]\n")
    code = run_click(cli, ["generate", "--recipe", str(recipe), "-n", "1", "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "shape.num_shapes_range" in err and "[5, 1]" in err and len(err.strip().splitlines()) == 1


def _run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "synthfm.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _labels_match(out: Path, recipe_name: str, seed: int, n: int, size: int) -> bool:
    recipe = load_recipe(recipe_name)
    return all(
        np.array_equal(cv2.imread(str(out / "labels" / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED),
                       sample_at(recipe, seed, i, size).labels)
        for i in range(n)
    )


def test_real_subprocess_round_trip_and_one_line_error(tmp_path):
    out = tmp_path / "synth"
    args = ["generate", "--recipe", "shape_only", "-n", "2", "--size", "48", "--seed", "2", "--out", str(out)]
    done = _run_cli(args, tmp_path)
    assert done.returncode == 0, done.stderr
    assert _labels_match(out, "shape_only", 2, 2, 48)

    again = _run_cli(args, tmp_path)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        f"synthfm: error: output folder is not empty (pass --overwrite to replace its samples): {out}"
    ]


@pytest.mark.slow
def test_two_spawned_workers_write_the_same_samples(tmp_path):
    out = tmp_path / "synth"
    args = ["generate", "--recipe", "synthfm", "-n", "6", "--size", "48", "--seed", "3", "--workers", "2",
            "--out", str(out)]
    done = _run_cli(args, tmp_path)
    assert done.returncode == 0, done.stderr
    assert _labels_match(out, "synthfm", 3, 6, 48)
