"""The bad-input corpus (tests/bad_inputs): one clear error line, non-zero exit, no traceback, no
output file changed; accepted borderline inputs give a sane result.

Most cases run in-process through ``run_click`` (the console-script path); the cases marked
``in_subprocess`` run as real processes (``python -m synthfm.cli``, ``evaluate.py``, ``train.py``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from bad_inputs.corpus import CASES, Assets, corpus_table
from bad_inputs import files as F
from synthfm.weights.checkpoint import save_checkpoint
from synthfm.cli.support import run_click
from synthfm.modeling import build_model

REPO = Path(__file__).resolve().parents[1]
PROGRAMS = {"segment": "synthfm", "generate": "synthfm", "export-onnx": "synthfm", "annotate": "synthfm",
            "evaluate": "evaluate.py", "train": "train.py"}


def _load_script(name: str, attr: str):
    spec = importlib.util.spec_from_file_location(f"_script_{name}", REPO / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, attr)


def _command(kind: str):
    if kind == "evaluate":
        return _load_script("evaluate", "main")
    if kind == "train":
        from synthfm.cli.train import train_command

        return train_command
    from synthfm.cli import cli

    return cli


def _find_read_only_folder(base: Path) -> Path | None:
    """A folder in which this process cannot create a file: a chmod 555 folder, or (as root, who
    ignores permissions) a kernel folder such as /sys that refuses new files."""
    ro = base / "read_only"
    ro.mkdir()
    ro.chmod(0o555)
    for candidate in (ro, Path("/sys"), Path("/proc/self")):
        try:
            fd, name = tempfile.mkstemp(dir=candidate)
        except OSError:
            return candidate
        os.close(fd)
        os.unlink(name)
    return None


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Assets:
    root = tmp_path_factory.mktemp("assets")
    torch.manual_seed(0)
    save_checkpoint(root / "tiny.safetensors", build_model("tiny_cnn", image_size=64))
    save_checkpoint(root / "tiny_vit.safetensors", build_model("tiny_vit", image_size=64))
    import cv2
    import SimpleITK as sitk

    cv2.imwrite(str(root / "disc.png"), F.disc())
    vol = np.full((5, 30, 40), -1000, np.int16)
    vol[:, 10:20, 12:30] = 50
    sitk.WriteImage(sitk.GetImageFromArray(vol), str(root / "ct.nii.gz"))
    yield Assets(root, root / "tiny.safetensors", root / "tiny_vit.safetensors", root / "disc.png", root / "ct.nii.gz",
                 _find_read_only_folder(root))
    (root / "read_only").chmod(0o755)


def _snapshot(folder: Path) -> dict[str, str]:
    def digest(p: Path) -> str:
        if p.is_symlink():
            return "link:" + os.readlink(p)
        if p.is_file():
            return hashlib.sha256(p.read_bytes()).hexdigest()
        return "dir" if p.is_dir() else "special"

    return {str(p.relative_to(folder)): digest(p) for p in sorted(folder.rglob("*"))}


def _run(case, argv: list[str], capsys) -> tuple[int, str, str]:
    prog = PROGRAMS[case.command]
    if case.in_subprocess:
        head = {"synthfm": [sys.executable, "-m", "synthfm.cli"], "evaluate.py": [sys.executable, str(REPO / "evaluate.py")],
                "train.py": [sys.executable, str(REPO / "train.py")]}[prog]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "SYNTHFM_DEBUG": ""}
        done = subprocess.run(head + argv, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
        return done.returncode, done.stdout, done.stderr
    code = run_click(_command(case.command), argv, prog_name=prog)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case, assets, tmp_path, capsys, monkeypatch):
    check_case(case, assets, tmp_path, capsys, monkeypatch)


def check_case(case, assets, tmp_path, capsys, monkeypatch) -> None:
    """Run one corpus case and check the contract (module docstring of bad_inputs/corpus.py)."""
    if case.needs_read_only and assets.read_only is None:
        pytest.skip("no folder that this process cannot write into")
    monkeypatch.delenv("SYNTHFM_DEBUG", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    d = tmp_path / "case"
    d.mkdir()
    argv = case.argv(d, assets)
    before = _snapshot(d)
    if case.patch is not None:
        assert not case.in_subprocess, "patches apply in-process only"
        case.patch(monkeypatch, d, assets)
    if case.needs_read_only:
        assert not (assets.read_only / "mask.png").exists()
    code, out, err = _run(case, argv, capsys)
    assert not (d / "PWNED").exists(), "a planted pickle was executed"
    if case.expect is None:
        assert code == 0, err
        case.check(d)
        return
    prog = PROGRAMS[case.command]
    assert code != 0, out
    assert "Traceback" not in err and "Traceback" not in out, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(f"{prog}: error: ")]
    assert len(errors) == 1, err
    others = [ln for ln in lines if ln not in errors]
    assert all(ln.startswith(("warning:", "note:")) for ln in others), err
    assert re.search(case.expect, errors[0]), errors[0]
    assert _snapshot(d) == before, "a refused run changed or added files"
    if case.needs_read_only:
        assert not (assets.read_only / "mask.png").exists()
        assert not list(assets.read_only.glob(".mask.*"))  # no temporary file left behind


def test_corpus_is_large_and_distinct():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    refused = [c for c in CASES if c.expect is not None]
    assert len(refused) >= 30
    assert {c.command for c in CASES} >= {"segment", "evaluate", "train", "generate", "export-onnx"}
    assert sum(c.in_subprocess for c in CASES) >= 3
    table = corpus_table()
    assert table.count("\n") == len(CASES) + 1
