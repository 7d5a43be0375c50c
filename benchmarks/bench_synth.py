"""Throughput of the synthetic engine: images per second of one single-threaded process at 1024^2.

    python benchmarks/bench_synth.py [--n 100] [--size 1024] [--json benchmarks/results/synth.local.json]

Every case generates complete samples in memory (no PNG encoding) with OpenCV and torch pinned
to one thread:

* shape_aware:    recipe ``shape_only``, the shape-aware module: scene, contrast, flavour
                  noise/artefacts, native-resolution up-sampling, target validity; no augmentation
* boundary_aware: recipe ``boundary_only``, the same for the boundary-aware module
* recipe:         recipe ``synthfm`` (the default mix), everything including augmentation

plus ``shape_aware_augmented``, ``boundary_aware_augmented`` and ``recipe_no_augment`` to show
what the augmentation step costs.  Each sample is generated ``--repeats`` times and its fastest
run counts, which filters out time stolen by other processes on a shared machine.  Prints a
table and writes JSON with ``<case>_img_s_per_core`` (from the fastest runs), ``<case>_img_s_wall``
and ``<case>_img_per_cpu_s`` (all runs, by wall clock and by process CPU time) and
``<case>_median_ms``.  Targets: >= 90 img/s/core
shape-aware, >= 45 img/s/core boundary-aware.  Like the data workers, the benchmark first lets
glibc malloc keep freed blocks (``synthfm.synth.memory``; ``--default-malloc`` to compare).  The
load average is recorded because a shared machine makes every number worse.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthfm.synth.generator import generate_sample  # noqa: E402
from synthfm.synth.memory import keep_freed_memory  # noqa: E402
from synthfm.synth.recipe import load_recipe  # noqa: E402

# (case, recipe, augmentation)
CASES = (
    ("shape_aware", "shape_only", False),
    ("boundary_aware", "boundary_only", False),
    ("recipe", "synthfm", True),
    ("shape_aware_augmented", "shape_only", True),
    ("boundary_aware_augmented", "boundary_only", True),
    ("recipe_no_augment", "synthfm", False),
)
BENCH_SEED = 12345


def images_per_second(recipe_name: str, n: int, size: int, augmentation: bool, repeats: int) -> dict[str, float]:
    """Throughput of samples 0..n-1 (after 3 warm-up samples), each generated ``repeats`` times.

    img_s_per_core: n / sum over samples of the fastest of its repeats -- what one core does when
    nothing else runs (the minimum filters out time stolen by other processes on a shared
    machine; each sample's work is identical across repeats).  img_s_wall / img_per_cpu_s: all
    runs, by wall clock and by this process's CPU time.  median_ms: median of the fastest times.
    """
    recipe = load_recipe(recipe_name)
    for i in range(3):
        generate_sample(recipe, size, np.random.default_rng([BENCH_SEED, 10**6 + i]), augmentation=augmentation)
    best = np.full(n, np.inf)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        for i in range(n):
            t0 = time.perf_counter()
            generate_sample(recipe, size, np.random.default_rng([BENCH_SEED, i]), augmentation=augmentation)
            best[i] = min(best[i], time.perf_counter() - t0)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    runs = n * repeats
    return {
        "img_s_per_core": n / float(best.sum()),
        "img_s_wall": runs / wall,
        "img_per_cpu_s": runs / max(cpu, 1e-9),
        "median_ms": 1e3 * float(np.median(best)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="samples per case (default 100)")
    parser.add_argument("--size", type=int, default=1024, help="image side (default 1024)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each sample; the fastest counts (default 3)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--default-malloc", action="store_true",
                        help="do not tune glibc malloc (as the data workers do); shows the page-fault cost")
    args = parser.parse_args(argv)
    if args.n < 1 or args.size < 32 or args.repeats < 1:
        parser.error("need --n >= 1, --size >= 32 and --repeats >= 1")

    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency, but the engine does not need it
        pass

    malloc_tuned = False if args.default_malloc else keep_freed_memory()
    load_before = os.getloadavg()
    results: dict[str, object] = {}
    rows = []
    for name, recipe_name, augmentation in CASES:
        measured = images_per_second(recipe_name, args.n, args.size, augmentation, args.repeats)
        for key, value in measured.items():
            results[f"{name}_{key}"] = round(value, 2)
        rows.append((name, recipe_name, "yes" if augmentation else "no", measured))
    load_after = os.getloadavg()

    print(f"synthetic engine, {args.size}x{args.size}, n={args.n} samples x {args.repeats} runs per case, 1 thread, "
          f"malloc {'tuned' if malloc_tuned else 'default'} "
          f"(load average {load_before[0]:.2f} -> {load_after[0]:.2f} on {os.cpu_count()} cores)")
    header = ("case", "recipe", "augment", "img/s/core", "img/s wall", "img/cpu-s", "median ms")
    print(f"{header[0]:26s} {header[1]:14s} {header[2]:>7s} {header[3]:>10s} {header[4]:>10s} {header[5]:>10s} {header[6]:>10s}")
    for name, recipe_name, aug, m in rows:
        print(f"{name:26s} {recipe_name:14s} {aug:>7s} {m['img_s_per_core']:10.1f} {m['img_s_wall']:10.1f} "
              f"{m['img_per_cpu_s']:10.1f} {m['median_ms']:10.2f}")
    results.update(
        size=args.size,
        n=args.n,
        repeats=args.repeats,
        malloc_tuned=malloc_tuned,
        cpu_count=os.cpu_count(),
        load_average_before=round(load_before[0], 2),
        load_average_after=round(load_after[0], 2),
        machine=platform.processor() or platform.machine(),
        python=platform.python_version(),
        opencv=cv2.__version__,
        numpy=np.__version__,
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
