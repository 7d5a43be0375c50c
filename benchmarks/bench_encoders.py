"""Benchmark the registered encoders on the CPU: size, inference latency, training throughput.

For each encoder: parameters (encoder / whole model), size of the whole model as an fp16
checkpoint (MiB), encoder forward at the model's image size (the cost of Predictor.set_image),
prompt encoder + mask decoder for one click (the cost of one predict), and training throughput
at 256 px, batch 8, one click per image (forward, Dice loss, backward, AdamW step).
Timings are medians over --reps runs after one warm-up, with torch.set_num_threads(--threads).

    .venv/bin/python benchmarks/bench_encoders.py [--json PATH] [--encoders tiny_cnn,tiny_vit] [--reps 10]

Prints a table and writes JSON.  Never asserts on timings.  On a shared, oversubscribed CPU,
OpenMP's default spin-waiting makes multi-threaded timings several times slower, so this script
sets ``OMP_WAIT_POLICY=PASSIVE`` unless the variable is already set (e.g. ``OMP_WAIT_POLICY=ACTIVE``
to measure the default); the value used is recorded in the JSON.
"""

from __future__ import annotations

import os

# Must precede the first import of torch (the OpenMP runtime reads it once).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthfm.io.atomic import atomic_write_bytes  # noqa: E402
from synthfm.weights.checkpoint import save_checkpoint  # noqa: E402
from synthfm.modeling import ENCODERS, build_model  # noqa: E402

TRAIN_SIZE = 256
TRAIN_BATCH = 8


def _median_seconds(fn, reps: int) -> float:
    fn()  # warm-up (allocations, oneDNN kernel selection)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _fp16_mib(model) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.safetensors"
        save_checkpoint(path, model, half=True)
        return path.stat().st_size / 2**20


def _dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    prob = logits.sigmoid().flatten(1)
    target = target.flatten(1)
    inter = (prob * target).sum(1)
    return (1 - (2 * inter + 1) / (prob.sum(1) + target.sum(1) + 1)).mean()


def bench_encoder(name: str, image_size: int | None, reps: int, train_reps: int) -> dict:
    torch.manual_seed(0)
    model = build_model(name, image_size=image_size).eval()
    s = model.image_size
    n_enc = sum(p.numel() for p in model.image_encoder.parameters())
    n_all = sum(p.numel() for p in model.parameters())
    image = torch.rand(1, 3, s, s) * 255

    with torch.inference_mode():
        encode_s = _median_seconds(lambda: model.encode(image), reps)
        emb = model.encode(image)
        click = torch.tensor([[[s / 2, s / 2]]])
        label = torch.ones(1, 1, dtype=torch.int64)
        decode_s = _median_seconds(lambda: model.decode(emb, click, label, multimask_output=True), max(reps, 20))

    row = {
        "encoder": name,
        "image_size": s,
        "encoder_params": n_enc,
        "model_params": n_all,
        "fp16_mib": round(_fp16_mib(model), 2),
        "encode_ms": round(1000 * encode_s, 1),
        "decode_one_click_ms": round(1000 * decode_s, 2),
    }
    if ENCODERS[name].official:
        row["train_img_per_s"] = None  # frozen ViT at 1024 px: not a CPU training configuration
        return row

    train_model = build_model(name, image_size=TRAIN_SIZE).train()
    opt = torch.optim.AdamW(train_model.trainable_parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(TRAIN_BATCH, 3, TRAIN_SIZE, TRAIN_SIZE, generator=g) * 255
    targets = (torch.rand(TRAIN_BATCH, 1, TRAIN_SIZE // 4, TRAIN_SIZE // 4, generator=g) > 0.5).float()
    coords = torch.rand(TRAIN_BATCH, 1, 2, generator=g) * TRAIN_SIZE
    labels = torch.ones(TRAIN_BATCH, 1, dtype=torch.int64)

    def step():
        opt.zero_grad(set_to_none=True)
        logits, _ = train_model.decode(train_model.encode(images), coords, labels)
        _dice_loss(logits, targets).backward()
        opt.step()

    step_s = _median_seconds(step, train_reps)
    row["train_step_ms"] = round(1000 * step_s, 1)
    row["train_img_per_s"] = round(TRAIN_BATCH / step_s, 1)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/bench_encoders.json"), help="JSON output path")
    parser.add_argument("--encoders", default="tiny_cnn,tiny_vit", help="comma-separated encoder names (vit_b is slow on CPU)")
    parser.add_argument("--image-size", type=int, default=None, help="override every encoder's default image size")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=10, help="timed repetitions for inference")
    parser.add_argument("--train-reps", type=int, default=5, help="timed repetitions for the train step")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.encoders.split(",") if n.strip()]
    unknown = [n for n in names if n not in ENCODERS]
    if unknown:
        parser.error(f"unknown encoders {unknown}; known: {', '.join(ENCODERS)}")

    rows = []
    for name in names:
        reps = min(args.reps, 3) if ENCODERS[name].official else args.reps
        rows.append(bench_encoder(name, args.image_size, reps, args.train_reps))
        print(f"  done {name}", file=sys.stderr, flush=True)

    cols = ["encoder", "image_size", "encoder_params", "model_params", "fp16_mib", "encode_ms", "decode_one_click_ms", "train_img_per_s"]
    print(" | ".join(f"{c:>19}" for c in cols))
    for r in rows:
        print(" | ".join(f"{str(r.get(c)):>19}" for c in cols))

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    result = {
        "benchmark": "bench_encoders",
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": load,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "train": {"image_size": TRAIN_SIZE, "batch": TRAIN_BATCH, "clicks_per_image": 1, "loss": "dice"},
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.json, (json.dumps(result, indent=2) + "\n").encode())
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
