#!/usr/bin/env python
"""How fast the training process can receive items from DataLoader workers, generation left out.

    python benchmarks/bench_loader.py [--workers 1,2] [--items 640] [--json PATH]

Each worker replays one real training item (the click preset: 128 px, 4 prompt sets, mask inputs)
as fast as it can, so the figure is the main process's own cost per item, the ceiling on a GPU
run's img/s however many cores generate.  Two ways across the process boundary:

* ``tensors``: the item's nine tensors, each sent as a shared-memory file (what the trainer did
  until stop 26);
* ``arrays``: the same item as numpy arrays, pickled by value (``TrainItem.to_wire``, what it does now),
  turned back into tensors on arrival (``TrainItem.from_wire``).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthfm.synth.recipe import load_recipe  # noqa: E402
from synthfm.training.config import preset_config  # noqa: E402
from synthfm.training.data import TrainItem  # noqa: E402
from synthfm.training.loop import make_loader  # noqa: E402


class _Replay(torch.utils.data.IterableDataset):
    def __init__(self, item):
        self.item = item

    def __iter__(self):
        while True:
            yield self.item


def _keep(item):
    return item


def _one_item() -> TrainItem:
    config = preset_config("click", workers=0, prompts_per_image=4)
    for item in make_loader(load_recipe(config.recipe), config, config.size, 0, 0, 1):
        if not item.skip:
            return item
    raise RuntimeError("the stream gave no item")


def receive_rate(item, wire: str, workers: int, n: int) -> float:
    """Items per second the main process takes out of a DataLoader with ``workers`` replaying ``item``."""
    payload = item.to_wire() if wire == "arrays" else item
    loader = torch.utils.data.DataLoader(_Replay(payload), batch_size=None, num_workers=workers,
                                         prefetch_factor=64, collate_fn=_keep)
    it = iter(loader)
    for _ in range(64 * workers):  # fill the queues first
        TrainItem.from_wire(next(it))
    t0 = time.perf_counter()
    for _ in range(n):
        TrainItem.from_wire(next(it))
    rate = n / (time.perf_counter() - t0)
    del it, loader
    return rate


@click.command()
@click.option("--workers", default="1,2", show_default=True, help="Comma-separated worker counts.")
@click.option("--items", default=640, show_default=True, help="Items timed per measurement.")
@click.option("--json", "json_path", default=None, help="Write the results here.")
def main(workers: str, items: int, json_path: str | None) -> None:
    torch.set_num_threads(1)
    item = _one_item()
    rows = []
    print(f"{'wire':8} {'workers':>7} {'items/s':>9} {'ms/item':>8}")
    for w in (int(x) for x in workers.split(",")):
        for wire in ("tensors", "arrays"):
            rate = receive_rate(item, wire, w, items)
            rows.append({"wire": wire, "workers": w, "items_s": round(rate, 1), "ms_per_item": round(1e3 / rate, 3)})
            print(f"{wire:8} {w:7d} {rate:9.1f} {1e3 / rate:8.3f}")
    if json_path:
        info = {"machine": platform.platform(), "cpus": os.cpu_count(), "load": os.getloadavg(), "rows": rows}
        Path(json_path).write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
