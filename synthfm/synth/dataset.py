"""A torch IterableDataset that streams synthetic samples, generated on the fly.

Index bookkeeping (what makes the stream reproducible for any number of workers):
this rank owns the indices ``i`` in ``range(start, stop)`` (endless when ``stop`` is None) with
``i % world_size == rank``; DataLoader worker ``w`` of ``W`` takes this rank's w-th, (w+W)-th, ...
index.  A DataLoader (batch_size=None) polls its workers round-robin, so items arrive in
increasing index order whatever ``num_workers`` is, and item ``i`` is ``sample_at(recipe, seed, i,
size)``, a pure function of its index.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator

import torch
from torch.utils.data import IterableDataset, get_worker_info

from synthfm.synth.generator import sample_at
from synthfm.synth.memory import keep_freed_memory
from synthfm.synth.recipe import Recipe
from synthfm.synth.sample import Sample


def rank_indices(start: int, stop: int | None, rank: int, world_size: int) -> Iterator[int]:
    """Indices ``i`` in ``range(start, stop)`` (endless if stop is None) with ``i % world_size == rank``."""
    first = start + (rank - start) % world_size
    if stop is None:
        return itertools.count(first, world_size)
    return iter(range(first, stop, world_size))


class SyntheticStream(IterableDataset):
    """Stream of ``(index, Sample)`` (or ``transform(index, sample)``) for one rank.

    recipe: the :class:`Recipe`; seed: run seed; size: square image side in pixels.
    start/stop: index range (stop None = endless).  rank/world_size: distributed split.
    transform: optional picklable callable ``(index, sample) -> item`` run inside the worker
    (e.g. building tensors and prompts), so only its result crosses process boundaries.
    """

    def __init__(
        self,
        recipe: Recipe,
        seed: int,
        size: int,
        start: int = 0,
        stop: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        transform: Callable[[int, Sample], Any] | None = None,
    ) -> None:
        super().__init__()
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if start < 0 or (stop is not None and stop < start):
            raise ValueError(f"need 0 <= start <= stop, got start={start}, stop={stop}")
        self.recipe = recipe
        self.seed = int(seed)
        self.size = int(size)
        self.start = int(start)
        self.stop = None if stop is None else int(stop)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.transform = transform

    def indices(self) -> Iterator[int]:
        """The indices this process yields (its rank's share, then its worker's share)."""
        mine = rank_indices(self.start, self.stop, self.rank, self.world_size)
        info = get_worker_info()
        if info is None:
            return mine
        return itertools.islice(mine, info.id, None, info.num_workers)

    def __iter__(self) -> Iterator[Any]:
        if get_worker_info() is not None:
            # Workers already run in parallel; nested torch threads only oversubscribe.  (OpenCV's
            # thread count is left alone: cv2.setNumThreads in a forked child whose parent used
            # OpenCV's thread pool deadlocks.)  A worker only generates samples, so it can keep
            # freed memory for reuse, which avoids ~1500 page faults per 1024 px sample.
            torch.set_num_threads(1)
            keep_freed_memory()
        for index in self.indices():
            sample = self.sample_at_index(index)
            yield self.transform(index, sample) if self.transform is not None else (index, sample)

    def sample_at_index(self, index: int) -> Sample:
        """Sample ``index`` of the stream: ``sample_at(recipe, seed, index, size)`` (subclasses may mix in others)."""
        return sample_at(self.recipe, self.seed, index, self.size)

    def __len__(self) -> int:
        if self.stop is None:
            raise TypeError("an endless SyntheticStream (stop=None) has no length")
        return len(range(self.start + (self.rank - self.start) % self.world_size, self.stop, self.world_size))
