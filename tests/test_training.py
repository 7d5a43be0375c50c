"""Training loop pieces: prompted items, batching, loss, frozen encoder, learning, validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from synthfm.synth.sample import Sample, Target
from synthfm.training.loop import (
    build_training_model,
    compute_loss,
    iterate_batches,
    lr_at,
    make_loader,
    prompt_groups,
    train,
)
from synthfm.training.config import preset_config
from synthfm.training.data import PromptedItemTransform, PromptPolicy, collate_items

SIZE = 64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(tmp_path=None, **kw):
    base = dict(val_images=0, workers=0, batch_size=2, prompts_per_image=2)
    if tmp_path is not None:
        base["out"] = str(tmp_path / "run")
    base.update(kw)
    return preset_config("tiny", **base)


def _disk_sample(size=SIZE, valid=(True, True)) -> Sample:
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((size, size), np.uint16)
    labels[(yy - 20) ** 2 + (xx - 20) ** 2 <= 64] = 1
    labels[(yy - 44) ** 2 + (xx - 40) ** 2 <= 100] = 2
    image = (0.2 + 0.3 * labels).astype(np.float32)
    targets = tuple(Target((k,), v, "" if v else "too_small") for k, v in zip((1, 2), valid))
    return Sample(image, labels, targets, "shape", "generic")


# ----------------------------------------------------------------------------- prompted items


def test_item_is_deterministic_and_clicks_are_consistent():
    policy = PromptPolicy(prompts_per_image=4, max_pos=5, max_neg=3)
    tf = PromptedItemTransform(seed=7, image_size=SIZE, policy=policy)
    a, b = tf(11, _disk_sample()), tf(11, _disk_sample())
    for f in ("image", "masks", "point_coords", "point_labels", "boxes", "is_box", "n_clicks"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f
    c = tf(12, _disk_sample())
    assert not torch.equal(a.point_coords, c.point_coords)  # another index, other prompts
    assert a.image.dtype == torch.float32 and float(a.image.max()) <= 255.0 and float(a.image.max()) > 1.0
    assert a.masks.shape == (4, SIZE, SIZE) and a.point_coords.shape == (4, 8, 2)
    # 4 prompt sets over 2 targets: each target used twice
    areas = sorted(int(m.sum()) for m in a.masks)
    assert areas[0] == areas[1] and areas[2] == areas[3] and areas[0] != areas[2]
    for k in range(4):
        labels = a.point_labels[k]
        n = int(a.n_clicks[k])
        assert (labels[:n] >= 0).all() and (labels[n:] == -1).all()
        assert 1 <= int((labels == 1).sum()) <= 5 and int((labels == 0).sum()) <= 3
        for (x, y), lab in zip(a.point_coords[k][:n].tolist(), labels[:n].tolist()):
            assert bool(a.masks[k][int(y), int(x)]) == (lab == 1)


def test_invalid_targets_are_never_prompted_and_empty_images_skipped():
    tf = PromptedItemTransform(0, SIZE, PromptPolicy(prompts_per_image=3))
    item = tf(0, _disk_sample(valid=(False, True)))
    big = int((_disk_sample().labels == 2).sum())
    assert all(int(m.sum()) == big for m in item.masks)
    assert tf(0, _disk_sample(valid=(False, False))).skip


def test_box_prompts_and_resizing():
    tf = PromptedItemTransform(0, 128, PromptPolicy(prompts_per_image=2, box_fraction=1.0, box_jitter=0.0))
    item = tf(3, _disk_sample(SIZE))
    assert item.is_box.all() and (item.n_clicks == 0).all()
    assert item.masks.shape == (2, 128, 128)
    for m, box in zip(item.masks, item.boxes):
        rows, cols = torch.nonzero(m, as_tuple=True)
        assert box.tolist() == [cols.min().item(), rows.min().item(), cols.max().item(), rows.max().item()]


def test_batches_track_next_index_over_skipped_items():
    tf = PromptedItemTransform(0, SIZE, PromptPolicy(prompts_per_image=1))
    valid = {0: True, 1: False, 2: True, 3: True, 4: False, 5: True}
    items = [tf(i, _disk_sample(valid=(v, v))) for i, v in valid.items()]
    got = [(b.indices, nxt) for b, nxt in iterate_batches(items, 2)]
    assert got == [([0, 2], 3), ([3, 5], 6)]
    batch = collate_items([items[0], items[2]])
    assert batch.images.shape == (2, 1, SIZE, SIZE) and batch.masks.shape == (2, SIZE, SIZE)


def test_stream_items_do_not_depend_on_worker_count():
    from synthfm.synth.recipe import load_recipe

    cfg = _config()
    recipe = load_recipe(cfg.recipe)

    def first(workers, n=4):
        loader = make_loader(recipe, dataclasses.replace(cfg, workers=workers), SIZE, start=5, rank=0, world_size=1)
        out = []
        for item in loader:
            out.append(item)
            if len(out) == n:
                break
        return out

    a, b = first(0), first(2)
    assert [x.index for x in a] == [5, 6, 7, 8] == [x.index for x in b]
    for x, y in zip(a, b):
        assert x.skip == y.skip
        if not x.skip:
            assert torch.equal(x.image, y.image) and torch.equal(x.point_coords, y.point_coords)


# ----------------------------------------------------------------------------- loss and model


def _batch(k=2, **policy):
    tf = PromptedItemTransform(0, SIZE, PromptPolicy(prompts_per_image=k, **policy))
    return collate_items([tf(0, _disk_sample()), tf(1, _disk_sample())])


def test_lr_schedule():
    c = _config(lr=1.0, warmup_steps=10, lr_schedule="cosine")
    assert lr_at(c, 0, 100) == pytest.approx(0.1)
    assert lr_at(c, 9, 100) == pytest.approx(1.0)
    assert lr_at(c, 10, 100) == pytest.approx(1.0)
    assert lr_at(c, 55, 100) == pytest.approx(0.5)
    assert lr_at(c, 99, 100) < 0.001
    assert lr_at(dataclasses.replace(c, lr_schedule="constant"), 99, 100) == 1.0


def test_prompt_groups_split_boxes_and_single_clicks():
    batch = _batch(k=4, box_fraction=0.5, max_pos=1, max_neg=0)
    groups = dict(prompt_groups(batch, multimask=True))
    n = batch.masks.shape[0]
    rows = torch.cat(list(groups.values()))
    assert sorted(rows.tolist()) == list(range(n))
    assert set(groups) <= {"multi", "box"} and "box" in groups
    assert set(dict(prompt_groups(batch, multimask=False))) <= {"single", "box"}


@pytest.mark.parametrize("multimask, box_fraction, iou_w", [(False, 0.0, 0.0), (True, 0.5, 1.0)])
def test_loss_is_finite_and_reaches_decoder(multimask, box_fraction, iou_w):
    cfg = _config(multimask=multimask, box_fraction=box_fraction, iou_loss_weight=iou_w, max_pos=2, max_neg=1)
    model = build_training_model(cfg)
    batch = _batch(k=4, box_fraction=box_fraction, max_pos=2, max_neg=1)
    total, dice = compute_loss(model, batch, cfg)
    assert torch.isfinite(total) and 0.0 <= float(dice) <= 1.0
    if iou_w == 0:
        assert float(total.detach()) == float(dice)
    total.backward()
    grads = [p.grad for p in model.mask_decoder.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_model_init_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = build_training_model(_config(seed=1))
    assert torch.equal(torch.get_rng_state(), before)
    b = build_training_model(_config(seed=1))
    c = build_training_model(_config(seed=2))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_decoder_learns_a_fixed_batch():
    cfg = _config(lr=1e-3)
    torch.manual_seed(0)
    model = build_training_model(cfg)
    model.train()
    batch = _batch(k=2)
    opt = torch.optim.Adam(model.trainable_parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss, dice = compute_loss(model, batch, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(dice))
    assert losses[-1] < 0.6 * losses[0], losses


def test_frozen_encoder_gets_no_gradient_and_does_not_change(tmp_path):
    cfg = _config(tmp_path, train_encoder=False, epochs=1, images_per_epoch=4)
    reference = build_training_model(cfg)
    assert reference.encoder_frozen
    total, _ = compute_loss(reference, _batch(), cfg)
    total.backward()
    assert all(p.grad is None for p in reference.image_encoder.parameters())
    assert any(p.grad is not None for p in reference.mask_decoder.parameters())

    train(cfg, progress=False)
    from synthfm.weights.checkpoint import load_checkpoint

    trained, meta = load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert meta["encoder_frozen"] is True
    ref_sd, new_sd = reference.state_dict(), trained.state_dict()
    enc = [k for k in ref_sd if k.startswith("image_encoder.")]
    dec = [k for k in ref_sd if k.startswith("mask_decoder.")]
    assert enc and all(torch.equal(ref_sd[k], new_sd[k]) for k in enc)
    assert not all(torch.equal(ref_sd[k], new_sd[k]) for k in dec)


def test_trainable_encoder_changes(tmp_path):
    cfg = _config(tmp_path, epochs=1, images_per_epoch=2)
    assert not build_training_model(cfg).encoder_frozen
    reference = build_training_model(cfg).state_dict()
    train(cfg, progress=False)
    from synthfm.weights.checkpoint import load_checkpoint

    trained = load_checkpoint(tmp_path / "run" / "last.safetensors")[0].state_dict()
    enc = [k for k in reference if k.startswith("image_encoder.") and reference[k].is_floating_point()]
    assert sum(not torch.equal(reference[k], trained[k]) for k in enc) > len(enc) // 2


def test_validation_set_is_fixed_and_scored():
    from synthfm.synth.recipe import load_recipe
    from synthfm.training.validation import build_validation_set, evaluate_validation

    recipe = load_recipe("synthfm")
    a = build_validation_set(recipe, seed=0, n_images=3, image_size=SIZE)
    b = build_validation_set(recipe, seed=0, n_images=3, image_size=SIZE)
    assert len(a) == 3 and a.indices == b.indices and torch.equal(a.images, b.images)
    for s in a.settings:
        assert torch.equal(a.clicks[s][0], b.clicks[s][0])
        assert a.clicks[s][0].shape == (3, s[0] + s[1], 2)
    model = build_training_model(_config())
    scores = evaluate_validation(model, a)
    assert set(scores) == {"dice_1_0", "dice_3_0", "dice_1_2", "dice_3_2", "mean"}
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    assert model.training  # restored
