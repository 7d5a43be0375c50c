"""Property tests (hypothesis): click simulation on arbitrary masks, recipe loading on random
dicts and YAML, and the I/O layer (exact round trips; random bytes only ever raise ImageReadError).

tests/test_prompts.py already covers rectangles; here masks are arbitrary pixel sets (holes,
several components, touching the border, filling the image).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import cv2
import numpy as np
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from synthfm.errors import ImageReadError, RecipeError
from synthfm.io.images import read_image
from synthfm.prompts import mask_to_box, next_interactive_click, simulate_clicks
from synthfm.synth.recipe import Recipe, default_recipe, load_recipe, recipe_from_dict, recipe_to_dict

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

masks = st.integers(1, 24).flatmap(lambda h: st.integers(1, 24).flatmap(
    lambda w: arrays(np.bool_, (h, w), elements=st.booleans())))


# ------------------------------------------------------------------------------------- prompts


@FAST
@given(mask=masks, n_pos=st.integers(1, 4), n_neg=st.integers(0, 4), seed=st.integers(0, 2**32 - 1))
def test_clicks_on_arbitrary_masks(mask, n_pos, n_neg, seed):
    assume(mask.any())
    clicks = simulate_clicks(mask, n_pos, n_neg, np.random.default_rng(seed))
    h, w = mask.shape
    has_background = not mask.all()
    assert len(clicks) == n_pos + (n_neg if has_background else 0)
    assert clicks.coords.dtype == np.float32 and clicks.labels.dtype == np.int32
    assert clicks.coords.shape == (len(clicks), 2)
    x, y = clicks.coords[:, 0].astype(int), clicks.coords[:, 1].astype(int)
    assert np.array_equal(clicks.coords, np.stack([x, y], 1).astype(np.float32))  # whole pixels
    assert ((0 <= x) & (x < w) & (0 <= y) & (y < h)).all()
    inside = mask[y, x]
    assert np.array_equal(inside, clicks.labels == 1)  # positives inside, negatives outside
    assert list(clicks.labels) == sorted(clicks.labels, reverse=True)  # positives first
    # the first click is a deepest object pixel (image border counts as boundary)
    dist = cv2.distanceTransform(np.pad(mask.astype(np.uint8), 1), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    assert dist[y[0], x[0]] >= dist.max() - 1e-4
    again = simulate_clicks(mask, n_pos, n_neg, np.random.default_rng(seed))
    assert np.array_equal(again.coords, clicks.coords) and np.array_equal(again.labels, clicks.labels)


@FAST
@given(gt=masks, flips=st.integers(0, 2**32 - 1))
def test_interactive_click_lands_in_an_error_with_the_right_label(gt, flips):
    rng = np.random.default_rng(flips)
    pred = gt ^ (rng.random(gt.shape) < 0.2)
    click = next_interactive_click(gt, pred)
    if np.array_equal(gt, pred):
        assert click is None
        return
    (x, y), label = click
    xi, yi = int(x), int(y)
    assert gt[yi, xi] != pred[yi, xi]  # on an error pixel
    assert label == int(gt[yi, xi])  # positive on a miss, negative on a false alarm


@FAST
@given(mask=masks, seed=st.integers(0, 1000), jitter=st.floats(0.0, 0.5))
def test_box_holds_the_mask_and_stays_in_the_image(mask, seed, jitter):
    assume(mask.any())
    x0, y0, x1, y1 = mask_to_box(mask)
    rows, cols = np.nonzero(mask)
    assert (x0, y0, x1, y1) == (cols.min(), rows.min(), cols.max(), rows.max())
    bx0, by0, bx1, by1 = mask_to_box(mask, np.random.default_rng(seed), jitter)
    h, w = mask.shape
    assert 0 <= bx0 <= bx1 <= w - 1 and 0 <= by0 <= by1 <= h - 1


# ------------------------------------------------------------------------------------- recipes


def _leaf_paths(d: dict, prefix: tuple = ()) -> list[tuple]:
    out = []
    for k, v in d.items():
        out.extend(_leaf_paths(v, prefix + (k,)) if isinstance(v, dict) else [prefix + (k,)])
        if isinstance(v, dict):
            out.append(prefix + (k,))  # a whole section can be replaced too
    return out


DEFAULT = recipe_to_dict(default_recipe())
PATHS = _leaf_paths(DEFAULT)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10), st.floats(allow_nan=True, allow_infinity=True),
    st.floats(0, 1), st.text(max_size=5),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=2)),
    max_leaves=4,
)
edits = st.lists(
    st.tuples(st.one_of(st.sampled_from(PATHS), st.tuples(st.sampled_from(PATHS), st.text(max_size=6)).map(
        lambda t: t[0][:-1] + (t[1],))), values),
    max_size=4,
)


def _apply(edits_: list) -> dict:
    import copy

    d = copy.deepcopy(DEFAULT)
    for path, value in edits_:
        node = d
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[path[-1]] = value
    return d


@settings(max_examples=120, deadline=None)
@given(edits_=edits)
def test_random_recipe_dicts_give_a_recipe_or_a_recipe_error(edits_):
    d = _apply(edits_)
    try:
        recipe = recipe_from_dict(d, source="random")
    except RecipeError as exc:
        assert str(exc).startswith("random: ") and "\n" not in str(exc)
        return
    assert isinstance(recipe, Recipe)
    assert recipe_from_dict(recipe_to_dict(recipe)) == recipe  # what validates round-trips


@settings(max_examples=50, deadline=None)
@given(edits_=edits, garble=st.text(max_size=30))
def test_random_recipe_files_give_a_recipe_or_a_recipe_error(edits_, garble):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.yaml"
        text = yaml.safe_dump(_apply(edits_), allow_unicode=True)
        cut = len(text) * len(garble) // 31
        path.write_text(text[:cut] + garble + text[cut:], encoding="utf-8")  # garble the YAML somewhere
        try:
            assert isinstance(load_recipe(path), Recipe)
        except RecipeError:
            pass


# ------------------------------------------------------------------------------------------ I/O

small_shapes = st.tuples(st.integers(1, 17), st.integers(1, 17))


@FAST
@given(data=st.data(), dtype=st.sampled_from([np.uint8, np.uint16]), shape=small_shapes)
def test_png_round_trip_is_exact(data, dtype, shape):
    arr = data.draw(arrays(dtype, shape))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.png"
        assert cv2.imwrite(str(path), arr)
        got = read_image(path)
    assert got.kind == "2d" and got.array.dtype == dtype and np.array_equal(got.array, arr)


@FAST
@given(data=st.data(), dtype=st.sampled_from([np.uint8, np.int16, np.uint16, np.int32, np.float32, np.float64]),
       shape=st.tuples(st.integers(2, 6), st.integers(1, 9), st.integers(1, 9)))
def test_nifti_round_trip_is_exact(data, dtype, shape):
    import nibabel as nib

    elements = st.floats(-1e6, 1e6, width=32) if np.dtype(dtype).kind == "f" else None
    arr = data.draw(arrays(dtype, shape, elements=elements))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "v.nii.gz"
        # nibabel axes (i, j, k) are synthfm's (X, Y, Z)
        nib.save(nib.Nifti1Image(arr.transpose(2, 1, 0), np.eye(4)), str(path))
        got = read_image(path)
    assert got.kind == "3d" and got.array.shape == shape
    assert got.array.dtype == arr.dtype and np.array_equal(got.array, arr)


def test_volume_array_outlives_the_reader_and_is_writeable(tmp_path):
    """Volumes share SimpleITK's pixel buffer (no copy); the array must keep that buffer alive."""
    import gc

    import nibabel as nib

    arr = np.random.default_rng(0).integers(-1000, 1000, (7, 33, 21)).astype(np.int16)
    nib.save(nib.Nifti1Image(arr.transpose(2, 1, 0), np.eye(4)), str(tmp_path / "v.nii.gz"))
    got = read_image(tmp_path / "v.nii.gz").array
    gc.collect()
    churn = [np.full(arr.shape, 12345, np.int16) for _ in range(20)]  # reuse any freed memory
    assert np.array_equal(got, arr) and churn[0][0, 0, 0] == 12345
    got[0, 0, 0] = 1
    assert got.flags.writeable and got[0, 0, 0] == 1


EXTENSIONS = (".png", ".jpg", ".tif", ".bmp", ".dcm", ".nii", ".nii.gz", ".nrrd", ".mha", ".xyz", "")
MAGICS = (b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM", b"\x00" * 128 + b"DICM",
          b"NRRD0004\n", b"ObjectType = Image\n", b"\x1f\x8b\x08\x00", b"\x5c\x01\x00\x00")


@settings(max_examples=200, deadline=None)
@given(ext=st.sampled_from(EXTENSIONS), magic=st.sampled_from(MAGICS), tail=st.binary(max_size=600))
def test_random_bytes_only_raise_image_read_error(ext, magic, tail):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"f{ext}"
        path.write_bytes(magic + tail)
        try:
            got = read_image(path)
        except ImageReadError as exc:
            assert str(exc) and "\n" not in str(exc).strip()
            return
    # a few byte strings are valid tiny images; then the result must be a sane array
    assert got.array.size >= 1 and math.prod(got.array.shape) == got.array.size
