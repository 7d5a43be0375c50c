"""3D propagation: slice traversal, stop rule, clean-up, embedding cache, `segment --propagate`."""

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from click.testing import CliRunner

from fake_state import ImageStateMixin
from synthfm.cli import cli
from synthfm.cli.support import run_click
from synthfm.errors import UserError
from synthfm.io.intensity import IntensityWindow
from synthfm.modeling import build_model
from synthfm.inference.predictor import Predictor
from synthfm.inference.propagation import (
    PropagationConfig,
    SlicePrompts,
    VolumeSlices,
    components_touching,
    prompts_from_mask,
    propagate,
)

UNIT = IntensityWindow(0.0, 1.0, "unit")


class ThresholdPredictor(ImageStateMixin):
    """Stands in for Predictor: 'segments' every pixel brighter than 0.5 when clicked on one.

    That makes the expected propagation result exact, so the traversal and the stop rule can be
    checked without a trained model.  It records the prompts it was given.
    """

    image_size = 64

    def __init__(self, greedy=False):
        self.greedy = greedy  # True: return every bright pixel even when the click misses them
        self.reset_image()
        self.calls = []
        self.encodings = 0

    def reset_image(self):
        self._features = None
        self.original_size = self.input_size = self.window = self.image_uint8 = None

    @property
    def is_image_set(self):
        return self._features is not None

    def set_image(self, image, preset="auto", modality=None):
        self._features = np.asarray(image, dtype=np.float32).copy()
        self.original_size = self.input_size = self._features.shape
        self.window = preset
        self.image_uint8 = (np.clip(self._features, 0, 1) * 255).astype(np.uint8)
        self.encodings += 1

    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None, multimask_output=False):
        self.calls.append({"coords": point_coords, "labels": point_labels, "box": box, "mask_input": mask_input})
        bright = self._features > 0.5
        x, y = (int(round(v)) for v in np.asarray(point_coords)[0])
        mask = bright if (bright[y, x] or self.greedy) else np.zeros_like(bright)
        c = 3 if multimask_output else 1
        return np.repeat(mask[None], c, 0), np.full(c, 0.9, np.float32), np.zeros((c, 16, 16), np.float32)


def _cylinder_volume(z=16, first=3, last=12, shape=(40, 48), centre=(20, 24), radius=8):
    vol = np.zeros((z,) + shape, np.float32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    disc = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2
    vol[first : last + 1][:, disc] = 1.0
    return vol, disc


def test_follows_the_object_both_ways_and_stops_where_it_ends():
    vol, disc = _cylinder_volume()
    fake = ThresholdPredictor()
    slices = VolumeSlices(fake, vol, axis=0, window=UNIT)
    result = propagate(slices, 7, np.array([[24, 20]], np.float32), np.array([1]))
    expected = vol > 0.5
    np.testing.assert_array_equal(result.mask, expected)
    assert result.slice_range == (3, 12)
    assert result.stops == {1: (13, "empty"), -1: (2, "empty")}
    assert "slices 3..12" in result.describe()
    # every slice visited once: 3..13 and 2 -> 12 encodings, none repeated
    assert fake.encodings == 12 and slices.encodings == 12
    # the prompt of slice k+1 is the deepest point of slice k's mask: the disc centre
    np.testing.assert_allclose(fake.calls[1]["coords"], [[24, 20]])
    # by default the previous slice's low-res logits (one mask) go back in as mask_input
    assert fake.calls[1]["box"] is None and fake.calls[1]["mask_input"].shape[0] == 1


def test_runs_to_the_volume_end_and_respects_max_slices():
    vol, _ = _cylinder_volume(z=10, first=0, last=9)
    result = propagate(VolumeSlices(ThresholdPredictor(), vol, window=UNIT), 4, np.array([[24, 20]]), np.array([1]))
    assert result.slice_range == (0, 9) and result.stops == {1: (10, "end"), -1: (-1, "end")}
    limited = propagate(VolumeSlices(ThresholdPredictor(), vol, window=UNIT), 4, np.array([[24, 20]]), np.array([1]),
                        max_slices=2)
    assert limited.slice_range == (2, 6) and limited.stops == {1: (7, "limit"), -1: (1, "limit")}


def test_other_axes_are_slices_of_the_same_array():
    vol, _ = _cylinder_volume()
    # along axis 2 (columns) slice 24 goes through the cylinder axis: rows x slices
    # (x, y) = (row 20, slice 7) in the (Z, Y) slice; the edge slices are thin, so no area test
    result = propagate(VolumeSlices(ThresholdPredictor(), vol, axis="sagittal", window=UNIT), 24,
                       np.array([[20, 7]]), np.array([1]), config=PropagationConfig(min_area_fraction=0.0))
    np.testing.assert_array_equal(result.mask, vol > 0.5)
    assert result.slice_range == (16, 32)


def test_stops_when_the_area_shrinks_below_the_fraction_of_the_seed():
    z, shape = 12, (48, 48)
    vol = np.zeros((z,) + shape, np.float32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    radii = [2, 3, 5, 7, 9, 11, 11, 9, 7, 5, 3, 2]  # a spindle; seed slice 5 has r = 11
    for k, r in enumerate(radii):
        vol[k][(yy - 24) ** 2 + (xx - 24) ** 2 <= r * r] = 1.0
    areas = (vol > 0.5).sum(axis=(1, 2))
    cfg = PropagationConfig(min_area_fraction=0.2)
    result = propagate(VolumeSlices(ThresholdPredictor(), vol, window=UNIT), 5, np.array([[24, 24]]), np.array([1]),
                       config=cfg)
    kept = sorted(result.records)
    assert all(areas[k] >= 0.2 * areas[5] for k in kept)
    assert result.stops[1][1] == "small" and result.stops[-1][1] == "small"
    assert areas[result.stops[1][0]] < 0.2 * areas[5] and areas[result.stops[-1][0]] < 0.2 * areas[5]


def test_stops_when_the_object_jumps_away_and_drops_unrelated_blobs():
    z, shape = 8, (40, 60)
    vol = np.zeros((z,) + shape, np.float32)
    vol[:, 5:15, 40:55] = 1.0  # another structure, present on every slice
    vol[2:6, 18:30, 5:20] = 1.0  # the object on slices 2..5
    vol[6, 18:30, 22:36] = 1.0  # ... then something that does not overlap it
    result = propagate(VolumeSlices(ThresholdPredictor(greedy=True), vol, window=UNIT), 3, np.array([[12, 24]]),
                       np.array([1]))
    assert result.slice_range == (2, 5)
    assert result.stops[1] == (6, "no_overlap")
    # the predictor returned both blobs; only the clicked one (seed) and its continuation are kept
    assert not result.mask[:, 5:15, 40:55].any() and result.mask[2:6, 18:30, 5:20].all()
    loose = propagate(VolumeSlices(ThresholdPredictor(), vol, window=UNIT), 3, np.array([[12, 24]]), np.array([1]),
                      config=PropagationConfig(keep_overlapping=False))
    assert loose.mask[4, 5:15, 40:55].all()


def test_growth_and_score_guards():
    vol, _ = _cylinder_volume()
    vol[9:, 10:30, 5:45] = 1.0  # leaks into a big neighbour from slice 9 on
    res = propagate(VolumeSlices(ThresholdPredictor(), vol, window=UNIT), 7, np.array([[24, 20]]), np.array([1]),
                    config=PropagationConfig(max_area_growth=1.5))
    assert res.stops[1] == (9, "growth")
    strict = propagate(VolumeSlices(ThresholdPredictor(), vol, window=UNIT), 7, np.array([[24, 20]]), np.array([1]),
                       config=PropagationConfig(min_score=0.95))
    assert strict.slice_range == (7, 7) and strict.stops[1][1] == "low_score"


def test_guide_clicks_steer_past_a_stop():
    vol, _ = _cylinder_volume()
    vol[9:, 10:30, 5:45] = 1.0  # leaks into a big neighbour from slice 9 on: the growth stop ends it there
    slices = VolumeSlices(ThresholdPredictor(), vol, window=UNIT)
    guide = SlicePrompts(np.array([[24, 20]], np.float32), np.array([1]))
    res = propagate(slices, 7, np.array([[24, 20]]), np.array([1]), config=PropagationConfig(max_area_growth=1.5),
                    guides={9: guide})
    # the user's click on slice 9 says the big blob is the object: it is kept, and slice 10 goes on from it
    assert 9 in res.records and res.mask[9, 10:30, 5:45].all() and res.records[9].clicks == 1
    assert res.mask[10:13].any()
    assert slices.predictor.calls[-1]["coords"] is not guide.coords  # later slices use derived prompts again


def test_a_stop_short_of_a_guide_jumps_to_it_and_goes_on():
    vol, disc = _cylinder_volume(first=3, last=14)
    vol[9:11] = 0.0  # the object vanishes on slices 9-10 (a stop), and is back from 11 on
    slices = VolumeSlices(ThresholdPredictor(), vol, window=UNIT)
    guide = SlicePrompts(np.array([[24, 20]], np.float32), np.array([1]))
    plain = propagate(slices, 7, np.array([[24, 20]]), np.array([1]))
    assert plain.stops[1] == (9, "empty") and not plain.mask[11:].any() and plain.gaps == []
    res = propagate(slices, 7, np.array([[24, 20]]), np.array([1]), guides={12: guide})
    assert res.gaps == [(9, 12, "empty")]
    assert not res.mask[9:12].any() and res.mask[12][disc].all() and res.mask[13:15].any()
    assert res.stops[1] == (15, "empty") and res.stops[-1] == (2, "empty")
    guided = [c for c in slices.predictor.calls if c["coords"] is guide.coords]
    assert len(guided) == 1 and guided[0]["mask_input"] is None  # the guide slice is prompted alone
    # a guide behind the stop's direction, or beyond max_slices, changes nothing
    assert propagate(slices, 7, np.array([[24, 20]]), np.array([1]), guides={5: guide}).stops[1] == (9, "empty")
    far = propagate(slices, 7, np.array([[24, 20]]), np.array([1]), guides={12: guide}, max_slices=3)
    assert far.gaps == [] and far.stops[1] == (9, "empty")


def test_empty_seed_and_bad_slice_are_user_errors():
    vol, _ = _cylinder_volume()
    slices = VolumeSlices(ThresholdPredictor(), vol, window=UNIT)
    with pytest.raises(UserError, match="empty"):
        propagate(slices, 7, np.array([[1, 1]]), np.array([1]))
    with pytest.raises(UserError, match="out of range"):
        propagate(slices, 16, np.array([[24, 20]]), np.array([1]))
    with pytest.raises(UserError):
        PropagationConfig(n_pos=0)


def test_prompts_from_mask_box_and_clicks():
    mask = np.zeros((50, 60), bool)
    mask[10:30, 20:50] = True
    cfg = PropagationConfig(n_pos=3, n_neg=2, use_box=True, box_margin=0.1)
    p = prompts_from_mask(mask, cfg, np.random.default_rng(0))
    assert p.labels.tolist() == [1, 1, 1, 0, 0]
    for (x, y), lab in zip(p.coords, p.labels):
        assert mask[int(y), int(x)] == bool(lab)
    np.testing.assert_allclose(p.box, [17, 7, 52, 32])  # bbox (20,10,49,29) grown by 0.1 x 30 px
    again = prompts_from_mask(mask, cfg, np.random.default_rng(0))
    np.testing.assert_array_equal(p.coords, again.coords)


def test_components_touching():
    m = np.zeros((20, 20), bool)
    m[2:5, 2:5] = m[10:15, 10:15] = True
    ref = np.zeros_like(m)
    ref[12, 12] = True
    kept = components_touching(m, ref)
    assert kept[10:15, 10:15].all() and not kept[2:5, 2:5].any()
    assert not components_touching(m, np.zeros_like(m)).any()


def test_real_predictor_cache_and_mask_input():
    torch.manual_seed(0)
    predictor = Predictor(build_model("tiny_cnn", image_size=64))
    vol = np.full((6, 40, 48), -1000, np.int16)
    vol[:, 10:30, 12:36] = 60
    slices = VolumeSlices(predictor, vol, axis=0, window="soft_tissue", cache_size=3)
    slices.set_slice(2)
    first = predictor.get_image_embedding().clone()
    slices.set_slice(3)
    slices.set_slice(2)  # from the cache: no new encoder pass, same embedding
    assert slices.encodings == 2
    assert torch.equal(predictor.get_image_embedding(), first)
    for k in (0, 1, 4, 5):
        slices.set_slice(k)
    slices.set_slice(2)  # evicted (cache of 3) -> encoded again, same result
    assert slices.encodings == 7
    torch.testing.assert_close(predictor.get_image_embedding(), first)
    predictor.set_image(np.zeros((10, 10), np.uint8))  # someone else uses the predictor meanwhile
    slices.set_slice(2)
    assert slices.encodings == 7 and predictor.original_size == (40, 48)
    torch.testing.assert_close(predictor.get_image_embedding(), first)
    try:
        res = propagate(slices, 2, np.array([[24, 20]]), np.array([1]),
                        config=PropagationConfig(use_mask_input=True, use_box=True, n_neg=1))
    except UserError as exc:  # a random model may predict nothing at the click
        assert "empty" in str(exc)
    else:
        assert res.mask.shape == vol.shape and res.mask[2].any()
        assert set(res.records) == set(range(res.slice_range[0], res.slice_range[1] + 1))


# -------------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_checkpoint):
    d = tmp_path_factory.mktemp("propagate")
    model = tiny_checkpoint
    vol = np.full((7, 30, 40), -1000, np.int16)
    vol[1:6, 8:22, 10:30] = 60
    img = sitk.GetImageFromArray(vol)
    img.SetSpacing((0.8, 0.9, 3.5))
    img.SetOrigin((-20.0, 7.0, 100.0))
    nii = d / "ct.nii.gz"
    sitk.WriteImage(img, str(nii))
    png = d / "flat.png"
    import cv2

    cv2.imwrite(str(png), np.full((30, 40), 100, np.uint8))
    return {"model": model, "nii": nii, "png": png}


def test_segment_propagate_writes_a_volume_in_the_source_geometry(files, tmp_path):
    out, overlay = tmp_path / "mask.nrrd", tmp_path / "seed.png"
    args = ["segment", str(files["nii"]), "--point", "20,15", "--slice", "3", "--window", "soft_tissue",
            "--model", str(files["model"]), "--out", str(out), "--overlay", str(overlay), "--propagate"]
    result = CliRunner().invoke(cli, args)
    if result.exit_code != 0:  # the random model may leave the seed empty; then it must say so
        assert "empty" in str(result.exception), result.output
        pytest.skip("random model predicted an empty seed slice")
    assert "propagated slices" in result.output and "stopped" in result.output
    src, got = sitk.ReadImage(str(files["nii"])), sitk.ReadImage(str(out))
    assert got.GetSize() == src.GetSize()
    np.testing.assert_allclose(got.GetSpacing(), src.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(got.GetOrigin(), src.GetOrigin(), atol=1e-5)
    mask = sitk.GetArrayFromImage(got)
    assert set(np.unique(mask)) <= {0, 1} and mask[3].any()
    filled = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    assert np.array_equal(filled, np.arange(filled[0], filled[-1] + 1))  # one contiguous run of slices
    assert overlay.is_file()
    # slice K is plain `segment`'s mask, less the blobs that do not hold the click
    single = tmp_path / "single.nii.gz"
    plain = CliRunner().invoke(cli, args[:-5] + ["--out", str(single)])
    assert plain.exit_code == 0, plain.output
    plain_k = sitk.GetArrayFromImage(sitk.ReadImage(str(single)))[3].astype(bool)
    assert not (mask[3].astype(bool) & ~plain_k).any()
    if plain_k[15, 20]:
        assert mask[3, 15, 20]


def test_segment_guide_clicks_reach_propagate(files, tmp_path, monkeypatch):
    import synthfm.inference.propagation as prop

    seen = {}

    def fake_propagate(slices, seed_index, **kw):
        seen.update(kw, seed_index=seed_index)
        out = np.zeros(slices.volume.shape, bool)
        out[seed_index, 10:20, 12:28] = True
        return prop.PropagationResult(out, seed_index, 0, {seed_index: prop.SliceRecord(seed_index, 160, 0.9, 1)},
                                      {1: (4, "empty"), -1: (2, "empty")})

    monkeypatch.setattr(prop, "propagate", fake_propagate)
    out = tmp_path / "m.nii.gz"
    args = ["segment", str(files["nii"]), "--point", "20,15", "--slice", "3", "--model", str(files["model"]),
            "--out", str(out), "--propagate", "--guide", "5:21,14", "--guide", "5:18,16", "--guide", "1:20,15"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    guides = seen["guides"]
    assert sorted(guides) == [1, 5] and seen["seed_index"] == 3
    assert guides[5].coords.tolist() == [[21, 14], [18, 16]] and guides[5].labels.tolist() == [1, 1]


@pytest.mark.parametrize("extra, message", [
    (["--guide", "5:21"], "expected"),
    (["--guide", "x:1,2"], "K:X,Y"),
    (["--guide", "9:20,15"], "out of range"),
    (["--guide", "3:20,15"], "on slice K itself"),
    (["--guide", "5:99,15"], "outside the image"),
])
def test_segment_bad_guide_is_one_line_error(files, tmp_path, capsys, extra, message):
    out = tmp_path / "m.nii.gz"
    code = run_click(cli, ["segment", str(files["nii"]), "--point", "20,15", "--slice", "3", "--model",
                           str(files["model"]), "--out", str(out), "--propagate", *extra], prog_name="synthfm")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_segment_guide_needs_propagate(files, tmp_path, capsys):
    code = run_click(cli, ["segment", str(files["nii"]), "--point", "20,15", "--slice", "3", "--model",
                           str(files["model"]), "--out", str(tmp_path / "m.nii.gz"), "--guide", "5:20,15"],
                     prog_name="synthfm")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--guide steers --propagate" in err[0]


def test_segment_propagate_on_a_2d_image_is_one_line_error(files, tmp_path, capsys):
    code = run_click(cli, ["segment", str(files["png"]), "--point", "5,5", "--propagate", "--model",
                           str(files["model"]), "--out", str(tmp_path / "m.png")], prog_name="synthfm")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--propagate needs a volume" in err[0]
    assert not (tmp_path / "m.png").exists()


# ------------------------------------------------------------------------ the evaluation


def test_volume_objects_use_26_connectivity_and_a_size_floor():
    from synthfm.evaluation.propagation import largest_slice, volume_objects

    lab = np.zeros((6, 10, 10), np.uint8)
    lab[1, 2, 2] = lab[2, 3, 3] = 1  # touch only at a corner: one 26-connected object
    lab[4:6, 6:9, 6:9] = 1  # a second, larger object of class 1
    lab[0, 9, 9] = 2  # a one-voxel object of class 2
    objs = volume_objects(lab, {"a": 1, "b": 2}, min_fraction=0.0)
    assert [(o.class_name, o.voxels) for o in objs] == [("a", 18), ("a", 2), ("b", 1)]
    assert [o.class_name for o in volume_objects(lab, {"a": 1, "b": 2}, min_fraction=2 / lab.size)] == ["a", "a"]
    assert largest_slice(objs[0].mask, 0) == 4 and largest_slice(objs[0].mask, 2) == 6


def test_evaluate_volumes_scores_a_perfect_predictor_at_one(tmp_path):
    import json

    from synthfm.evaluation.propagation import VARIANTS, evaluate_volumes, summarise, summary_markdown

    root = tmp_path / "data" / "Toy3D"
    (root / "imagesTs").mkdir(parents=True)
    (root / "labelsTs").mkdir()
    (root / "dataset.json").write_text(json.dumps({
        "name": "Toy3D", "modality": "CT", "labels": {"background": 0, "organ": 1}, "file_ending": ".nii.gz",
        "pseudo_labels": True}))
    vol, _ = _cylinder_volume()
    sitk.WriteImage(sitk.GetImageFromArray(vol), str(root / "imagesTs" / "case1_0000.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray((vol > 0.5).astype(np.uint8)), str(root / "labelsTs" / "case1.nii.gz"))
    ev = evaluate_volumes(tmp_path / "data", ThresholdPredictor(), {"click": VARIANTS["click"], "click+box": VARIANTS["click+box"]})
    assert [r["variant"] for r in ev.rows] == ["click", "click+box"]
    row = ev.rows[0]
    assert row["dice_3d"] == 1.0 and row["dice_seed"] == 1.0 and row["dice_oracle"] == 1.0
    assert row["gt_slices"] == row["pred_slices"] == "3..12" and row["stop_up"] == "empty@13" and row["pseudo"]
    assert all(r["dice_by_click"] == [1.0] * 5 for r in ev.refinement) and len(ev.refinement) == 2
    summary = summarise(ev)
    assert summary["table"][0]["dice_3d"] == 1.0 and summary["refinement_mean_dice_by_click"]["clicks_only"][0] == 1.0
    assert "| Toy3D | pseudo | click | 1 | 1.000" in summary_markdown(summary)
    with pytest.raises(UserError, match="no volume dataset"):
        (tmp_path / "flat" / "Toy2D" / "imagesTs").mkdir(parents=True)
        (tmp_path / "flat" / "Toy2D" / "dataset.json").write_text(json.dumps(
            {"name": "Toy2D", "modality": "CT", "labels": {"background": 0, "x": 1}, "file_ending": ".png"}))
        evaluate_volumes(tmp_path / "flat", ThresholdPredictor())


def test_guide_clicks_sit_near_the_object_ends_and_skip_the_seed():
    from synthfm.evaluation.propagation import guide_clicks

    vol, disc = _cylinder_volume(first=3, last=13)
    mask = vol > 0.5
    guides = guide_clicks(mask, 0, seed_index=8)
    assert sorted(guides) == [5, 11]  # 3 + round(0.15 * 10), 3 + round(0.85 * 10)
    for g, prompts in guides.items():
        x, y = prompts.coords[0]
        assert mask[g, int(round(y)), int(round(x))] and prompts.labels.tolist() == [1]
    assert sorted(guide_clicks(mask, 0, seed_index=5)) == [11]


def test_benchmark_script_writes_its_outputs(files, tmp_path):
    import importlib.util
    import json

    root = tmp_path / "data" / "Toy3D"
    (root / "imagesTs").mkdir(parents=True)
    (root / "labelsTs").mkdir()
    (root / "dataset.json").write_text(json.dumps(
        {"name": "Toy3D", "modality": "CT", "labels": {"background": 0, "organ": 1}, "file_ending": ".nii.gz"}))
    vol = np.full((6, 32, 32), -1000, np.int16)
    vol[1:5, 8:24, 8:24] = 60
    sitk.WriteImage(sitk.GetImageFromArray(vol), str(root / "imagesTs" / "c_0000.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray((vol > 0).astype(np.uint8)), str(root / "labelsTs" / "c.nii.gz"))
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "eval_propagation.py"
    spec = importlib.util.spec_from_file_location("eval_propagation", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "out"
    code = module.main(["--model", str(files["model"]), "--data", str(tmp_path / "data"), "--out", str(out),
                        "--json", str(tmp_path / "s.json"), "--quiet", "--no-oracle",
                        "--threads", str(torch.get_num_threads())])
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"per_object.csv", "refinement.csv", "summary.json", "summary.md"}
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["table"][0]["dataset"] == "Toy3D" and summary["model"]["encoder"] == "tiny_cnn"
    assert 0.0 <= summary["rows"][0]["dice_3d"] <= 1.0 and summary["table"][0]["dice_oracle"] is None
    assert "| - |" in (out / "summary.md").read_text()
    assert module.main(["--model", str(tmp_path / "nope.safetensors"), "--data", str(tmp_path / "data"),
                        "--out", str(out)]) == 2
