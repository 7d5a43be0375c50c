"""checkpoints/store_default.py: a training checkpoint stored as a shippable default."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from synthfm.modeling import build_model
from synthfm.weights.checkpoint import load_checkpoint, save_checkpoint

SCRIPT = Path(__file__).resolve().parents[1] / "checkpoints" / "store_default.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("store_default", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(*args):
    """In-process run: (exit code, everything it printed)."""
    result = CliRunner().invoke(_load_script().main, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture()
def trained(tmp_path):
    torch.manual_seed(0)
    model = build_model("tiny_cnn", image_size=64)
    path = tmp_path / "run" / "best.safetensors"
    path.parent.mkdir()
    meta = {"val": {"mean": 0.5}, "train_config": {"finetune": [], "finetune_synth_fraction": 0.25}, "step": 7}
    save_checkpoint(path, model, metadata=meta)
    return path, model


def test_stores_half_precision_with_provenance_and_same_weights(trained, tmp_path):
    src, model = trained
    out = tmp_path / "default.safetensors"
    code, text = _run(src, "--out", out, "--run", "runs/x", "--flip-tta", "--clicked-components", "--single-mask", "iou_blend")
    assert code == 0, text
    assert out.stat().st_size < src.stat().st_size * 0.6  # float16 on disk
    loaded, meta = load_checkpoint(out)
    assert meta["dtype"] == "float16" and meta["step"] == 7 and meta["val"] == {"mean": 0.5}
    assert meta["shipped_from"] == {"run": "runs/x", "file": "best.safetensors"}
    assert meta["inference"] == {"focus": False, "flip_tta": True, "clicked_components": True, "single_mask": "iou_blend"}
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        tol = 1e-3 * max(1.0, a.abs().max().item()) if a.is_floating_point() else 0
        assert (a - b).abs().max().item() <= tol, k


def test_refuses_to_replace_without_flag_and_keeps_the_file(trained, tmp_path):
    src, _ = trained
    out = tmp_path / "default.safetensors"
    out.write_bytes(b"mine")
    code, text = _run(src, "--out", out)
    assert code != 0 and "--overwrite" in text
    assert out.read_bytes() == b"mine"
    assert _run(src, "--out", out, "--overwrite")[0] == 0


def test_refuses_a_fine_tuned_checkpoint(tmp_path):
    src = tmp_path / "ft.safetensors"
    save_checkpoint(src, build_model("tiny_cnn", image_size=64), metadata={"train_config": {"finetune": ["data/KiTS"]}})
    code, text = _run(src, "--out", tmp_path / "d.safetensors")
    assert code != 0 and "synthetic-only" in text
    assert not (tmp_path / "d.safetensors").exists()


def test_bad_checkpoint_is_one_line_from_the_command_line(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    r = subprocess.run([sys.executable, str(SCRIPT), str(bad), "--out", str(tmp_path / "d.safetensors")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and r.stderr.strip().count("\n") == 0 and "error:" in r.stderr


def test_real_data_is_found_through_the_init_chain():
    from synthfm.training.finetune_data import real_data_seen

    assert real_data_seen({"train_config": {"finetune": [], "finetune_synth_fraction": 0.25}}) == []
    assert real_data_seen({"init": {"finetune_datasets": [{"name": "KiTS", "train_cases": 20}]}}) == ["KiTS"]
    assert real_data_seen({"finetune_datasets": [{"name": "data/BUSI"}], "train_config": {"finetune": ["data/BUSI"]}}) \
        == ["data/BUSI"]
