"""Training items cross from DataLoader workers as numpy arrays and come back as the same tensors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from synthfm.synth.recipe import load_recipe
from synthfm.training.config import preset_config
from synthfm.training.data import TrainItem
from synthfm.training.loop import make_loader

REPO = Path(__file__).resolve().parents[1]
TENSORS = ("image", "masks", "point_coords", "point_labels", "boxes", "is_box", "n_clicks", "mask_inputs", "has_mask")


def _items(workers, n=3):
    cfg = preset_config("tiny", workers=workers, prompts_per_image=2, mask_fraction=0.5)
    out = []
    for item in make_loader(load_recipe(cfg.recipe), cfg, 64, start=0, rank=0, world_size=1):
        out.append(item)
        if len(out) == n:
            return out


def test_wire_round_trip_is_exact_and_keeps_dtypes():
    item = next(it for it in _items(0, 8) if not it.skip)
    wire = item.to_wire()
    assert all(isinstance(getattr(wire, f), np.ndarray) for f in TENSORS)
    back = TrainItem.from_wire(wire)
    for f in TENSORS:
        a, b = getattr(item, f), getattr(back, f)
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), f
    assert TrainItem.from_wire(item) is item  # already tensors: unchanged
    assert (back.index, back.skip) == (item.index, item.skip)


def test_loader_gives_tensor_items_equal_across_worker_counts():
    a, b = _items(0), _items(2)
    for x, y in zip(a, b):
        assert x.index == y.index and x.skip == y.skip
        for f in TENSORS:
            assert isinstance(getattr(y, f), torch.Tensor)
            assert torch.equal(getattr(x, f), getattr(y, f)), f


def test_bench_loader_prints_a_table_and_writes_json(tmp_path):
    out = tmp_path / "loader.json"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_loader.py"), "--workers", "1",
                           "--items", "20", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "items/s" in done.stdout
    rows = json.loads(out.read_text())["rows"]
    assert {r["wire"] for r in rows} == {"tensors", "arrays"} and all(r["items_s"] > 0 for r in rows)
