"""Target units: a whole synthetic label, or one 8-connected piece of it (synthfm.training.target_units)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from synthfm.errors import UserError
from synthfm.synth.sample import Sample, Target
from synthfm.training.config import preset_config, validate_config
from synthfm.training.data import PromptedItemTransform, PromptPolicy
from synthfm.evaluation.datasets import DEFAULT_MIN_AREA
from synthfm.training.target_units import MIN_COMPONENT_FRACTION, target_unit_mask

SIZE = 64


def _pieces(size: int = 40) -> np.ndarray:
    """One label in three 8-connected pieces of a 40 x 40 frame: 9 px (below 1 %), 64 px and 100 px."""
    m = np.zeros((size, size), bool)
    m[1:4, 1:4] = True
    m[10:18, 10:18] = True
    m[25:35, 25:35] = True
    return m


def _n_components(mask) -> int:
    return cv2.connectedComponents(np.asarray(mask, np.uint8), connectivity=8)[0] - 1


def test_the_smallest_piece_is_the_smallest_real_object():
    assert MIN_COMPONENT_FRACTION == DEFAULT_MIN_AREA


def test_label_unit_is_the_mask_and_draws_nothing():
    m = _pieces()
    rng = np.random.default_rng(3)
    out = target_unit_mask(m, "label", rng)
    assert np.array_equal(out, m)
    assert rng.random() == np.random.default_rng(3).random()  # the stream did not move


def test_component_unit_draws_each_big_piece_and_never_a_small_one():
    m = _pieces()
    areas = [int(target_unit_mask(m, "component", np.random.default_rng(s), min_fraction=0.01).sum())
             for s in range(200)]
    assert set(areas) == {64, 100}  # the 9 px piece is below 1 % of the frame (16 px)
    assert {int(target_unit_mask(m, "component", np.random.default_rng(s)).sum()) for s in range(60)} == {9, 64, 100}
    assert 60 <= areas.count(64) <= 140  # uniform between the two (binomial(200, .5): +-3 sigma ~ 21)
    for s in range(5):
        out = target_unit_mask(m, "component", np.random.default_rng(s), min_fraction=0.01)
        assert _n_components(out) == 1 and not (out & ~m).any()


def test_component_unit_falls_back_to_the_largest_piece_and_keeps_a_single_piece():
    m = np.zeros((20, 20), bool)
    m[0:2, 0:2] = True  # 4 px
    m[10:13, 10:13] = True  # 9 px, the largest; both below 5 % of the 400 px frame
    for s in range(5):
        assert int(target_unit_mask(m, "component", np.random.default_rng(s), min_fraction=0.05).sum()) == 9
    one = np.zeros((20, 20), bool)
    one[5:15, 5:15] = True
    assert np.array_equal(target_unit_mask(one, "component", np.random.default_rng(0)), one)
    with pytest.raises(ValueError, match="unknown target unit"):
        target_unit_mask(one, "blob", np.random.default_rng(0))


def _scattered_sample() -> Sample:
    """Label 1 in two distant discs (one structure, two pieces), label 2 a single disc."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    labels = np.zeros((SIZE, SIZE), np.uint16)
    labels[(yy - 12) ** 2 + (xx - 12) ** 2 <= 36] = 1
    labels[(yy - 50) ** 2 + (xx - 50) ** 2 <= 49] = 1
    labels[(yy - 14) ** 2 + (xx - 48) ** 2 <= 64] = 2
    image = (0.2 + 0.3 * labels).astype(np.float32)
    return Sample(image, labels, (Target((1,), True, ""), Target((2,), True, "")), "shape", "generic")


@pytest.mark.parametrize("targets, pieces", [("label", {1, 2}), ("component", {1})])
def test_training_items_segment_the_unit_the_clicks_are_on(targets, pieces):
    tf = PromptedItemTransform(5, SIZE, PromptPolicy(prompts_per_image=6, targets=targets))
    seen = set()
    for index in range(6):
        item = tf(index, _scattered_sample())
        for k in range(item.masks.shape[0]):
            mask = item.masks[k].numpy()
            seen.add(_n_components(mask))
            n = int(item.n_clicks[k])
            for (x, y), lab in zip(item.point_coords[k][:n].tolist(), item.point_labels[k][:n].tolist()):
                assert bool(mask[int(y), int(x)]) == (lab == 1)
    assert seen == pieces


def test_validation_sets_by_unit():
    from synthfm.synth.recipe import load_recipe
    from synthfm.training.validation import build_validation_set

    recipe = load_recipe("synthfm")
    before = build_validation_set(recipe, seed=0, n_images=6, image_size=SIZE)
    label = build_validation_set(recipe, seed=0, n_images=6, image_size=SIZE, targets="label")
    comp = build_validation_set(recipe, seed=0, n_images=6, image_size=SIZE, targets="component")
    assert torch.equal(before.masks, label.masks)  # "label" is the set runs had before the option
    assert torch.equal(label.images, comp.images)
    assert all(_n_components(m) == 1 for m in comp.masks.numpy())
    assert all(not (c.bool() & ~l.bool()).any() for c, l in zip(comp.masks, label.masks))  # a piece of the label


def test_presets_train_whole_labels_and_bad_units_are_refused():
    # component units measured worse on real images (benchmarks/README.md, "the target unit")
    assert preset_config("click").targets == "label"
    assert preset_config("tiny").targets == "label"
    with pytest.raises(UserError, match="--targets must be one of label, component, component_area"):
        validate_config(preset_config("tiny", targets="blob"))
    validate_config(preset_config("tiny", targets="component_area"))


def test_component_area_unit_draws_pieces_in_proportion_to_their_area():
    m = _pieces()  # 9, 64 and 100 px pieces, all above 0.1 % of the 1,600 px frame
    draws = [int(target_unit_mask(m, "component_area", np.random.default_rng(s)).sum()) for s in range(2000)]
    for area in (9, 64, 100):
        expected = 2000 * area / 173
        assert abs(draws.count(area) - expected) < 4 * np.sqrt(expected), area  # binomial, ~4 sigma
