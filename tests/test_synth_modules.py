"""The two generator modules: shape-aware (Bézier shapes) and boundary-aware (label maps + erosion)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from synthfm.synth.labelmaps import adjacent_pairs, erode_labels, render_boundary_scene
from synthfm.synth.recipe import default_recipe, recipe_from_dict
from synthfm.synth.shapes import render_shape_scene

KERNEL3 = np.ones((3, 3), np.uint8)


def _mask(labels, k):
    return (labels == k).astype(np.uint8)


def _touch(a: np.ndarray, b: np.ndarray) -> bool:
    return bool((cv2.dilate(a, KERNEL3) & b).any())


def _adjacent_distinct_nonzero(labels: np.ndarray) -> bool:
    """Any two 8-neighbouring pixels with different non-zero labels?"""
    lab = labels.astype(np.int32)
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = lab[max(0, -dy) : lab.shape[0] - max(0, dy), max(0, -dx) : lab.shape[1] - max(0, dx)]
        b = lab[max(0, dy) :, max(0, dx) : lab.shape[1] + min(0, dx) or None]
        b = b[: a.shape[0], : a.shape[1]]
        if np.any((a != b) & (a > 0) & (b > 0)):
            return True
    return False


def test_shape_scene_contract():
    recipe = default_recipe()
    for seed in range(10):
        scene = render_shape_scene(recipe.shape, recipe.contrast, 96, np.random.default_rng(seed))
        assert scene.labels.shape == (96, 96) and scene.labels.dtype == np.uint8
        assert scene.intensity.dtype == np.float32 and scene.intensity.shape == (256,)
        assert np.all((scene.intensity >= 0) & (scene.intensity <= 1))
        n = max(max(c) for c in scene.candidates)
        lo, hi = recipe.shape.num_shapes_range
        assert lo <= n <= hi
        assert set(np.unique(scene.labels)) <= set(range(n + 1))
        assert [c for c in scene.candidates if len(c) == 1] == [(k,) for k in range(1, n + 1)]


def test_nested_shapes_lie_inside_their_parent():
    recipe = recipe_from_dict({"shape": {"num_shapes_range": [2, 2], "p_nested": 1.0, "p_touching": 0.0}})
    for seed in range(15):
        scene = render_shape_scene(recipe.shape, recipe.contrast, 128, np.random.default_rng(seed))
        child, parent = _mask(scene.labels, 2), _mask(scene.labels, 1)
        if child.sum() == 0:
            continue
        # the child's 1-pixel neighbourhood is the child or its parent (allowing the image edge)
        ring = cv2.dilate(child, KERNEL3) & ~child.astype(bool)
        assert np.all(parent[ring.astype(bool)] == 1)
        assert (1, 2) in scene.candidates  # the filled parent (parent + child) is a target


def test_touching_shapes_share_a_boundary():
    recipe = recipe_from_dict({"shape": {"num_shapes_range": [2, 2], "p_nested": 0.0, "p_touching": 1.0}})
    touching = 0
    for seed in range(20):
        scene = render_shape_scene(recipe.shape, recipe.contrast, 128, np.random.default_rng(seed))
        a, b = _mask(scene.labels, 1), _mask(scene.labels, 2)
        touching += a.any() and b.any() and _touch(a, b)
    assert touching >= 16  # the rest fell back to free placement (centre would leave the image)


def test_shape_sizes_span_tiny_to_half_the_image():
    recipe = default_recipe()
    fractions = []
    for seed in range(30):
        scene = render_shape_scene(recipe.shape, recipe.contrast, 128, np.random.default_rng(seed))
        counts = np.bincount(scene.labels.ravel(), minlength=256)[1:]
        fractions.extend(counts[counts > 0] / 128**2)
    assert min(fractions) < 0.005
    assert max(fractions) > 0.1


def test_erode_labels_opens_a_gap_of_the_requested_radius():
    labels = np.zeros((40, 40), np.uint8)
    labels[:, :20] = 1
    labels[:, 20:] = 2
    radius = np.zeros(256, np.float32)
    radius[1] = radius[2] = 2.0
    out = erode_labels(labels, radius)
    assert not _adjacent_distinct_nonzero(out)
    row = out[20]
    gap = np.flatnonzero(row == 0)
    assert 2 <= gap.size <= 6 and np.all(np.diff(gap) == 1)
    assert set(np.unique(out)) == {0, 1, 2}
    # radius 0 leaves a label untouched
    radius[2] = 0.0
    out = erode_labels(labels, radius)
    assert np.all(out[:, 20:] == 2)


def test_boundary_scene_with_erosion_has_gaps_between_all_structures():
    recipe = recipe_from_dict({"boundary": {"p_erosion": 1.0, "p_background": 0.0}})
    for seed in range(6):
        scene = render_boundary_scene(recipe.boundary, recipe.contrast, 128, np.random.default_rng(seed))
        assert scene.labels.shape == (128, 128) and scene.labels.dtype == np.uint8
        assert not _adjacent_distinct_nonzero(scene.labels)
        assert (scene.labels == 0).mean() > 0.01


def test_boundary_scene_without_erosion_tiles_the_image():
    recipe = recipe_from_dict({"boundary": {"p_erosion": 0.0, "p_background": 0.0, "p_union": 1.0}})
    for seed in range(6):
        scene = render_boundary_scene(recipe.boundary, recipe.contrast, 128, np.random.default_rng(seed))
        assert (scene.labels > 0).all()
        assert _adjacent_distinct_nonzero(scene.labels)
        unions = [c for c in scene.candidates if len(c) == 2]
        assert len(unions) == 1
        a, b = unions[0]
        assert _touch(_mask(scene.labels, a), _mask(scene.labels, b))


def test_boundary_background_surrounds_the_structures():
    recipe = recipe_from_dict({"boundary": {"p_background": 1.0, "p_erosion": 0.0}})
    scene = render_boundary_scene(recipe.boundary, recipe.contrast, 128, np.random.default_rng(0))
    corners = scene.labels[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert np.all(corners == 0)
    assert (scene.labels > 0).mean() > 0.2


def test_near_equal_neighbours_differ_by_little_but_the_gap_stands_out():
    recipe = recipe_from_dict({"boundary": {"p_near_equal": 1.0, "near_equal_delta_range": [0.0, 0.03]}})
    for seed in range(5):
        scene = render_boundary_scene(recipe.boundary, recipe.contrast, 64, np.random.default_rng(seed))
        k = max(max(c) for c in scene.candidates)
        values = scene.intensity[1 : k + 1]
        assert values.max() - values.min() <= 0.06 + 1e-6
        assert np.min(np.abs(values - scene.intensity[0])) >= 0.15 - 0.03 - 1e-6


def test_adjacent_pairs_finds_touching_labels_only():
    labels = np.zeros((10, 10), np.uint8)
    labels[:5, :5] = 1
    labels[:5, 5:] = 2
    labels[7:, :] = 3
    assert adjacent_pairs(labels) == [(1, 2)]


@pytest.mark.parametrize("size", [64, 100])
def test_modules_work_at_small_and_odd_sizes(size):
    recipe = default_recipe()
    for render in (render_shape_scene, render_boundary_scene):
        cfg = recipe.shape if render is render_shape_scene else recipe.boundary
        scene = render(cfg, recipe.contrast, size, np.random.default_rng(1))
        assert scene.labels.shape == (size, size)
