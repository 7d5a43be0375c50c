"""Smoke test of benchmarks/bench_synth.py (tiny size; it never checks a timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_synth_prints_a_table_and_writes_the_json_keys(tmp_path):
    out = tmp_path / "bench.json"
    # a subprocess, because the benchmark pins OpenCV/torch to one thread for its whole process
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_synth.py"), "--n", "2", "--size", "64", "--repeats", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "img/s/core" in done.stdout
    results = json.loads(out.read_text())
    for key in ("shape_aware_img_s_per_core", "boundary_aware_img_s_per_core", "recipe_img_s_per_core"):
        assert results[key] > 0
    assert results["size"] == 64 and results["n"] == 2
    assert isinstance(results["malloc_tuned"], bool)
