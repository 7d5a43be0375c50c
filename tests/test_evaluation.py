"""The evaluation protocol (synthfm.evaluation.protocol) and its report (synthfm.evaluation.report)."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from test_datasets import write_nifti_dataset, write_png_case, write_png_dataset

from synthfm.evaluation.datasets import find_datasets
from synthfm.evaluation.protocol import EvalProtocol, build_methods, evaluate, object_rng, stable_hash
from synthfm.evaluation.report import summarise, summary_markdown, write_report
from synthfm.errors import UserError
from synthfm.prompts import Clicks


class Oracle:
    """Reads the answer off images whose intensity encodes the label (see test_datasets)."""

    def __init__(self, name="oracle", levels=(40.0, 80.0), shift=(0, 0)):
        self.name, self.levels, self.shift = name, levels, shift
        self.set_image_calls = 0
        self.predict_calls = 0
        self.clicks: list[Clicks] = []

    def set_image(self, image, modality=None):
        self.set_image_calls += 1
        base, step = self.levels
        self.classes = np.rint((image.astype(np.float32) - base) / step).astype(np.int32)

    def predict(self, clicks):
        self.predict_calls += 1
        self.clicks.append(clicks)
        x, y = clicks.coords[0]
        r, c = int(round(y)), int(round(x))
        same = (self.classes == self.classes[r, c]).astype(np.uint8)
        _, comp = cv2.connectedComponents(same, connectivity=8)
        mask = comp == comp[r, c]
        return np.roll(mask, self.shift, axis=(0, 1))


class Empty(Oracle):
    def predict(self, clicks):
        super().predict(clicks)
        return np.zeros(self.classes.shape, bool)


def run(paths, methods, **protocol):
    datasets, pseudo = find_datasets(paths)
    return evaluate(datasets, methods, EvalProtocol(**protocol), progress=False, warn=lambda m: None, skipped_datasets=pseudo)


def test_oracle_scores_one_and_empty_scores_zero(tmp_path):
    write_png_dataset(tmp_path / "D", n_cases=2)
    oracle, empty = Oracle(), Empty("empty")
    result = run(tmp_path / "D", [oracle, empty])
    n_settings = 4
    assert result.datasets["D"]["objects"] == 6  # 3 objects per case, the speck excluded
    assert len(result.rows) == 6 * n_settings * 2
    for r in result.rows:
        if r.method == "oracle":
            assert (r.dice, r.iou, r.nsd, r.hd95) == (1.0, 1.0, 1.0, 0.0) and not r.empty_prediction
        else:
            assert r.dice == 0.0 and r.nsd == 0.0 and math.isnan(r.hd95) and r.empty_prediction
    summary = summarise(result)
    by = {(row["method"], row["dataset"], row["prompt"]): row for row in summary["rows"]}
    assert by[("oracle", "D", "1,0")]["dice_mean"] == 1.0 and by[("oracle", "ALL:CT", "3,2")]["n"] == 6
    assert by[("empty", "D", "1,2")]["dice_mean"] == 0.0 and by[("empty", "D", "1,2")]["hd95_median"] is None
    assert by[("empty", "D", "1,2")]["empty_predictions"] == 6


def test_one_set_image_per_image_serves_every_object_and_prompt(tmp_path):
    write_png_dataset(tmp_path / "D", n_cases=3)
    write_nifti_dataset(tmp_path / "V")
    methods = [Oracle("a"), Oracle("b")]
    run(tmp_path, methods, settings=((1, 0), (3, 2)))
    slices, objects = 3 + 2, 3 * 3 + 2
    for m in methods:
        assert m.set_image_calls == slices
        assert m.predict_calls == objects * 2


def test_clicks_depend_only_on_object_identity(tmp_path):
    write_png_dataset(tmp_path / "D", n_cases=2)
    settings = ((3, 2),)
    a1, b1 = Oracle("a"), Oracle("b")
    run(tmp_path / "D", [a1, b1], settings=settings)
    # same clicks for every method
    assert all(np.array_equal(x.coords, y.coords) for x, y in zip(a1.clicks, b1.clicks))
    # same clicks with other datasets present and fewer objects
    write_png_dataset(tmp_path / "C", n_cases=1)
    a2 = Oracle("a")
    run(tmp_path, [a2], settings=settings, limit_objects=2)
    first_d = a2.clicks[2:4]  # dataset C (sorted first) contributes 2 objects, then D's first 2
    assert all(np.array_equal(x.coords, y.coords) for x, y in zip(a1.clicks[:2], first_d))
    # another seed moves the random clicks, the same seed reproduces them
    a3, a4 = Oracle("a"), Oracle("a")
    run(tmp_path / "D", [a3], settings=settings, seed=1)
    run(tmp_path / "D", [a4], settings=settings, seed=1)
    assert any(not np.array_equal(x.coords, y.coords) for x, y in zip(a1.clicks, a3.clicks))
    assert all(np.array_equal(x.coords, y.coords) for x, y in zip(a3.clicks, a4.clicks))
    assert stable_hash("D", "case00", None) == stable_hash("D", "case00", None) != stable_hash("D", "case01", None)
    g1 = object_rng(0, "D", "case00", None, "organ", 0, "3,2").integers(1 << 30, size=4)
    g2 = object_rng(0, "D", "case00", None, "organ", 0, "3,2").integers(1 << 30, size=4)
    assert np.array_equal(g1, g2)


def test_positive_clicks_inside_and_negative_clicks_outside(tmp_path):
    write_png_dataset(tmp_path / "D", n_cases=1)
    probe = Oracle()
    result = run(tmp_path / "D", [probe], settings=((3, 2), (1, 0)))
    assert len(probe.clicks) == 3 * 2
    for clicks, row in zip(probe.clicks, result.rows):
        p, n = map(int, row.prompt.split(","))
        assert list(clicks.labels) == [1] * p + [0] * n
        assert row.dice == 1.0  # the oracle segments the object under the first positive click
    # every positive click of an object lies on its class, every negative click off it
    for clicks in probe.clicks:
        x0, y0 = clicks.coords[0]
        cls = probe.classes[int(y0), int(x0)]
        for (x, y), lab in zip(clicks.coords, clicks.labels):
            assert (probe.classes[int(round(y)), int(round(x))] == cls) == bool(lab)


def test_bad_cases_are_reported_skipped_and_counted(tmp_path):
    root = write_png_dataset(tmp_path / "D", n_cases=2)
    label = np.zeros((64, 64), np.uint8)
    label[10:30, 10:30] = 1
    write_png_case(root, "mismatch", np.zeros((40, 64), np.uint8), label)
    write_png_case(root, "unknown_id", np.zeros((64, 64), np.uint8), label * 5)
    write_png_case(root, "corrupt", np.zeros((64, 64), np.uint8), label)
    (root / "labelsTs" / "corrupt.png").write_bytes(b"garbage")
    warnings = []
    datasets, _ = find_datasets(root)
    result = evaluate(datasets, [Oracle()], EvalProtocol(), progress=False, warn=warnings.append)
    assert len(result.skipped) == 3 and len(warnings) == 3
    assert {s["case"] for s in result.skipped} == {"mismatch", "unknown_id", "corrupt"}
    assert all("\n" not in w for w in warnings)
    assert result.datasets["D"]["objects"] == 6 and result.datasets["D"]["cases"] == 2
    assert summarise(result)["skipped_count"] == 3


def test_volume_metrics_are_in_mm_of_the_slice_geometry(tmp_path):
    write_nifti_dataset(tmp_path / "V")
    levels = (100.0, 300.0)
    exact = Oracle("exact", levels)
    right = Oracle("right", levels, shift=(0, 1))  # one column = 0.5 mm
    down = Oracle("down", levels, shift=(1, 0))  # one row = 0.8 mm
    result = run(tmp_path / "V", [exact, right, down], settings=((1, 0),))
    by = {(r.method, r.slice): r for r in result.rows}
    assert {k[1] for k in by} == {1, 2}
    assert by[("exact", 1)].dice == 1.0
    assert by[("right", 1)].hd95 == pytest.approx(0.5)
    assert by[("down", 2)].hd95 == pytest.approx(0.8)
    assert by[("right", 1)].dice == pytest.approx(2 * (16 * 9) / (2 * 160))  # 16 rows x 10 cols, shifted 1 col


def test_interactive_protocol_rows_and_clicks(tmp_path):
    write_png_dataset(tmp_path / "D", n_cases=1)
    probe = Empty("empty")
    result = run(tmp_path / "D", [probe], settings=((1, 0),), interactive=3)
    prompts = [r.prompt for r in result.rows]
    assert prompts.count("1,0") == 3 and prompts.count("i1") == prompts.count("i3") == 3
    # with an empty prediction every next click is a positive one inside the object
    interactive = probe.clicks[3:]
    assert [len(c) for c in interactive] == [1, 2, 3] * 3
    assert all((c.labels == 1).all() for c in interactive)
    oracle = Oracle()
    result = run(tmp_path / "D", [oracle], settings=((1, 0),), interactive=3)
    assert all(r.dice == 1.0 for r in result.rows)
    assert oracle.predict_calls == 3 + 3  # an exact prediction is not asked again


def test_modality_pool_is_object_weighted_and_report_files(tmp_path):
    write_png_dataset(tmp_path / "A", n_cases=1)  # 3 objects, all perfect
    root = write_png_dataset(tmp_path / "B", n_cases=3)  # 9 objects
    # B's images encode nothing useful for the oracle: make them constant -> one big component
    for path in (root / "imagesTs").iterdir():
        cv2.imwrite(str(path), np.full((64, 64), 40, np.uint8))
    result = run(tmp_path, [Oracle()], settings=((1, 0),))
    summary = summarise(result)
    by = {(row["dataset"], row["prompt"]): row for row in summary["rows"]}
    a, b, pool = by[("A", "1,0")], by[("B", "1,0")], by[("ALL:CT", "1,0")]
    assert pool["n"] == a["n"] + b["n"] == 12
    assert pool["dice_mean"] == pytest.approx((3 * a["dice_mean"] + 9 * b["dice_mean"]) / 12, abs=1e-5)
    out = tmp_path / "out"
    write_report(out, result)
    assert {p.name for p in out.iterdir()} == {"per_object.csv", "summary.json", "summary.md", "dice.png", "overlays"}
    assert sorted(p.name for p in (out / "overlays").iterdir()) == [
        "A__oracle__best.png", "A__oracle__worst.png", "B__oracle__best.png", "B__oracle__worst.png",
    ]
    loaded = json.loads((out / "summary.json").read_text())
    assert loaded["protocol"]["settings"] == ["1,0"] and loaded["datasets"]["A"]["objects"] == 3
    md = summary_markdown(loaded)
    assert "| **ALL:CT** | CT | 12 |" in md and "oracle" in md


def test_build_methods_validates_names(tmp_path):
    assert [m.name for m in build_methods(["grabcut", "flood_fill", "grabcut"])] == ["grabcut", "flood_fill", "grabcut_2"]
    for bad, message in ((["nope"], "unknown method"), ([], "at least one"), (["sam"], "sam-checkpoint"),
                         ([str(tmp_path / "missing.safetensors")], "not found")):
        with pytest.raises(UserError, match=message):
            build_methods(bad)


def test_predictor_method_with_a_tiny_checkpoint(tmp_path):
    pytest.importorskip("synthfm.weights.checkpoint")
    from synthfm.weights.checkpoint import save_checkpoint
    from synthfm.modeling import build_model

    import torch

    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(ckpt, build_model("tiny_cnn", image_size=64))
    write_png_dataset(tmp_path / "D", n_cases=2)
    (method,) = build_methods([str(ckpt)])
    assert method.name == "tiny"
    calls = []
    encode = method.predictor.model.encode
    method.predictor.model.encode = lambda *a, **k: calls.append(1) or encode(*a, **k)
    result = run(tmp_path / "D", [method], settings=((1, 0), (3, 2)))
    assert len(calls) == 2  # one encoder pass per image, for 3 objects x 2 prompts each
    assert len(result.rows) == 2 * 3 * 2
    assert all(0.0 <= r.dice <= 1.0 and r.area > 0 for r in result.rows)
