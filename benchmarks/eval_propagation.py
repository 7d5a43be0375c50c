"""3D propagation from one click, evaluated on the volume datasets of a data folder.

    .venv/bin/python benchmarks/eval_propagation.py --model PATH|default --data ../shared/data \\
        --out DIR [--json PATH] [--variant click --variant click+box ...] [--limit-objects N]

For every 3D object (26-connected component per class, >= 0.1 % of the volume) one positive click
on its largest slice seeds ``synthfm.inference.propagation.propagate``; the table gives the mean 3D Dice per
dataset and prompt variant, the seed-slice Dice, an ``oracle`` (a fresh ground-truth click on every
slice, no propagation) and the ratio of slices found to true slices, plus the interactive
refinement check with/without ``mask_input`` feedback.  See ``synthfm/propagation_eval.py`` for
the protocol.  Pseudo-label datasets (model predictions) are included and marked ``pseudo``: their
numbers check the plumbing, they are not an accuracy claim.

Writes DIR/per_object.csv, DIR/refinement.csv, DIR/summary.json, DIR/summary.md and, with --json,
the summary JSON to that path too.  Never asserts on results.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthfm.io.atomic import atomic_write_bytes  # noqa: E402
from synthfm.errors import UserError  # noqa: E402


def _csv_bytes(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    if rows:
        fields = list(dict.fromkeys(k for r in rows for k in r))
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()})
    return buf.getvalue().encode()


def main(argv: list[str] | None = None) -> int:
    from synthfm.inference.propagation import PropagationConfig
    from synthfm.evaluation.propagation import VARIANTS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="synthfm checkpoint (.safetensors) or 'default'")
    parser.add_argument("--sam-checkpoint", default=None, help="official SAM .pth, for checkpoints that reference one")
    parser.add_argument("--data", required=True, action="append", help="data folder (parent of datasets); repeatable")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created; files in it are replaced)")
    parser.add_argument("--json", type=Path, default=None, help="also write the summary JSON here")
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS), default=None,
                        help="prompt strategy for the propagated slices; repeatable (default: click)")
    parser.add_argument("--all-variants", action="store_true", help="run every variant")
    parser.add_argument("--stop-area", type=float, default=PropagationConfig.min_area_fraction,
                        help="stop rule: area below this fraction of the seed slice's")
    parser.add_argument("--stop-score", type=float, default=None,
                        help="stop rule: predicted IoU below this (default: each variant's own)")
    parser.add_argument("--max-growth", type=float, default=None,
                        help="stop rule: area above this x the previous slice's (default: each variant's own)")
    parser.add_argument("--min-fraction", type=float, default=0.001, help="smallest object, fraction of the volume")
    parser.add_argument("--limit-objects", type=int, default=None, help="at most this many objects per dataset")
    parser.add_argument("--no-oracle", action="store_true", help="skip the click-on-every-slice reference")
    parser.add_argument("--no-refinement", action="store_true", help="skip the mask_input refinement check")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except UserError as exc:
        print(f"eval_propagation.py: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


def _run(args) -> int:
    import dataclasses

    import torch

    from synthfm.inference.predictor import Predictor
    from synthfm.evaluation.propagation import VARIANTS, evaluate_volumes, summarise, summary_markdown

    torch.set_num_threads(args.threads)
    names = sorted(VARIANTS) if args.all_variants else (args.variant or ["click"])
    overrides = {"min_area_fraction": args.stop_area}
    if args.stop_score is not None:
        overrides["min_score"] = args.stop_score
    if args.max_growth is not None:
        overrides["max_area_growth"] = args.max_growth
    variants = {n: dataclasses.replace(VARIANTS[n], **overrides) for n in names}
    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out is a file, not a folder: {args.out}")
    # This study measures whether mask inputs (and scores) help, trained or not: use the raw outputs.
    predictor = Predictor.from_checkpoint(args.model, sam_checkpoint=args.sam_checkpoint, device=args.device,
                                          allow_untrained=True)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    ev = evaluate_volumes(args.data, predictor, variants, min_fraction=args.min_fraction,
                          limit_objects=args.limit_objects, oracle=not args.no_oracle,
                          refinement=not args.no_refinement,
                          progress=None if args.quiet else lambda m: print(m, file=sys.stderr))
    elapsed = time.perf_counter() - start
    summary = summarise(ev)
    summary["model"] = {"path": str(args.model), "encoder": predictor.model.encoder_name,
                        "image_size": predictor.image_size,
                        "train_config": predictor.metadata.get("train_config")}
    summary["run"] = {"seconds": round(elapsed, 2), "threads": args.threads, "device": args.device,
                      "python": platform.python_version(), "torch": torch.__version__,
                      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "data": [str(d) for d in args.data],
                      "min_fraction": args.min_fraction, "limit_objects": args.limit_objects}
    summary["rows"] = ev.rows
    text = json.dumps(summary, indent=2, default=float).encode()
    table = summary_markdown(summary)
    atomic_write_bytes(args.out / "per_object.csv", _csv_bytes(ev.rows))
    atomic_write_bytes(args.out / "refinement.csv", _csv_bytes(ev.refinement))
    atomic_write_bytes(args.out / "summary.json", text)
    atomic_write_bytes(args.out / "summary.md", (table + "\n").encode())
    if args.json is not None:
        atomic_write_bytes(args.json, text)
    print(table)
    n = sum(d["objects"] for d in ev.datasets.values())
    print(f"\n{n} objects in {len(ev.datasets)} volume dataset(s), {len(variants)} variant(s), {elapsed:.1f} s; "
          f"skipped {len(ev.skipped)} case(s); results in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
