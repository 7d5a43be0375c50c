"""evaluate.py end to end: outputs, refusal to clobber, one-line errors."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
from test_datasets import SHARED_DATA, write_png_dataset

from synthfm.cli.support import run_click

REPO = Path(__file__).resolve().parents[1]


def _main():
    spec = importlib.util.spec_from_file_location("evaluate_cli", REPO / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


MAIN = _main()


def call(capsys, *argv):
    code = run_click(MAIN, list(argv), prog_name="evaluate.py")
    out, err = capsys.readouterr()
    return code, out, err


def test_round_trip_on_a_tiny_dataset(tmp_path, capsys):
    write_png_dataset(tmp_path / "data" / "D1", n_cases=2)
    write_png_dataset(tmp_path / "data" / "D2", n_cases=1, modality="US")
    out = tmp_path / "out"
    code, stdout, err = call(capsys, "--data", str(tmp_path / "data"), "--method", "flood_fill", "--method", "grabcut",
                             "--prompt", "1,0", "--prompt", "2,1", "--out", str(out), "--quiet")
    assert code == 0, err
    assert {p.name for p in out.iterdir()} == {"per_object.csv", "summary.json", "summary.md", "dice.png", "overlays"}
    with open(out / "per_object.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["dataset", "case", "slice", "class", "object", "prompt", "method", "dice", "iou", "nsd", "hd95", "area"]
    assert len(rows) == (2 + 1) * 3 * 2 * 2  # cases x objects x prompts x methods
    assert {r["prompt"] for r in rows} == {"1,0", "2,1"} and all(r["slice"] == "" for r in rows)
    assert all(0.0 <= float(r["dice"]) <= 1.0 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["datasets"] == {
        "D1": {"modality": "CT", "objects": 6, "cases": 2, "slices": 2, "pseudo_labels": False},
        "D2": {"modality": "US", "objects": 3, "cases": 1, "slices": 1, "pseudo_labels": False},
    }
    datasets = {r["dataset"] for r in summary["rows"]}
    assert datasets == {"D1", "D2", "ALL:CT", "ALL:US"}
    assert len(summary["rows"]) == 4 * 2 * 2 and summary["skipped_count"] == 0
    assert "| D1 | CT | 6 |" in stdout and (out / "summary.md").read_text().strip() == stdout.strip()
    assert (out / "dice.png").read_bytes()[:4] == b"\x89PNG"

    # a second run refuses the non-empty folder and leaves it as it was, unless --overwrite
    before = (out / "summary.json").read_bytes()
    code, _, err = call(capsys, "--data", str(tmp_path / "data"), "--method", "flood_fill", "--out", str(out))
    assert code == 2 and err.count("\n") == 1 and "--overwrite" in err
    assert (out / "summary.json").read_bytes() == before
    code, _, err = call(capsys, "--data", str(tmp_path / "data" / "D2"), "--method", "flood_fill", "--out", str(out),
                        "--overwrite", "--quiet", "--limit-objects", "2")
    assert code == 0, err
    assert json.loads((out / "summary.json").read_text())["datasets"] == {
        "D2": {"modality": "US", "objects": 2, "cases": 1, "slices": 1, "pseudo_labels": False}
    }
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["D2__flood_fill__best.png", "D2__flood_fill__worst.png"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data", "{tmp}/missing", "--method", "grabcut"], "does not exist"),
        (["--data", "{tmp}/empty", "--method", "grabcut"], "no dataset found"),
        (["--data", "{tmp}/data", "--method", "magic"], "unknown method"),
        (["--data", "{tmp}/data", "--method", "grabcut", "--prompt", "0,1"], "positive"),
        (["--data", "{tmp}/data", "--method", "grabcut", "--prompt", "abc"], "p,n"),
        (["--data", "{tmp}/data", "--method", "{tmp}/nope.safetensors"], "not found"),
        (["--data", "{tmp}/data", "--method", "sam"], "--sam-checkpoint"),
    ],
)
def test_bad_input_gives_one_line_and_nonzero_exit(tmp_path, capsys, argv, message):
    write_png_dataset(tmp_path / "data" / "D", n_cases=1)
    (tmp_path / "empty").mkdir()
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv] + ["--out", str(tmp_path / "out")]
    code, _, err = call(capsys, *args)
    assert code != 0
    assert err.count("\n") == 1 and err.startswith("evaluate.py: error:") and message in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_corrupt_case_is_a_warning_not_a_failure(tmp_path, capsys):
    root = write_png_dataset(tmp_path / "D", n_cases=2)
    (root / "imagesTs" / "case01_0000.png").write_bytes(b"broken")
    code, _, err = call(capsys, "--data", str(root), "--method", "flood_fill", "--prompt", "1,0", "--out", str(tmp_path / "o"), "--quiet")
    assert code == 0
    assert "warning: skipped D/case01: cannot read image" in err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["skipped_count"] == 1 and summary["skipped"][0]["case"] == "case01"


@pytest.mark.skipif(not (SHARED_DATA / "MRI_BrainTumorPyradiomics").is_dir(), reason="../shared/data not present")
def test_real_volume_dataset_smoke(tmp_path, capsys):
    code, _, err = call(capsys, "--data", str(SHARED_DATA / "MRI_BrainTumorPyradiomics"), "--method", "flood_fill",
                        "--prompt", "1,0", "--limit-objects", "2", "--out", str(tmp_path / "o"), "--quiet")
    assert code == 0, err
    with open(tmp_path / "o" / "per_object.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and all(r["slice"] != "" for r in rows)


def test_default_methods_and_the_synthfm_subcommands(tmp_path, capsys):
    from synthfm.cli import cli
    from synthfm.cli.support import run_click

    write_png_dataset(tmp_path / "data" / "D", n_cases=1)
    out = tmp_path / "out"
    code = run_click(cli, ["evaluate", "--data", str(tmp_path / "data"), "--prompt", "1,0", "--limit-objects", "1",
                           "--no-overlays", "--quiet", "--out", str(out)], prog_name="synthfm")
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["methods"]) == ["synthfm", "random_walker", "grabcut", "flood_fill"]
    assert run_click(cli, ["train", "--help"], prog_name="synthfm") == 0
    assert "--resume" in capsys.readouterr().out
