"""Where one ``synthfm segment`` call on a 512 x 512 PNG spends its time, phase by phase.

    .venv/bin/python benchmarks/bench_startup.py [--repo PATH] [--model default] [--runs 5] [--json PATH]

Two measurements, each repeated ``--runs`` times in fresh processes (medians reported):

* ``cli_total_s``: wall time of ``python -m synthfm.cli segment IMAGE --point X,Y --out MASK``
  from the parent, i.e. what a user waits for (interpreter start-up included);
* phases, timed inside one fresh process that does what ``segment`` does, in the same order:
  ``interpreter`` (start-up to the first line), ``import_cli`` (click, synthfm.cli),
  ``import_torch``, ``import_segment_anything`` (it imports torchvision, which imports
  torch._dynamo), ``import_synthfm`` (the rest ``segment`` imports), ``read_input`` (PNG + the
  volume convention), ``read_header`` (the checkpoint's metadata), ``build_model`` (the
  architecture, no weights), ``read_weights`` (safetensors to tensors), ``load_weights`` (into
  the model), ``threads`` (torch's first parallel op starts its thread pool), ``set_image``
  (intensity preset + encoder pass), ``predict`` (one click), ``write_mask``.

``--repo`` picks the checkout whose ``synthfm`` is imported (e.g. the main branch for a "before"
figure).  Prints a table and writes JSON; never asserts on timings.  The phases add up to less
than the CLI total: the parent also pays process creation and exit (freeing the model).
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
PHASES = ("interpreter", "import_cli", "import_torch", "import_segment_anything", "import_synthfm", "read_input",
          "read_header", "build_model", "read_weights", "load_weights", "threads", "set_image", "predict",
          "write_mask")
CLICK = (260, 250)


def _phases_child(image: str, model: str, out: str, started_at: float) -> dict[str, float]:
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
    import segment_anything  # noqa: F401

    tick("import_segment_anything")
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
    return times


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose synthfm is measured")
    parser.add_argument("--model", default="default")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", nargs=4, metavar=("IMAGE", "MODEL", "OUT", "T0"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        image, model, out, t0 = args.child
        print(json.dumps(_phases_child(image, model, out, float(t0))))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        image, out = Path(tmp) / "slice.png", Path(tmp) / "mask.png"
        _write_image(image)
        env = _env(args.repo.resolve())
        totals, phases = [], {name: [] for name in PHASES}
        for _ in range(args.runs):
            cmd = [sys.executable, "-m", "synthfm.cli", "segment", str(image), "--point", f"{CLICK[0]},{CLICK[1]}",
                   "--model", args.model, "--out", str(out), "--overwrite"]
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, capture_output=True)
            totals.append(time.perf_counter() - t0)
            child = [sys.executable, str(Path(__file__).resolve()), "--child", str(image), args.model, str(out),
                     repr(time.time())]
            got = json.loads(subprocess.run(child, env=env, check=True, capture_output=True, text=True).stdout)
            for name in PHASES:
                phases[name].append(got[name])
    result = {
        "repo": str(args.repo.resolve()),
        "commit": subprocess.run(["git", "-C", str(args.repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True).stdout.strip(),
        "model": args.model,
        "runs": args.runs,
        "cli_total_s": round(statistics.median(totals), 3),
        "cli_total_runs_s": [round(t, 3) for t in totals],
        "phases_s": {name: round(statistics.median(v), 3) for name, v in phases.items()},
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    result["phases_sum_s"] = round(sum(result["phases_s"].values()), 3)
    print(f"synthfm segment, 512 x 512 PNG, model {args.model}, {args.runs} runs (medians), {result['repo']}")
    print(f"{'phase':<26}{'s':>8}")
    for name, value in result["phases_s"].items():
        print(f"{name:<26}{value:>8.3f}")
    print(f"{'sum of phases':<26}{result['phases_sum_s']:>8.3f}")
    print(f"{'CLI wall (parent)':<26}{result['cli_total_s']:>8.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
