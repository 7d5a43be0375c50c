"""``python -m synthfm.demo``: writes a gallery of synthetic samples and says where."""

from __future__ import annotations

import cv2
from click.testing import CliRunner

from synthfm.cli_support import run_click
from synthfm.demo import demo


def test_demo_writes_a_gallery(tmp_path):
    out = tmp_path / "demo_out"
    result = CliRunner().invoke(demo, ["--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    gallery = out / "gallery.png"
    assert str(gallery) in result.output
    image = cv2.imread(str(gallery))
    assert image is not None and image.shape[0] > 200 and image.shape[1] > 400


def test_demo_refuses_a_file_as_output_folder(tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("x")
    assert run_click(demo, ["--out", str(target)], prog_name="synthfm.demo") != 0
    assert "error" in capsys.readouterr().err
