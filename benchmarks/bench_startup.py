"""Where one ``synthfm segment`` call on a 512 x 512 PNG spends its time, phase by phase.

    .venv/bin/python benchmarks/bench_startup.py [--repo PATH [--repo PATH2]] [--model default] [--runs 5] [--json PATH]

Two measurements, each repeated ``--runs`` times in fresh processes (median and spread reported):

* ``cli_total_s``: wall time of ``python -m synthfm.cli segment IMAGE --point X,Y --out MASK``
  from the parent, i.e. what a user waits for (interpreter start-up included);
* phases, timed inside one fresh process that does what ``segment`` does, in the same order:
  ``interpreter`` (start-up to the first line), ``import_cli`` (click, synthfm.cli),
  ``import_torch``, ``import_synthfm`` (the rest ``segment`` imports; with a checkout whose
  modeling imports segment_anything at module level this includes segment_anything, torchvision
  and torch._dynamo, 1.5-3 s), ``read_input`` (PNG + the volume convention), ``read_header`` (the
  checkpoint's metadata), ``build_model`` (the architecture, no weights), ``read_weights``
  (safetensors to tensors), ``load_weights`` (into the model), ``threads`` (torch's first parallel
  op starts its thread pool), ``set_image`` (intensity preset + encoder pass), ``predict`` (one
  click), ``write_mask``.  ``modules`` records whether segment_anything / torchvision were imported
  by the end.

``--repo`` picks the checkout whose ``synthfm`` is imported (e.g. the main branch for a "before"
figure); given twice, the runs alternate between the two checkouts (A, B, A, B, ...) so that a
background load hits both alike, and the JSON holds one entry per checkout.  Prints a table and
writes JSON; never asserts on timings.  The phases add up to less than the CLI total: the parent
also pays process creation and exit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHASES = ("interpreter", "import_cli", "import_torch", "import_synthfm", "read_input",
          "read_header", "build_model", "read_weights", "load_weights", "threads", "set_image", "predict",
          "write_mask")
CLICK = (260, 250)
WATCHED_MODULES = ("segment_anything", "torchvision", "torch._dynamo", "scipy")


def _phases_child(image: str, model: str, out: str, started_at: float) -> dict:
    """Run in a fresh process: time each phase of ``segment`` (see the module docstring)."""
    times: dict[str, float] = {}
    last = time.time()
    times["interpreter"] = last - started_at

    def tick(name: str) -> None:
        nonlocal last
        now = time.time()
        times[name] = now - last
        last = now

    import synthfm.cli  # noqa: F401

    tick("import_cli")
    import torch

    tick("import_torch")
    import numpy as np
    import safetensors.torch

    from synthfm.inference.predictor import Predictor
    from synthfm.io.images import read_image, write_mask
    from synthfm.io.orientation import radiological_view
    from synthfm.modeling import build_model
    from synthfm.weights import resolve_model
    from synthfm.weights.checkpoint import load_checkpoint, read_metadata

    tick("import_synthfm")
    loaded = radiological_view(read_image(image))
    tick("read_input")
    path = resolve_model(model)
    meta = read_metadata(path)
    tick("read_header")
    build_model(meta["encoder"], image_size=int(meta["image_size"]))
    tick("build_model")
    safetensors.torch.load_file(str(path))
    tick("read_weights")
    # load_checkpoint builds and reads again: the split above is what it costs; the rest is loading
    net, meta = load_checkpoint(path)
    times["load_weights"] = max(0.0, time.time() - last - times["build_model"] - times["read_weights"])
    last = time.time()
    torch.ones(256, 256) @ torch.ones(256, 256)
    tick("threads")
    predictor = Predictor(net)
    predictor.set_image(loaded.array, preset="auto")
    tick("set_image")
    masks, _, _ = predictor.predict(np.array([CLICK], np.float32), np.array([1]))
    tick("predict")
    write_mask(out, masks[0], like=loaded)
    tick("write_mask")
    return {"times": times, "modules": {name: name in sys.modules for name in WATCHED_MODULES}}


def _env(repo: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(repo)
    return env


def _write_image(path: Path) -> None:
    import cv2
    import numpy as np

    yy, xx = np.mgrid[:512, :512]
    rng = np.random.default_rng(0)
    img = (((yy - 250) ** 2 + (xx - 260) ** 2 < 90**2) * 150 + 40 + rng.normal(0, 10, (512, 512))).clip(0, 255)
    cv2.imwrite(str(path), img.astype(np.uint8))


def _spread(values: list[float]) -> dict[str, float]:
    """Median, quartiles, min and max (seconds, rounded to ms)."""
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return {"median": round(statistics.median(values), 3), "q1": round(q[0], 3), "q3": round(q[2], 3),
            "min": round(min(values), 3), "max": round(max(values), 3)}


def _measure_once(repo: Path, image: Path, out: Path, model: str) -> tuple[float, dict]:
    env = _env(repo)
    cmd = [sys.executable, "-m", "synthfm.cli", "segment", str(image), "--point", f"{CLICK[0]},{CLICK[1]}",
           "--model", model, "--out", str(out), "--overwrite"]
    t0 = time.perf_counter()
    # cwd outside every checkout: `python -m` puts the working folder first on sys.path, which would
    # otherwise import the synthfm of wherever the benchmark was started instead of --repo's
    subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=image.parent)
    total = time.perf_counter() - t0
    child = [sys.executable, str(Path(__file__).resolve()), "--child", str(image), model, str(out), repr(time.time())]
    got = json.loads(subprocess.run(child, env=env, check=True, capture_output=True, text=True,
                                    cwd=image.parent).stdout)
    return total, got


def _summary(repo: Path, model: str, totals: list[float], phases: dict[str, list[float]], modules: dict) -> dict:
    result = {
        "repo": str(repo),
        "commit": subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True).stdout.strip(),
        "model": model,
        "runs": len(totals),
        "cli_total_s": round(statistics.median(totals), 3),
        "cli_total_spread_s": _spread(totals),
        "cli_total_runs_s": [round(t, 3) for t in totals],
        "phases_s": {name: round(statistics.median(v), 3) for name, v in phases.items()},
        "modules_imported": modules,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
    }
    result["phases_sum_s"] = round(sum(result["phases_s"].values()), 3)
    return result


def _print(result: dict) -> None:
    sp = result["cli_total_spread_s"]
    print(f"synthfm segment, 512 x 512 PNG, model {result['model']}, {result['runs']} runs (medians), "
          f"{result['repo']} @ {result['commit']}")
    print(f"{'phase':<26}{'s':>8}")
    for name, value in result["phases_s"].items():
        print(f"{name:<26}{value:>8.3f}")
    print(f"{'sum of phases':<26}{result['phases_sum_s']:>8.3f}")
    print(f"{'CLI wall (parent)':<26}{result['cli_total_s']:>8.3f}   (IQR {sp['q1']:.3f}-{sp['q3']:.3f}, "
          f"min {sp['min']:.3f}, max {sp['max']:.3f})")
    print(f"modules imported: {result['modules_imported']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, action="append", default=None,
                        help="checkout whose synthfm is measured; twice = alternate runs between two checkouts")
    parser.add_argument("--model", default="default")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", nargs=4, metavar=("IMAGE", "MODEL", "OUT", "T0"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        image, model, out, t0 = args.child
        print(json.dumps(_phases_child(image, model, out, float(t0))))
        return 0

    repos = [r.resolve() for r in (args.repo or [REPO])]
    totals = {r: [] for r in repos}
    phases = {r: {name: [] for name in PHASES} for r in repos}
    modules = {r: {} for r in repos}
    with tempfile.TemporaryDirectory() as tmp:
        image, out = Path(tmp) / "slice.png", Path(tmp) / "mask.png"
        _write_image(image)
        for _ in range(args.runs):
            for repo in repos:  # alternate, so that a background load affects every checkout alike
                total, got = _measure_once(repo, image, out, args.model)
                totals[repo].append(total)
                for name in PHASES:
                    phases[repo][name].append(got["times"][name])
                modules[repo] = got["modules"]
    results = [_summary(r, args.model, totals[r], phases[r], modules[r]) for r in repos]
    for result in results:
        _print(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = results[0] if len(results) == 1 else {"interleaved": True, "results": results}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
