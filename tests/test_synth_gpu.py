"""The torch synthetic generator (synthfm.synth.gpu), run on CPU at tiny sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from synthfm.synth.recipe import NOISE_KINDS, default_recipe, recipe_from_dict
from synthfm.synth.gpu import GpuSynthGenerator
from synthfm.synth.gpu.clicks import jump_flood_distance, mask_boxes
from synthfm.synth.gpu.labelmaps import erode_labels
from synthfm.training.data import PromptPolicy, gpu_train_batch

SIZE = 64


@pytest.fixture(scope="module")
def batch():
    gen = GpuSynthGenerator(default_recipe(), SIZE, "cpu")
    return gen.generate(24, gen.make_generator(0))


def test_shapes_dtypes_ranges(batch):
    b = 24
    assert batch.images.shape == (b, 1, SIZE, SIZE) and batch.images.dtype == torch.float32
    assert float(batch.images.min()) >= 0.0 and float(batch.images.max()) <= 1.0
    assert batch.labels.shape == (b, SIZE, SIZE) and batch.labels.dtype == torch.uint8
    assert batch.members.shape[0] == b and batch.members.shape[2] == 256
    assert batch.valid.shape == batch.members.shape[:2]
    assert set(batch.module.tolist()) == {0, 1}  # both modules in a batch of 24
    assert batch.images.std() > 0.05


def test_valid_targets_obey_rules(batch):
    cfg = default_recipe().targets
    n_valid = 0
    for b in range(batch.labels.shape[0]):
        for t in torch.nonzero(batch.valid[b]).flatten().tolist():
            mask = batch.target_mask(b, t).numpy()
            area = int(mask.sum())
            assert area >= max(1, cfg.min_area_fraction * SIZE * SIZE)
            n_valid += 1
        if batch.fov is not None:
            outside = ~batch.fov[b]
            assert not batch.labels[b][outside].any()
            assert not batch.images[b, 0][outside].any()
    assert n_valid >= 24  # most images have several valid targets


def test_deterministic_given_seed():
    gen = GpuSynthGenerator(default_recipe(), SIZE, "cpu")
    a = gen.generate(6, gen.make_generator(5))
    b = gen.generate(6, gen.make_generator(5))
    c = gen.generate(6, gen.make_generator(6))
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and torch.equal(a.valid, b.valid)
    assert not torch.equal(a.images, c.images)


def test_every_noise_kind_reachable():
    all_kinds = recipe_from_dict({"flavours": {
        "generic": {"p": 1.0, "num_noises_range": [5, 5]}, "ct": {"p": 0.0}, "mr": {"p": 0.0}, "us": {"p": 0.0}}})
    gen = GpuSynthGenerator(all_kinds, SIZE, "cpu")
    out = gen.generate(3, gen.make_generator(1))
    assert out.noises.all()
    gen = GpuSynthGenerator(default_recipe(), SIZE, "cpu")
    out = gen.generate(48, gen.make_generator(2))
    assert out.noises.any(0).all(), dict(zip(NOISE_KINDS, out.noises.sum(0).tolist()))
    assert (out.noises.sum(1) >= 1).all()


@pytest.mark.parametrize("module", ["shape", "boundary"])
def test_single_module_recipes(module):
    recipe = recipe_from_dict({"modules": {"shape": float(module == "shape"), "boundary": float(module == "boundary")}})
    gen = GpuSynthGenerator(recipe, SIZE, "cpu")
    out = gen.generate(6, gen.make_generator(3))
    assert (out.module == (0 if module == "shape" else 1)).all()
    assert out.valid.any(1).float().mean() >= 0.5


def test_ultrasound_fan_cuts_image_and_labels():
    us = recipe_from_dict({"flavours": {"generic": {"p": 0.0}, "ct": {"p": 0.0}, "mr": {"p": 0.0},
                                        "us": {"p": 1.0, "p_fan": 1.0}}, "augment": {"enabled": False}})
    gen = GpuSynthGenerator(us, SIZE, "cpu")
    out = gen.generate(4, gen.make_generator(4))
    assert out.fov is not None
    assert (~out.fov).flatten(1).any(1).all()  # every image has an outside
    assert not out.images[:, 0][~out.fov].any() and not out.labels[~out.fov].any()


def test_statistically_close_to_numpy_engine():
    from synthfm.synth.generator import sample_at

    recipe = default_recipe()
    cpu = [sample_at(recipe, 0, i, SIZE) for i in range(24)]
    gen = GpuSynthGenerator(recipe, SIZE, "cpu")
    out = gen.generate(48, gen.make_generator(7))
    mean_np = float(np.mean([s.image.mean() for s in cpu]))
    mean_gpu = float(out.images.mean())
    assert abs(mean_np - mean_gpu) < 0.12
    valid_np = float(np.mean([len(s.valid_targets) for s in cpu]))
    valid_gpu = float(out.valid.sum(1).float().mean())
    assert 0.5 < valid_gpu / valid_np < 2.0
    bg_np = float(np.mean([(s.labels == 0).mean() for s in cpu]))
    bg_gpu = float((out.labels == 0).float().mean())
    assert abs(bg_np - bg_gpu) < 0.2


def test_train_batch_prompts_follow_masks():
    gen = GpuSynthGenerator(default_recipe(), SIZE, "cpu")
    policy = PromptPolicy(prompts_per_image=2, max_pos=3, max_neg=2, box_fraction=0.3, box_jitter=0.0)
    tb = gpu_train_batch(gen, 8, policy, gen.make_generator(8))
    n = tb.images.shape[0]
    assert 6 <= n <= 8 and len(tb.indices) == n
    assert tb.images.shape == (n, 1, SIZE, SIZE) and float(tb.images.max()) <= 255.0
    m = tb.masks.shape[0]
    assert m == 2 * n and tb.masks.dtype == torch.uint8
    assert tb.masks.flatten(1).any(1).all()
    assert tb.point_coords.shape == (m, 5, 2) and tb.point_labels.shape == (m, 5)
    assert tb.is_box.any() and (~tb.is_box).any()
    for j in range(m):
        lab = tb.point_labels[j]
        real = lab >= 0
        # real clicks first, then padding
        assert not (real[1:] & ~real[:-1]).any()
        assert int(tb.n_clicks[j]) == int(real.sum())
        if tb.is_box[j]:
            assert not real.any()
            x0, y0, x1, y1 = tb.boxes[j].tolist()
            rows, cols = torch.nonzero(tb.masks[j], as_tuple=True)
            assert x0 == cols.min() and x1 == cols.max() and y0 == rows.min() and y1 == rows.max()
            continue
        assert lab[0] == 1
        for (x, y), l in zip(tb.point_coords[j][real].round().long().tolist(), lab[real].tolist()):
            assert bool(tb.masks[j, y, x]) == (l == 1)


def test_jump_flood_distance_close_to_exact_edt():
    rng = np.random.default_rng(0)
    seeds = ndimage.binary_dilation(rng.random((3, 40, 48)) < 0.01, iterations=1)
    got = jump_flood_distance(torch.from_numpy(seeds)).numpy()
    for k in range(3):
        exact = ndimage.distance_transform_edt(~seeds[k])
        assert np.abs(got[k] - exact).max() <= 1.0
        assert np.abs(got[k] - exact).mean() <= 0.05


def test_erosion_removes_boundary_of_eroded_labels_only():
    labels = torch.zeros(1, 20, 20, dtype=torch.uint8)
    labels[0, :, :10] = 1
    labels[0, :, 10:] = 2
    radius = torch.zeros(1, 256)
    radius[0, 1] = 3.0
    out = erode_labels(labels, radius)[0]
    assert (out[:, :7] == 1).all()  # columns 0..6 keep label 1 (distance >= 3 from the contact)
    assert (out[:, 7:10] == 0).all()  # a 3-pixel gap opened on label 1's side
    assert (out[:, 10:] == 2).all()  # label 2 is not eroded


def test_mask_boxes_inclusive_bounds():
    masks = torch.zeros(1, 10, 12, dtype=torch.bool)
    masks[0, 2:5, 3:9] = True
    box = mask_boxes(torch.Generator().manual_seed(0), masks, 0.0)
    assert box.tolist() == [[3.0, 2.0, 8.0, 4.0]]


def test_every_flavour_reachable_and_recipe_weights_respected():
    from synthfm.synth.recipe import FLAVOURS

    gen = GpuSynthGenerator(default_recipe(), SIZE, "cpu")
    out = gen.generate(48, gen.make_generator(11))
    seen = set(out.flavour.tolist())
    assert seen == set(range(len(FLAVOURS))), [FLAVOURS[i] for i in sorted(seen)]
    only_ct = recipe_from_dict({"flavours": {"generic": {"p": 0.0}, "ct": {"p": 1.0}, "mr": {"p": 0.0}, "us": {"p": 0.0}}})
    gen = GpuSynthGenerator(only_ct, SIZE, "cpu")
    assert (gen.generate(6, gen.make_generator(12)).flavour == FLAVOURS.index("ct")).all()


def test_target_counts_per_image():
    gen = GpuSynthGenerator(default_recipe(), SIZE, "cpu")
    out = gen.generate(32, gen.make_generator(13))
    exists = out.members.any(2)  # (B, T) targets that name at least one label
    valid = out.valid.sum(1)
    assert (out.valid <= exists).all()  # a valid target always exists
    assert (valid >= 1).float().mean() >= 0.9  # nearly every image can be trained on
    assert int(valid.max()) >= 3 and len(set(valid.tolist())) >= 3  # counts vary from image to image
    assert (exists.sum(1) <= out.members.shape[1]).all()


def _pieces_of(mask: np.ndarray) -> list[np.ndarray]:
    comp, n = ndimage.label(mask, structure=np.ones((3, 3)))
    return [comp == i for i in range(1, n + 1)]


def test_component_masks_pick_one_8_connected_piece_like_the_numpy_engine():
    from synthfm.synth.gpu.targets import component_masks

    rng = np.random.default_rng(0)
    # winding and scattered masks: thresholded smooth noise, plus an empty one and a diagonal chain
    noise = ndimage.gaussian_filter(rng.standard_normal((6, 48, 48)), (0, 3, 3))
    masks = noise > 0.15
    masks[4] = False
    masks[5] = False
    idx = np.arange(10, 40)
    masks[5, idx, idx] = True  # one 8-connected piece (4-connected it would be 30)
    t = torch.from_numpy(masks)
    seen: list[set[int]] = [set() for _ in masks]
    for seed in range(12):
        out = component_masks(t, torch.Generator().manual_seed(seed), min_fraction=0.01).numpy()
        for j, m in enumerate(masks):
            if not m.any():
                assert not out[j].any()
                continue
            pieces = [p for p in _pieces_of(m) if p.sum() >= np.ceil(0.01 * m.size)] or \
                [max(_pieces_of(m), key=np.sum)]
            match = [i for i, p in enumerate(pieces) if np.array_equal(p, out[j])]
            assert len(match) == 1, j  # exactly one whole piece, never a part or a union
            seen[j].add(match[0])
    assert np.array_equal(out[5], masks[5])
    multi = [j for j, m in enumerate(masks) if len([p for p in _pieces_of(m) if p.sum() >= 24]) >= 2]
    assert multi and all(len(seen[j]) >= 2 for j in multi)  # the draw varies the piece


def test_component_targets_on_the_torch_engine_are_single_pieces():
    gen = GpuSynthGenerator(default_recipe(), SIZE, "cpu")
    policy = PromptPolicy(prompts_per_image=2, max_pos=3, max_neg=2, targets="component")
    tb = gpu_train_batch(gen, 6, policy, gen.make_generator(3))
    for j in range(tb.masks.shape[0]):
        mask = tb.masks[j].numpy().astype(bool)
        assert len(_pieces_of(mask)) == 1
        real = tb.point_labels[j] >= 0
        for (x, y), l in zip(tb.point_coords[j][real].round().long().tolist(), tb.point_labels[j][real].tolist()):
            assert bool(mask[y, x]) == (l == 1)


def test_component_masks_by_area_favour_large_pieces():
    from synthfm.synth.gpu.targets import component_masks

    m = torch.zeros(1, 40, 40, dtype=torch.bool)
    m[0, 1:4, 1:4] = True  # 9 px
    m[0, 20:36, 20:36] = True  # 256 px
    big = [int(component_masks(m, torch.Generator().manual_seed(s), by_area=True).sum()) for s in range(300)]
    uniform = [int(component_masks(m, torch.Generator().manual_seed(s)).sum()) for s in range(300)]
    assert set(big) <= {9, 256} and 300 * 256 / 265 - 4 * 3.1 < big.count(256)  # p = 0.966, sd ~3.1
    assert 100 < uniform.count(256) < 200  # p = 0.5
