"""GPU speed benchmark: fast frozen ViT encoder vs segment_anything's, GPU synthetic generator, trainer.

One command on a GPU machine (see benchmarks/README_gpu.md):

    .venv/bin/python benchmarks/bench_gpu.py                 # writes benchmarks/results/gpu.json
    .venv/bin/python benchmarks/bench_gpu.py --smoke         # CPU, tiny sizes: gpu_cpu_smoke.json

Measures, all at --size (1024) with random weights (no SAM weights are needed):

* encoder img/s of the stock ``vit_h`` ImageEncoderViT in fp32 (TF32 off) and bf16 autocast, and of
  :class:`FastImageEncoderViT` in bf16 (eager, and ``torch.compile`` unless --no-compile), at each
  batch in --batches (an out-of-memory batch is recorded as null);
* FLOPs per image of the encoder (torch.utils.flop_counter.FlopCounterMode) and the measured bf16
  matmul peak (TFLOP/s of a large bf16 matmul), hence the fraction of peak reached at the best batch;
* the GPU synthetic generator's img/s (``synthfm.training.data.gpu_train_batch``, prompts included);
* trainer img/s of one optimiser step (frozen fast encoder + decoder, Dice) fed by CPU DataLoader
  workers vs by the GPU generator, and its ratio to encoder-only img/s at the same batch.

Goals (the issue's): ours >= 3x stock fp32 and >= 50 % of bf16 peak at the best batch; generator
>= 2000 img/s; trainer >= 0.9x encoder-only.  Prints a table and writes JSON; never asserts timings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthfm.io.atomic import atomic_write_bytes  # noqa: E402
from synthfm.modeling.fast_vit import FastImageEncoderViT, build_stock_sam_vit, optimize_encoder  # noqa: E402
from synthfm.synth.recipe import default_recipe  # noqa: E402
from synthfm.synth.gpu import GpuSynthGenerator  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_rate(fn, items: int, device: torch.device, warmup: int, iters: int) -> float:
    """items per second of ``fn()`` (median-free: total over ``iters`` calls after ``warmup``)."""
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return items * iters / (time.perf_counter() - t0)


def matmul_peak_tflops(device: torch.device, n: int, iters: int) -> float:
    dtype = torch.bfloat16
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    rate = timed_rate(lambda: a @ b, 1, device, 3, iters)
    return 2 * n**3 * rate / 1e12


def encoder_flops(encoder, size: int, device: torch.device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, 3, size, size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        encoder(x)
    return float(counter.get_total_flops())


def bench_encoder(fn, batch: int, size: int, device, warmup: int, iters: int, autocast: bool) -> float | None:
    x = torch.randn(batch, 3, size, size, device=device)

    def step():
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            fn(x)

    try:
        return timed_rate(step, batch, device, warmup, iters)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="CPU, 128 px, vit_h depth 2: checks that everything runs")
    p.add_argument("--device", default=None, help="default: cuda (cpu with --smoke)")
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--depth", type=int, default=None, help="vit_h blocks (default 32; 2 with --smoke)")
    p.add_argument("--batches", default=None, help="comma-separated encoder batch sizes (default 1,4,8,16)")
    p.add_argument("--iters", type=int, default=None)
    p.add_argument("--synth-batch", type=int, default=None)
    p.add_argument("--train-batch", type=int, default=None)
    p.add_argument("--workers", type=int, default=None, help="CPU DataLoader workers for the CPU-fed trainer")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)

    smoke = a.smoke
    device = torch.device(a.device or ("cpu" if smoke else "cuda"))
    size = a.size or (128 if smoke else 1024)
    depth = a.depth or (2 if smoke else None)
    batches = [int(b) for b in (a.batches or ("1,2" if smoke else "1,4,8,16")).split(",")]
    iters = a.iters or (2 if smoke else 10)
    warmup = 1 if smoke else 3
    synth_batch = a.synth_batch or (4 if smoke else 32)
    train_batch = a.train_batch or (2 if smoke else 8)
    workers = a.workers if a.workers is not None else (0 if smoke else min(16, os.cpu_count() or 1))
    use_compile = not a.no_compile and not smoke
    out = a.out or RESULTS / ("gpu_cpu_smoke.json" if smoke else "gpu.json")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    torch.manual_seed(0)
    stock = build_stock_sam_vit("vit_h", size, depth=depth).to(device).eval().requires_grad_(False)
    ours = FastImageEncoderViT.from_stock(stock, compute_dtype=torch.bfloat16).eval()
    compiled = optimize_encoder(ours) if use_compile else None
    # the stock encoder's FLOPs: the useful work (ours spends a little more on the folded rel-pos dims)
    flops = encoder_flops(stock, size, device)
    peak = matmul_peak_tflops(device, 1024 if smoke else 8192, 3 if smoke else 50)

    rows = []
    for b in batches:
        row = {"batch": b,
               "stock_fp32": bench_encoder(stock, b, size, device, warmup, iters, autocast=False),
               "stock_bf16": bench_encoder(stock, b, size, device, warmup, iters, autocast=True),
               "ours_bf16": bench_encoder(ours, b, size, device, warmup, iters, autocast=False)}
        for mode in ("bias",):
            ours.set_attention_mode(mode)
            row[f"ours_bf16_{mode}"] = bench_encoder(ours, b, size, device, warmup, iters, autocast=False)
            ours.set_attention_mode("augmented")
        if compiled is not None:
            row["ours_bf16_compiled"] = bench_encoder(compiled, b, size, device, warmup, iters, autocast=False)
        rows.append(row)
        print(row, flush=True)

    def best(key_prefix: str) -> tuple[float, int]:
        cand = [(v, r["batch"]) for r in rows for k, v in r.items() if k.startswith(key_prefix) and v]
        return max(cand) if cand else (0.0, 0)

    stock_fp32, _ = best("stock_fp32")
    ours_best, ours_best_batch = best("ours_")

    # GPU synthetic generator, prompts included
    from synthfm.training.data import PromptPolicy, gpu_train_batch

    recipe = default_recipe()
    generator = GpuSynthGenerator(recipe, size, device)
    gen = generator.make_generator(0)
    policy = PromptPolicy(prompts_per_image=4, max_pos=5, max_neg=3)
    synth_rate = timed_rate(lambda: gpu_train_batch(generator, synth_batch, policy, gen), synth_batch, device,
                            warmup, iters)

    trainer = bench_trainer(stock, size, device, train_batch, workers, generator, policy, warmup, iters, smoke)
    encoder_at_train_batch = bench_encoder(compiled or ours, train_batch, size, device, warmup, iters, autocast=False)
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()})",
        "smoke": smoke,
        "torch": torch.__version__,
        "size": size,
        "vit_h_depth": len(stock.blocks),
        "encoder_rows": rows,
        "stock_fp32_img_s": stock_fp32,
        "stock_bf16_img_s": best("stock_bf16")[0],
        "ours_best_img_s": ours_best,
        "ours_best_batch": ours_best_batch,
        "speedup_vs_stock_fp32": ours_best / stock_fp32 if stock_fp32 else None,
        "encoder_gflops_per_image": flops / 1e9,
        "bf16_matmul_peak_tflops": peak,
        "bf16_peak_fraction": ours_best * flops / (peak * 1e12) if peak else None,
        "gpu_synth_img_s": synth_rate,
        "gpu_synth_batch": synth_batch,
        "trainer_cpu_workers_img_s": trainer["cpu_workers"],
        "trainer_gpu_synth_img_s": trainer["gpu_synth"],
        "trainer_batch": train_batch,
        "cpu_workers": workers,
        "encoder_img_s_at_trainer_batch": encoder_at_train_batch,
        "trainer_over_encoder": trainer["gpu_synth"] / encoder_at_train_batch if encoder_at_train_batch else None,
        "goals": {"speedup_vs_stock_fp32": 3.0, "bf16_peak_fraction": 0.5, "gpu_synth_img_s": 2000,
                  "trainer_over_encoder": 0.9},
    }
    print_table(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, (json.dumps(result, indent=2) + "\n").encode())
    print(f"wrote {out}")
    return 0


def bench_trainer(stock, size, device, batch, workers, generator, policy, warmup, iters, smoke) -> dict:
    """img/s of optimiser steps (frozen fast vit_h + SAM decoder, Dice) fed by CPU workers vs the GPU generator."""
    from synthfm.modeling.synthfm_model import SynthFM
    from synthfm.training.loop import iterate_batches, make_loader, optimizer_step
    from synthfm.training.config import TrainConfig

    encoder = FastImageEncoderViT.from_stock(stock, compute_dtype=torch.bfloat16)
    model = SynthFM(encoder_name="vit_h", image_encoder=encoder, image_size=size, freeze_encoder=True).to(device)
    model.train()
    config = TrainConfig(encoder="vit_h", size=size, gen_size=size, batch_size=batch, prompts_per_image=policy.prompts_per_image,
                         max_pos=policy.max_pos, max_neg=policy.max_neg, workers=workers, amp=device.type == "cuda",
                         val_images=0, out="/nonexistent")
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-4)
    results = {}
    loader = make_loader(default_recipe(), config, size, 0, 0, 1)
    batches = iterate_batches(loader, batch)

    def cpu_step():
        b, _ = next(batches)
        optimizer_step(model, optimizer, b.to(device, non_blocking=True), config, 1e-4)

    results["cpu_workers"] = timed_rate(cpu_step, batch, device, warmup, iters)
    del batches, loader
    gen = generator.make_generator(1)

    def gpu_step():
        b = gpu_train_batch(generator, batch, policy, gen)
        optimizer_step(model, optimizer, b, config, 1e-4)

    results["gpu_synth"] = timed_rate(gpu_step, batch, device, warmup, iters)
    return results


def print_table(r: dict) -> None:
    print(f"\n{'batch':>6} " + " ".join(f"{k:>20}" for k in r["encoder_rows"][0] if k != "batch"))
    for row in r["encoder_rows"]:
        print(f"{row['batch']:>6} " + " ".join(f"{(v or 0):>20.2f}" for k, v in row.items() if k != "batch"))
    keys = ["device", "stock_fp32_img_s", "ours_best_img_s", "ours_best_batch", "speedup_vs_stock_fp32",
            "encoder_gflops_per_image", "bf16_matmul_peak_tflops", "bf16_peak_fraction", "gpu_synth_img_s",
            "trainer_cpu_workers_img_s", "trainer_gpu_synth_img_s", "trainer_over_encoder"]
    print()
    for k in keys:
        v = r[k]
        print(f"{k:>28}: {v:.3f}" if isinstance(v, float) else f"{k:>28}: {v}")


if __name__ == "__main__":
    raise SystemExit(main())
