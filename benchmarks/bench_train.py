"""Training throughput: the whole trainer vs. encoder-only vs. generation-only, in images/s.

    python benchmarks/bench_train.py [--json PATH] [--steps N] [--workers W] [--device D] [--configs a,b]

For each configuration it measures

* ``gen``: the DataLoader alone (synthetic image + K prompt sets per item, W worker processes);
* ``encoder``: the image encoder alone on random inputs of the same batch shape (forward under
  no_grad for a frozen encoder; forward + backward for a trained one);
* ``trainer``: the real training step (DataLoader with W workers -> encode -> K prompt sets decoded
  -> Dice -> backward -> Adam), steady state after warm-up steps, waiting for data included;

encoder and trainer steps alternate and their medians are compared, so that the changing load of a
shared machine affects both alike;

and the ratio trainer / encoder.  The goal is >= 0.9: generation and the decoder hidden behind the
encoder.  Configurations: ``tiny_cnn_frozen`` and ``tiny_cnn_trained`` (256 px, 8 images x 4 prompt
sets), ``vit_b_frozen`` and ``vit_b_frozen_k1`` (SAM ViT-B with random weights, frozen, 4 or 1 prompt
sets per image, at 256 px on CPU, 1024 px on a GPU).  Numbers depend on the
machine and its load; the table says which machine and load they were taken under.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthfm.modeling import build_model  # noqa: E402
from synthfm.synth.recipe import load_recipe  # noqa: E402
from synthfm.training.loop import iterate_batches, make_loader, optimizer_step  # noqa: E402
from synthfm.training.config import preset_config  # noqa: E402


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    name: str
    encoder: str
    size: int
    frozen: bool
    batch_size: int
    prompts_per_image: int


def configs(device: torch.device) -> list[BenchConfig]:
    vit_size = 1024 if device.type == "cuda" else 256
    return [
        BenchConfig("tiny_cnn_frozen", "tiny_cnn", 256, True, 8, 4),
        BenchConfig("tiny_cnn_trained", "tiny_cnn", 256, False, 8, 4),
        BenchConfig("vit_b_frozen", "vit_b", vit_size, True, 2 if device.type == "cpu" else 8, 4),
        BenchConfig("vit_b_frozen_k1", "vit_b", vit_size, True, 2 if device.type == "cpu" else 8, 1),
    ]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train_config(bc: BenchConfig, workers: int, device: torch.device):
    return preset_config(
        "small", encoder=bc.encoder, size=bc.size, train_encoder=not bc.frozen, batch_size=bc.batch_size,
        prompts_per_image=bc.prompts_per_image, workers=workers, amp=device.type == "cuda", lr=1e-4,
        sam_checkpoint=None,
    )


def bench_generation(bc: BenchConfig, recipe, workers: int, n_items: int, warmup: int) -> float:
    cfg = _train_config(bc, workers, torch.device("cpu"))
    loader = make_loader(recipe, cfg, bc.size, start=0, rank=0, world_size=1)
    count, start = 0, None
    for item in loader:
        count += 1
        if count == warmup:
            start = time.perf_counter()
        if count == warmup + n_items:
            break
    elapsed = time.perf_counter() - start
    del loader
    return n_items / elapsed


def bench_encoder_and_trainer(model, bc: BenchConfig, recipe, workers: int, device: torch.device, steps: int,
                              warmup: int) -> tuple[float, float]:
    """(encoder-only img/s, trainer img/s), from the medians of interleaved steps.

    Encoder-only passes (forward under no_grad when frozen, forward + backward when trained) and
    real training steps alternate, so that a shared machine's changing load hits both alike.
    """
    cfg = _train_config(bc, workers, device)
    amp = bool(cfg.amp)
    model.train()
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=cfg.lr)
    loader = make_loader(recipe, cfg, bc.size, start=0, rank=0, world_size=1)
    batches = iterate_batches(loader, bc.batch_size)
    images = torch.rand(bc.batch_size, 1, bc.size, bc.size, device=device) * 255
    enc_times, train_times = [], []
    for i in range(warmup + steps):
        _sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            emb = model.encode(images)
        if not bc.frozen:
            emb.float().sum().backward()
            model.zero_grad(set_to_none=True)
        _sync(device)
        t1 = time.perf_counter()
        batch, _ = next(batches)  # waiting for data counts against the trainer
        optimizer_step(model, optimizer, batch.to(device, non_blocking=True), cfg, cfg.lr)
        _sync(device)
        t2 = time.perf_counter()
        if i >= warmup:
            enc_times.append(t1 - t0)
            train_times.append(t2 - t1)
    del batches, loader
    return bc.batch_size / statistics.median(enc_times), bc.batch_size / statistics.median(train_times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--configs", default=None, help="comma-separated subset of the configuration names")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    amp = device.type == "cuda"
    recipe = load_recipe("synthfm")
    chosen = configs(device)
    if args.configs:
        wanted = set(args.configs.split(","))
        chosen = [c for c in chosen if c.name in wanted]

    results = []
    for bc in chosen:
        torch.manual_seed(0)
        model = build_model(bc.encoder, image_size=bc.size, freeze_encoder=bc.frozen).to(device)
        gen = bench_generation(bc, recipe, args.workers, n_items=args.steps * bc.batch_size, warmup=bc.batch_size)
        enc, trainer = bench_encoder_and_trainer(model, bc, recipe, args.workers, device, args.steps, args.warmup)
        row = dict(config=bc.name, encoder=bc.encoder, size=bc.size, frozen=bc.frozen, batch=bc.batch_size,
                   prompts_per_image=bc.prompts_per_image, gen_img_s=round(gen, 2), encoder_img_s=round(enc, 2),
                   trainer_img_s=round(trainer, 2), ratio_trainer_encoder=round(trainer / enc, 3))
        results.append(row)
        del model

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    machine = dict(platform=platform.platform(), cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
                   device=str(device), gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                   loadavg=load, workers=args.workers, steps=args.steps, amp=amp, torch=torch.__version__)
    header = f"{'config':18} {'size':>5} {'B x K':>6} {'gen img/s':>10} {'encoder img/s':>14} {'trainer img/s':>14} {'trainer/enc':>11}"
    print(f"# {machine['device']} {machine['gpu'] or ''} cpu={machine['cpu_count']} workers={args.workers} "
          f"loadavg={load and tuple(round(x, 2) for x in load)}")
    print(header)
    for r in results:
        enc_label = f"{r['encoder_img_s']:.2f}" + ("" if r["frozen"] else " (f+b)")
        print(f"{r['config']:18} {r['size']:>5} {str(r['batch']) + 'x' + str(r['prompts_per_image']):>6} "
              f"{r['gen_img_s']:>10.2f} {enc_label:>14} {r['trainer_img_s']:>14.2f} {r['ratio_trainer_encoder']:>11.3f}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
