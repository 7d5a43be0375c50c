"""``python -m synthfm.cli.demo``: one click on a real (or generated) image, overlay + gallery."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner

from synthfm.cli.support import run_click
from synthfm.cli.demo import default_data_folder, demo


def _check_outputs(out: Path, output: str) -> dict:
    for name in ("overlay.png", "gallery.png"):
        image = cv2.imread(str(out / name))
        assert image is not None and min(image.shape[:2]) >= 64, name
        assert str(out / name) in output
    summary = json.loads((out / "demo.json").read_text())
    assert 0.0 <= summary["dice"] <= 1.0
    return summary


def test_demo_falls_back_to_a_synthetic_sample(tmp_path, tiny_checkpoint):
    out = tmp_path / "demo_out"
    args = ["--out", str(out), "--model", str(tiny_checkpoint), "--data", str(tmp_path / "no_data")]
    result = CliRunner().invoke(demo, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert _check_outputs(out, result.output)["source"].startswith("synthetic sample")


@pytest.mark.skipif(not (default_data_folder() / "CT_SpleenMSD").is_dir(), reason="../shared/data absent")
def test_demo_on_real_data(tmp_path, tiny_checkpoint):
    out = tmp_path / "demo_out"
    result = CliRunner().invoke(demo, ["--out", str(out), "--model", str(tiny_checkpoint)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert _check_outputs(out, result.output)["source"].startswith("CT_SpleenMSD/")


def test_demo_refuses_a_file_as_output_folder(tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("x")
    assert run_click(demo, ["--out", str(target)], prog_name="synthfm.cli.demo") != 0
    assert "error" in capsys.readouterr().err
    assert target.read_text() == "x"


def test_demo_without_a_model_is_one_clear_error(tmp_path, capsys):
    code = run_click(demo, ["--out", str(tmp_path / "o"), "--model", str(tmp_path / "missing.safetensors")],
                     prog_name="synthfm.cli.demo")
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]


def test_default_data_folder_is_beside_the_repository(monkeypatch):
    # ../shared/data relative to the repository root (a wrong parents[] index made the real-data
    # demo test skip silently after the layout move)
    monkeypatch.delenv("SYNTHFM_DATA", raising=False)
    repo = Path(__file__).resolve().parents[1]
    assert default_data_folder() == repo.parent / "shared" / "data"
