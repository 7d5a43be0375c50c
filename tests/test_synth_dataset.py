"""SyntheticStream: rank/worker index dealing, and identical bytes for any number of workers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from torch.utils.data import DataLoader

from synthfm.synth.dataset import SyntheticStream, rank_indices
from synthfm.synth.generator import sample_at
from synthfm.synth.recipe import default_recipe


def _index_and_image(index, sample):
    """A picklable transform (module level) run in the workers."""
    return index, sample.image.tobytes(), sample.labels.tobytes()


def test_rank_indices_split_the_range():
    parts = [list(rank_indices(3, 20, r, 4)) for r in range(4)]
    assert sorted(itertools.chain(*parts)) == list(range(3, 20))
    assert all(i % 4 == r for r, part in enumerate(parts) for i in part)
    assert list(itertools.islice(rank_indices(5, None, 1, 2), 3)) == [5, 7, 9]


def test_stream_yields_sample_at_items_in_order():
    recipe = default_recipe()
    stream = SyntheticStream(recipe, seed=4, size=64, start=2, stop=5)
    assert len(stream) == 3
    items = list(stream)
    assert [i for i, _ in items] == [2, 3, 4]
    expected = sample_at(recipe, 4, 3, 64)
    assert items[1][1].image.tobytes() == expected.image.tobytes()


def test_endless_stream_and_argument_checks():
    stream = SyntheticStream(default_recipe(), seed=0, size=64, start=10, rank=1, world_size=3)
    assert [i for i, _ in itertools.islice(iter(stream), 3)] == [10, 13, 16]
    with pytest.raises(TypeError):
        len(stream)
    with pytest.raises(ValueError):
        SyntheticStream(default_recipe(), 0, 64, rank=2, world_size=2)
    with pytest.raises(ValueError):
        SyntheticStream(default_recipe(), 0, 64, start=5, stop=2)


def test_dataloader_gives_identical_bytes_for_0_and_2_workers():
    recipe = default_recipe()
    results = {}
    for workers in (0, 2):
        stream = SyntheticStream(recipe, seed=7, size=64, start=1, stop=9, transform=_index_and_image)
        loader = DataLoader(stream, batch_size=None, num_workers=workers)
        results[workers] = [tuple(item) for item in loader]
    assert [item[0] for item in results[0]] == list(range(1, 9))
    assert results[0] == results[2]


def test_ranks_partition_the_stream():
    recipe = default_recipe()
    seen = []
    for rank in range(2):
        stream = SyntheticStream(recipe, seed=7, size=64, start=0, stop=6, rank=rank, world_size=2,
                                 transform=_index_and_image)
        seen.extend(stream)
    by_index = dict((i, img) for i, img, _ in seen)
    assert sorted(by_index) == list(range(6))
    single = dict((i, img) for i, img, _ in SyntheticStream(recipe, 7, 64, 0, 6, transform=_index_and_image))
    assert by_index == single
    assert np.frombuffer(by_index[0], np.float32).shape == (64 * 64,)
