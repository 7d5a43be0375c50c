#!/usr/bin/env python
"""Adapting the default model to a dataset: zero-shot, label-free (fit-recipe), fine-tuned, from scratch.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_adapt.py --data ../shared/data --json benchmarks/results/adapt.json

Datasets (by rule, not by result): for each of CT, MRI and US, the dataset (pseudo-label sets left
out) with the most cases among those with at least ``POOL + MIN_TEST`` (24) cases, ties broken by
name.  Each is split by case with a fixed seed: a training pool of the first 20 cases of a
permutation (N = 5 uses the pool's first 5), test = the other cases (at most ``MAX_TEST``).  The
split is made with symlinks in a temporary folder (nothing is copied); every arm is the real CLI:

* ``zero_shot``: the default model;
* ``label_free``: ``synthfm fit-recipe`` on the pool's 20 images (no labels), then
  ``train.py --recipe FITTED --init default``;
* ``finetune_N``: ``train.py --finetune POOL_N --init default`` (N labelled cases, of which
  ``--val-fraction`` 0.2 are held out to pick best.safetensors; 25 % synthetic images mixed in);
* ``scratch_N``: the same command without ``--init`` (``--preset click``: same architecture,
  same data mix, random initial weights): the control.

Every trained arm gets the same fixed budget (``--steps`` optimiser steps of ``--batch`` images,
``--workers 0``, one thread), and its CPU minutes (user + system of the child process) are
recorded.  Evaluation: the evaluate.py protocol (seed 0, objects >= 0.1 % of the image) at (1,0)
and (3,2) on the test cases, best.safetensors of each run.  Writes a JSON with the default's sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

POOL, SMALL_N, MIN_TEST, MAX_TEST = 20, 5, 4, 30
MODALITIES = ("CT", "MRI", "US")
SETTINGS = ((1, 0), (3, 2))
SPLIT_SEED = 16
REPO = Path(__file__).resolve().parents[1]


def pick_datasets(data: Path) -> list:
    from synthfm.evaluation.datasets import find_datasets, list_cases

    datasets, _ = find_datasets([data])
    chosen = []
    for modality in MODALITIES:
        cands = [(len(list_cases(d)), d.name, d) for d in datasets if d.modality == modality]
        cands = [c for c in cands if c[0] >= POOL + MIN_TEST]
        if cands:
            chosen.append(sorted(cands, key=lambda c: (-c[0], c[1]))[0][2])
    return chosen


def split(info) -> tuple[list, list]:
    from synthfm.evaluation.datasets import list_cases

    cases = list_cases(info)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(cases))
    pool = [cases[i] for i in order[:POOL]]
    test = [cases[i] for i in order[POOL:POOL + MAX_TEST]]
    return pool, test


def link_dataset(info, cases, dest: Path, split_name: str) -> Path:
    """A dataset folder at ``dest`` whose images<split>/labels<split> are symlinks to ``cases``."""
    (dest / f"images{split_name}").mkdir(parents=True)
    (dest / f"labels{split_name}").mkdir(parents=True)
    (dest / "dataset.json").write_text((info.root / "dataset.json").read_text())
    for c in cases:
        (dest / f"images{split_name}" / c.image_path.name).symlink_to(c.image_path.resolve())
        (dest / f"labels{split_name}" / c.label_path.name).symlink_to(c.label_path.resolve())
    return dest


def run_cli(args: list[str], log: Path) -> dict:
    """Run one command (a child python), return its wall and CPU seconds; raise on failure."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(args)}; see {log}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"command": " ".join(["python", *args]), "wall_s": round(wall, 1), "cpu_min": round(cpu / 60.0, 2)}


def evaluate_on(test_dir: Path, checkpoint: str) -> dict:
    import torch

    from synthfm.evaluation.datasets import find_datasets
    from synthfm.evaluation.methods import build_methods
    from synthfm.evaluation.protocol import EvalProtocol, evaluate

    torch.set_num_threads(1)
    datasets, _ = find_datasets([test_dir])
    methods = build_methods([checkpoint])
    t0 = time.process_time()
    result = evaluate(datasets, methods, EvalProtocol(settings=SETTINGS), progress=False, warn=lambda m: None)
    out = {"eval_cpu_min": round((time.process_time() - t0) / 60.0, 2)}
    for p, n in SETTINGS:
        d = [r.dice for r in result.rows if r.prompt == f"{p},{n}"]
        out[f"{p},{n}"] = round(float(np.mean(d)), 4) if d else None
    out["objects"] = len([r for r in result.rows if r.prompt == "1,0"])
    return out


@click.command()
@click.option("--data", default="../shared/data", show_default=True, type=click.Path(path_type=Path))
@click.option("--json", "json_path", required=True, type=click.Path(path_type=Path))
@click.option("--steps", default=100, show_default=True, help="Optimiser steps per trained arm.")
@click.option("--batch", default=16, show_default=True, help="Images per step.")
@click.option("--only", multiple=True, help="Run only these datasets (names).")
@click.option("--work", default=None, type=click.Path(path_type=Path), help="Keep runs here (default: a temp folder).")
@click.option("--arm", "only_arms", multiple=True,
              type=click.Choice(["label_free", "finetune_5", "finetune_20", "scratch_5", "scratch_20"]),
              help="Run only these trained arms (zero-shot is always measured).")
def main(data, json_path, steps, batch, only, work, only_arms):
    from synthfm.weights import DEFAULT_MODEL_PATH

    sha = hashlib.sha256(DEFAULT_MODEL_PATH.read_bytes()).hexdigest()
    work = Path(work or tempfile.mkdtemp(prefix="bench_adapt_"))
    work.mkdir(parents=True, exist_ok=True)
    epochs = 4
    ipe = steps * batch // epochs
    common = ["--epochs", str(epochs), "--images-per-epoch", str(ipe), "--batch-size", str(batch), "--workers", "0",
              "--quiet", "--device", "cpu"]
    report = {"default_sha256": sha, "steps_per_arm": steps, "batch": batch, "settings": ["1,0", "3,2"],
              "split_seed": SPLIT_SEED, "pool": POOL, "small_n": SMALL_N, "datasets": {}}
    for info in pick_datasets(data):
        if only and info.name not in only:
            continue
        pool, test = split(info)
        root = work / info.name
        test_dir = link_dataset(info, test, root / "test", "Ts")
        sets = {n: link_dataset(info, pool[:n], root / f"pool{n}", "Tr") for n in (SMALL_N, POOL)}
        arms: dict[str, dict] = {}
        print(f"== {info.name}: pool {len(pool)} cases, test {len(test)} cases", flush=True)
        arms["zero_shot"] = {"command": "default model", "cpu_min": 0.0, **evaluate_on(test_dir, "default")}
        print(info.name, "zero_shot", arms["zero_shot"], flush=True)
        fitted = root / "fitted.yaml"
        fit = run_cli(["-m", "synthfm.cli", "fit-recipe", str(sets[POOL] / "imagesTr"), "--out", str(fitted),
                       "--modality", info.modality], root / "fit.log")
        plans = {
            "label_free": ["train.py", "--recipe", str(fitted), "--init", "default", "--val-images", "16"],
            **{f"finetune_{n}": ["train.py", "--finetune", str(sets[n]), "--init", "default"] for n in (SMALL_N, POOL)},
            **{f"scratch_{n}": ["train.py", "--preset", "click", "--finetune", str(sets[n]), "--warmup-steps", "10"]
               for n in (SMALL_N, POOL)},
        }
        for arm, args in plans.items():
            if only_arms and arm not in only_arms:
                continue
            out = root / arm
            res = run_cli([*args, "--out", str(out), *common], root / f"{arm}.log")
            if arm == "label_free":
                res["fit_recipe"] = fit
                res["cpu_min"] = round(res["cpu_min"] + fit["cpu_min"], 2)
            arms[arm] = {**res, **evaluate_on(test_dir, str(out / "best.safetensors"))}
            print(info.name, arm, arms[arm], flush=True)
        report["datasets"][info.name] = {"modality": info.modality, "train_pool": [c.case_id for c in pool],
                                         "test_cases": [c.case_id for c in test], "arms": arms,
                                         "fitted_recipe": fitted.read_text()}
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=1))
    print_table(report)
    print("\n" + markdown_table(report))
    json_path.write_text(json.dumps(report, indent=1))


def print_table(report: dict) -> None:
    print(f"\nmean DSC on the test cases, (1,0) / (3,2); CPU minutes per arm; default sha {report['default_sha256'][:12]}")
    for name, ds in report["datasets"].items():
        print(f"\n{name} ({ds['modality']}, {len(ds['test_cases'])} test cases, {ds['arms']['zero_shot']['objects']} objects)")
        for arm, r in ds["arms"].items():
            print(f"  {arm:<12} {r['1,0']:.3f} / {r['3,2']:.3f}   cpu {r['cpu_min']:.1f} min")


def markdown_table(report: dict) -> str:
    """The README table: one row per dataset and arm, DSC at (1,0) and (3,2), gain over zero-shot, CPU minutes."""
    lines = ["| dataset (test cases / objects) | arm | DSC (1,0) | DSC (3,2) | vs zero-shot (1,0) | CPU min |",
             "|---|---|---|---|---|---|"]
    for name, ds in report["datasets"].items():
        zs = ds["arms"]["zero_shot"]
        where = f"{name} ({len(ds['test_cases'])} / {zs['objects']})"
        for arm, r in ds["arms"].items():
            gain = "" if arm == "zero_shot" else f"{r['1,0'] - zs['1,0']:+.3f}"
            lines.append(f"| {where} | {arm} | {r['1,0']:.3f} | {r['3,2']:.3f} | {gain} | {r['cpu_min']:.1f} |")
            where = ""
    return "\n".join(lines)


if __name__ == "__main__":
    main()
