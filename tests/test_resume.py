"""Checkpoint/resume: a run stopped anywhere and resumed ends with identical weights."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from synthfm.errors import CheckpointError
from synthfm.training.loop import build_training_model, resume_config, train
from synthfm.training.config import preset_config
from synthfm.training.run_folder import (
    LAST_STATE,
    LAST_WEIGHTS,
    PENDING_WEIGHTS,
    LoopState,
    read_checkpoint,
    sha256_file,
    write_checkpoint,
)

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cfg(out: Path, **kw):
    base = dict(out=str(out), epochs=2, images_per_epoch=6, batch_size=2, prompts_per_image=2, val_images=2,
                seed=5, workers=0, checkpoint_every=0, log_every=1)
    base.update(kw)
    return preset_config("tiny", **base)


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def _assert_same_weights(a: Path, b: Path) -> None:
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys()
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not different, different[:5]


def _rows(path: Path, drop=("img_s", "wall_s")) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(open(path))]


def test_stop_and_resume_gives_identical_weights(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    full = train(_cfg(a), progress=False)
    assert full.step == 6 and full.epochs_done == 2

    first = train(_cfg(b), stop_after_steps=2, progress=False)  # mid epoch 1
    assert first.step == 2 and (b / LAST_STATE).is_file()
    # resumed with different workers / log interval: neither changes the weights
    second = train(resume_config(b, {"workers": 2, "log_every": 2}), resume=True, stop_after_steps=4, progress=False)
    assert second.step == 4 and second.epochs_done == 1  # crossed the first epoch end (validation, best)
    third = train(resume_config(b), resume=True, progress=False)
    assert third.step == 6 and third.images_seen == full.images_seen

    _assert_same_weights(a / LAST_WEIGHTS, b / LAST_WEIGHTS)
    _assert_same_weights(a / "best.safetensors", b / "best.safetensors")
    assert _rows(a / "val.csv") == _rows(b / "val.csv")
    # log rows: one per step in both runs (session 2 logged every 2 steps, plus the epoch end)
    by_step_a = {r["step"]: r for r in _rows(a / "log.csv")}
    rows_b = _rows(b / "log.csv")
    assert [r["step"] for r in rows_b] == ["1", "2", "3", "4", "5", "6"]
    assert all(by_step_a[r["step"]] == r for r in rows_b)  # identical losses, lr, counters
    # a finished run resumed does nothing more; resumed with more epochs it continues
    again = train(resume_config(b), resume=True, progress=False)
    assert again.step == 6
    more = train(resume_config(b, {"epochs": 3}), resume=True, progress=False)
    assert more.step == 9 and more.epochs_done == 3


def _small_model_and_optimizer():
    cfg = preset_config("tiny")
    model = build_training_model(cfg)
    opt = torch.optim.Adam(model.trainable_parameters(), lr=1e-3)
    return model, opt


def _nudge(model, value: float) -> None:
    with torch.no_grad():
        model.mask_decoder.iou_token.weight.fill_(value)


def _writer(model):
    from synthfm.weights.checkpoint import save_checkpoint

    return lambda path: save_checkpoint(path, model, metadata={"note": "test"})


def test_crash_between_the_two_writes_never_pairs_mismatched_files(tmp_path, monkeypatch):
    import synthfm.training.run_folder as ts

    model, opt = _small_model_and_optimizer()
    _nudge(model, 1.0)
    write_checkpoint(tmp_path, _writer(model), opt, LoopState(step=1))
    step1 = sha256_file(tmp_path / LAST_WEIGHTS)

    # crash after the new weights are written but before the state commit: the old pair survives
    _nudge(model, 2.0)

    def crash_in_save(obj, path):
        raise OSError("disk full")

    monkeypatch.setattr(ts.torch, "save", crash_in_save)
    with pytest.raises(OSError):
        write_checkpoint(tmp_path, _writer(model), opt, LoopState(step=2))
    monkeypatch.undo()
    point = read_checkpoint(tmp_path)
    assert point.loop.step == 1 and sha256_file(point.weights) == step1

    # crash after the state commit, before the weights rename: resume completes the commit
    real_replace = os.replace

    def crash_on_weights(src, dst):
        if Path(dst).name == LAST_WEIGHTS:
            raise OSError("killed")
        return real_replace(src, dst)

    monkeypatch.setattr(ts.os, "replace", crash_on_weights)
    with pytest.raises(OSError):
        write_checkpoint(tmp_path, _writer(model), opt, LoopState(step=2))
    monkeypatch.undo()
    assert (tmp_path / PENDING_WEIGHTS).is_file() and sha256_file(tmp_path / LAST_WEIGHTS) == step1
    point = read_checkpoint(tmp_path)
    assert point.loop.step == 2 and not (tmp_path / PENDING_WEIGHTS).exists()
    w = _tensors(point.weights)["mask_decoder.iou_token.weight"]
    assert torch.all(w == 2.0)

    # weights changed behind the run's back: refused with a clear error
    (tmp_path / LAST_WEIGHTS).write_bytes(b"not the weights")
    with pytest.raises(CheckpointError, match="does not match"):
        read_checkpoint(tmp_path)


def test_state_file_loads_with_weights_only(tmp_path):
    model, opt = _small_model_and_optimizer()
    loss = sum(p.sum() for p in model.trainable_parameters())
    loss.backward()
    opt.step()
    write_checkpoint(tmp_path, _writer(model), opt, LoopState(step=3, next_index=[17]))
    state = torch.load(tmp_path / LAST_STATE, weights_only=True)
    assert state["weights_sha256"] == sha256_file(tmp_path / LAST_WEIGHTS)
    point = read_checkpoint(tmp_path)
    assert point.loop.next_index == [17]
    fresh = torch.optim.Adam(model.trainable_parameters(), lr=1e-3)
    fresh.load_state_dict(point.optimizer)
    s0, s1 = opt.state_dict()["state"], fresh.state_dict()["state"]
    assert all(torch.equal(s0[k]["exp_avg"], s1[k]["exp_avg"]) for k in s0)


def _cli(out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "train.py"), "--preset", "tiny", "--quiet", "--out", str(out), "--epochs", "2",
            "--images-per-epoch", "12", "--batch-size", "2", "--prompts-per-image", "2", "--val-images", "2",
            "--seed", "9", "--checkpoint-every", "1", "--workers", "1", *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_is_identical(tmp_path):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    subprocess.run(_cli(ref), check=True, env=_env(), cwd=REPO, timeout=600, capture_output=True)
    proc = subprocess.Popen(_cli(killed), env=_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    log = killed / "log.csv"
    while time.time() < deadline:
        if log.is_file() and len(log.read_text().splitlines()) >= 4:  # header + 3 steps
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    done = subprocess.run([sys.executable, str(REPO / "train.py"), "--resume", str(killed), "--quiet"],
                          env=_env(), cwd=REPO, timeout=600, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    _assert_same_weights(ref / LAST_WEIGHTS, killed / LAST_WEIGHTS)
    _assert_same_weights(ref / "best.safetensors", killed / "best.safetensors")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, config) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        train(config, progress=False)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _seed_without_skips(n_images: int) -> int:
    from synthfm.synth.generator import sample_at
    from synthfm.synth.recipe import load_recipe

    recipe = load_recipe("synthfm")
    for seed in range(50):
        if all(sample_at(recipe, seed, i, 64).valid_targets for i in range(n_images)):
            return seed
    pytest.fail("no seed without skipped images")


@pytest.mark.slow
def test_two_process_gloo_run_matches_one_process_with_double_batch(tmp_path):
    seed = _seed_without_skips(8)
    one = _cfg(tmp_path / "one", epochs=1, images_per_epoch=8, batch_size=2, val_images=0, seed=seed)
    two = _cfg(tmp_path / "two", epochs=1, images_per_epoch=8, batch_size=1, val_images=0, seed=seed)
    train(one, progress=False)
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), two), nprocs=2, join=True)
    point = read_checkpoint(tmp_path / "two")
    assert point.loop.step == 4 and point.loop.images_seen == 8
    assert point.loop.next_index == [7, 8]  # rank 0 consumed 0,2,4,6; rank 1 consumed 1,3,5,7
    ta, tb = _tensors(tmp_path / "one" / LAST_WEIGHTS), _tensors(tmp_path / "two" / LAST_WEIGHTS)
    diffs = torch.cat([(ta[k] - tb[k]).abs().flatten() for k in ta])
    init = build_training_model(one).state_dict()
    moved = torch.cat([(ta[k] - init[k]).abs().flatten() for k in ta])
    # the same 8 images and prompts, averaged in another order: equal up to float rounding
    # (Adam turns rounding noise on near-zero gradients into lr-sized steps, hence a quantile)
    assert float(torch.quantile(diffs[:1_000_000], 0.99)) < 1e-5
    assert float(moved.max()) > 1e-3
    # resuming with another number of processes is refused
    from synthfm.errors import UserError

    with pytest.raises(UserError, match="process"):
        train(resume_config(tmp_path / "two", {"epochs": 2}), resume=True, progress=False)


@pytest.mark.slow
def test_frozen_vit_from_sam_file_resumes_identically(tmp_path):
    from synthfm.weights.checkpoint import read_metadata
    from synthfm.modeling import build_model

    # a SAM-format file (official key names) holding random weights: no real SAM weights here
    torch.manual_seed(0)
    sam = build_model("vit_b", image_size=1024)
    sam_file = tmp_path / "sam_random_vit_b.pth"
    torch.save(sam.state_dict(), sam_file)
    del sam
    common = dict(encoder="vit_b", sam_checkpoint=str(sam_file), size=64, epochs=1, images_per_epoch=6,
                  prompts_per_image=2, val_images=2)
    a, b = tmp_path / "a", tmp_path / "b"
    train(_cfg(a, **common), progress=False)
    train(_cfg(b, **common), stop_after_steps=1, progress=False)
    train(resume_config(b), resume=True, progress=False)
    meta = read_metadata(b / LAST_WEIGHTS)
    assert meta["encoder_weights"] == "external" and meta["encoder_frozen"] is True
    assert not any(k.startswith("image_encoder.") for k in _tensors(b / LAST_WEIGHTS))
    _assert_same_weights(a / LAST_WEIGHTS, b / LAST_WEIGHTS)
