"""Fine-tuning on labelled folders: data path, run + exact resume, metadata, bad folders."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from resume_check import assert_stop_resume_exact
from synthfm.cli.support import run_click
from synthfm.cli.train import train_command
from synthfm.errors import UserError
from synthfm.training.config import init_config, preset_config
from synthfm.training.finetune_data import (
    FinetuneStream,
    build_real_validation_set,
    load_finetune_data,
    split_cases,
)
from synthfm.weights.checkpoint import read_metadata

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_png_dataset(root: Path, n_cases: int = 5, size=(32, 40), split: str = "Tr", empty_labels: bool = False) -> Path:
    """A 2D dataset: grey noise with one bright disc (label 1) per case; cases c0..c{n-1}."""
    (root / f"images{split}").mkdir(parents=True)
    (root / f"labels{split}").mkdir(parents=True)
    rng = np.random.default_rng(0)
    h, w = size
    for i in range(n_cases):
        img = rng.normal(70, 8, size).clip(0, 255).astype(np.uint8)
        lab = np.zeros(size, np.uint8)
        yy, xx = np.mgrid[:h, :w]
        disc = (yy - h // 2 - i % 3) ** 2 + (xx - w // 2 + i % 4) ** 2 < 49
        img[disc] = 190
        if not empty_labels:
            lab[disc] = 1
        cv2.imwrite(str(root / f"images{split}" / f"c{i}_0000.png"), img)
        cv2.imwrite(str(root / f"labels{split}" / f"c{i}.png"), lab)
    (root / "dataset.json").write_text(json.dumps({"name": root.name, "labels": {"background": 0, "disc": 1},
                                                   "file_ending": ".png", "modality": "CT"}))
    return root


def make_nifti_dataset(root: Path) -> Path:
    import SimpleITK as sitk

    (root / "imagesTs").mkdir(parents=True)
    (root / "labelsTs").mkdir(parents=True)
    for i in range(2):
        vol = np.full((6, 40, 40), -100, np.int16)
        lab = np.zeros((6, 40, 40), np.uint8)
        vol[1:5, 10:26, 12:30] = 60
        lab[1:5, 10:26, 12:30] = 1
        for arr, path in ((vol, root / "imagesTs" / f"v{i}_0000.nii.gz"), (lab, root / "labelsTs" / f"v{i}.nii.gz")):
            img = sitk.GetImageFromArray(arr)
            img.SetSpacing((1.0, 1.0, 3.0))
            sitk.WriteImage(img, str(path))
    (root / "dataset.json").write_text(json.dumps({"name": "TinyVol", "labels": {"background": 0, "box": 1},
                                                   "file_ending": ".nii.gz", "modality": "CT"}))
    return root


def _cfg(out: Path, data: Path, **kw):
    base = dict(out=str(out), epochs=2, images_per_epoch=6, batch_size=2, prompts_per_image=2, val_images=2,
                seed=3, workers=0, checkpoint_every=0, log_every=1, finetune=(str(data),), mask_fraction=0.3,
                zoom_fraction=0.3, box_fraction=0.2)
    base.update(kw)
    return preset_config("tiny", **base)


def test_split_holds_out_whole_cases_deterministically():
    ids = [f"c{i}" for i in range(10)]
    train, val = split_cases(ids, 0.2)
    assert len(val) == 2 and set(train) | set(val) == set(ids) and not set(train) & set(val)
    assert split_cases(list(reversed(ids)), 0.2) == (train, val)
    assert split_cases(["a"], 0.5) == (["a"], [])  # one case: nothing held out
    assert len(split_cases(["a", "b"], 0.01)[1]) == 1  # two or more: at least one held out


def test_png_and_nifti_folders_become_samples_of_their_objects(tmp_path):
    png = make_png_dataset(tmp_path / "Png", n_cases=4)
    vol = make_nifti_dataset(tmp_path / "Vol")
    data = load_finetune_data([str(png), str(vol)], gen_size=64, val_fraction=0.25)
    names = {d["name"]: d for d in data.datasets}
    assert names["Png"]["cases"] == 4 and len(names["Png"]["val_cases"]) == 1
    assert names["TinyVol"]["cases"] == 2 and len(names["TinyVol"]["val_cases"]) == 1
    vol_slices = [s for s in data.train if s.dataset == "TinyVol"]
    assert len(vol_slices) == 4  # the 4 labelled slices of the training volume
    for sl in data.train:
        assert sl.image.shape == (64, 64) and sl.labels.shape == (64, 64) and sl.objects == 1
        assert 0.0 <= sl.image.min() and sl.image.max() <= 1.0
        assert (sl.labels == 1).sum() > 16
    # a 32 x 40 PNG is resized on its longer side and padded at the bottom: the last rows are padding
    png_slice = next(s for s in data.train if s.dataset == "Png")
    assert not png_slice.labels[52:].any()
    vset = build_real_validation_set(data.val, image_size=64, seed=0)
    assert len(vset) == 1 + 4  # one held-out PNG object, four held-out volume slices
    assert set(vset.clicks) == {(1, 0), (3, 0), (1, 2), (3, 2)}


def test_stream_is_a_pure_function_of_index_and_mixes_synthetic(tmp_path):
    from synthfm.synth.recipe import default_recipe

    data = load_finetune_data([str(make_png_dataset(tmp_path / "Png"))], gen_size=64, val_fraction=0.2)
    stream = FinetuneStream(data.train, 0.5, default_recipe(), seed=1, size=64)
    kinds = [stream.sample_at_index(i).module for i in range(40)]
    assert "real" in kinds and {"shape", "boundary"} & set(kinds)
    a, b = stream.sample_at_index(7), stream.sample_at_index(7)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    real_only = FinetuneStream(data.train, 0.0, default_recipe(), seed=1, size=64)
    assert all(real_only.sample_at_index(i).module == "real" for i in range(10))


def test_finetune_run_records_its_data_and_resumes_exactly(tmp_path):
    data = make_png_dataset(tmp_path / "Png")
    run = assert_stop_resume_exact(lambda out: _cfg(out, data), tmp_path, stop_after_steps=3)
    meta = read_metadata(run / "best.safetensors")
    assert meta["train_config"]["finetune"] == [str(data)]
    (summary,) = meta["finetune_datasets"]
    assert summary["name"] == "Png" and summary["cases"] == 5 and summary["val_cases"] == ["c2"]
    assert meta["validation"] == "finetune_held_out_cases"
    rows = (run / "val.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("step,epoch")  # one validation per epoch, on the held-out case


def test_synthetic_runs_and_the_shipped_default_stay_synthetic_only(tmp_path):
    from synthfm.weights import DEFAULT_MODEL_PATH

    meta = read_metadata(DEFAULT_MODEL_PATH)
    assert not meta["train_config"].get("finetune") and not meta.get("finetune_datasets")
    cfg = preset_config("tiny", out=str(tmp_path / "syn"), epochs=1, images_per_epoch=2, batch_size=2, val_images=0,
                        workers=0)
    from synthfm.training.loop import train

    train(cfg, progress=False)
    meta = read_metadata(tmp_path / "syn" / "last.safetensors")
    assert meta["finetune_datasets"] == [] and meta["train_config"]["finetune"] == [] and meta["validation"] == "synthetic"


def test_init_default_takes_the_checkpoints_settings_with_a_short_schedule(tmp_path):
    cfg = init_config("default", out=str(tmp_path / "r"), finetune=("x",))
    assert cfg.encoder == "click_unet" and cfg.size == 128 and cfg.gen_size == 256
    assert cfg.init == "default" and cfg.lr == 3e-4 and cfg.epochs * cfg.images_per_epoch == 2400
    assert cfg.finetune == ("x",) and cfg.out == str(tmp_path / "r")


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("train.py: error: ") and "Traceback" not in err
    return lines[0]


def _bad_run(capsys, tmp_path, folder: Path) -> str:
    out = tmp_path / "run"
    code = run_click(train_command, ["--preset", "tiny", "--quiet", "--workers", "0", "--finetune", str(folder),
                                     "--out", str(out)], prog_name="train.py")
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    return _one_error_line(err)


def test_bad_folders_are_refused_with_one_line_before_anything_is_written(tmp_path, capsys):
    plain = tmp_path / "plain"
    plain.mkdir()
    assert "no dataset.json" in _bad_run(capsys, tmp_path, plain)
    assert "not a folder" in _bad_run(capsys, tmp_path, tmp_path / "missing")
    mismatch = make_png_dataset(tmp_path / "Mismatch")
    cv2.imwrite(str(mismatch / "labelsTr" / "c1.png"), np.zeros((20, 20), np.uint8))
    line = _bad_run(capsys, tmp_path, mismatch)
    assert "case c1" in line and "size" in line
    empty = make_png_dataset(tmp_path / "Empty", empty_labels=True)
    assert "no usable object" in _bad_run(capsys, tmp_path, empty)
    no_images = tmp_path / "NoImages"
    no_images.mkdir()
    (no_images / "dataset.json").write_text((empty / "dataset.json").read_text())
    assert "missing folder" in _bad_run(capsys, tmp_path, no_images)


def test_fraction_options_need_finetune(tmp_path, capsys):
    code = run_click(train_command, ["--preset", "tiny", "--quiet", "--synth-fraction", "0.5", "--out",
                                     str(tmp_path / "r")], prog_name="train.py")
    assert code == 2 and "--finetune" in _one_error_line(capsys.readouterr().err)
    with pytest.raises(UserError, match="synth-fraction"):
        from synthfm.training.config import validate_config

        validate_config(preset_config("tiny", finetune=("x",), finetune_synth_fraction=1.0))


def test_init_is_recorded_and_a_changed_folder_refuses_resume(tmp_path, tiny_checkpoint):
    import hashlib

    from synthfm.training.loop import resume_config, train

    data = make_png_dataset(tmp_path / "Png")
    out = tmp_path / "run"
    train(_cfg(out, data, init=str(tiny_checkpoint)), stop_after_steps=2, progress=False)
    meta = read_metadata(out / "last.safetensors")
    assert meta["init"]["sha256"] == hashlib.sha256(Path(tiny_checkpoint).read_bytes()).hexdigest()
    assert meta["init"]["finetune_datasets"] == []
    cv2.imwrite(str(data / "imagesTr" / "c9_0000.png"), np.full((32, 40), 200, np.uint8))
    cv2.imwrite(str(data / "labelsTr" / "c9.png"), np.ones((32, 40), np.uint8))
    with pytest.raises(UserError, match="changed since the run started"):
        train(resume_config(out), resume=True, progress=False)
