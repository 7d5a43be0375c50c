"""Faults: training killed at random moments resumes to identical weights; an interrupted
checkpoint write never replaces the last good file.

Complements tests/test_resume.py (which stops at chosen points and kills once): here the kill
points are drawn at random, three per run, and include the middle of checkpoint commits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import synthfm.training.loop as training
from synthfm.weights.checkpoint import load_checkpoint, save_checkpoint
from synthfm.modeling import build_model
from synthfm.training.loop import resume_config, train
from synthfm.training.config import preset_config
from synthfm.training.run_folder import LAST_WEIGHTS, read_checkpoint

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _same_weights(a: Path, b: Path) -> None:
    ta, tb = load_file(str(a)), load_file(str(b))
    assert ta.keys() == tb.keys()
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not different, different[:5]


class Killed(BaseException):
    """Stands for SIGKILL in-process: a BaseException, so no ``except Exception`` swallows it."""


class FaultInjector:
    """Counts 'events' (optimiser steps, renames, fsyncs, torch.save calls) during training and
    raises :class:`Killed` at event number ``kill_at`` (before or after the real call)."""

    def __init__(self, monkeypatch, kill_at: int | None = None, after: bool = False) -> None:
        self.count = 0
        self.kill_at, self.after = kill_at, after
        self.killed_in: str | None = None
        for owner, name in ((training, "optimizer_step"), (os, "replace"), (os, "fsync"), (torch, "save")):
            monkeypatch.setattr(owner, name, self._wrap(getattr(owner, name), name))

    def _wrap(self, real, name):
        def wrapper(*args, **kwargs):
            self.count += 1
            hit = self.count == self.kill_at
            if hit and not self.after:
                self.killed_in = f"before {name}"
                raise Killed(name)
            result = real(*args, **kwargs)
            if hit:
                self.killed_in = f"after {name}"
                raise Killed(name)
            return result

        return wrapper


def _cfg(out: Path):
    return preset_config("tiny", out=str(out), epochs=2, images_per_epoch=4, batch_size=2, prompts_per_image=2,
                         val_images=2, seed=3, workers=0, checkpoint_every=1, log_every=1)


def test_random_in_process_kills_including_mid_commit_resume_identically(tmp_path, monkeypatch):
    ref, run = tmp_path / "ref", tmp_path / "run"
    with monkeypatch.context() as m:
        counter = FaultInjector(m)
        train(_cfg(ref), progress=False)
    total_events = counter.count
    assert total_events > 20  # steps, checkpoint commits, best weights, logs

    rng = np.random.default_rng(2024)
    where = []
    for session in range(3):
        # events restart at 1 in each session; a kill within the first quarter of the run's events
        # always comes before this session could finish, so every session dies somewhere
        with monkeypatch.context() as m:
            injector = FaultInjector(m, kill_at=int(rng.integers(2, total_events // 4)), after=bool(rng.integers(2)))
            with pytest.raises(Killed):
                if session == 0:
                    train(_cfg(run), progress=False)
                else:
                    train(resume_config(run), resume=True, progress=False)
            where.append(injector.killed_in)
    assert len(where) == 3, where
    # a last session runs to the end
    train(resume_config(run), resume=True, progress=False)
    point = read_checkpoint(run)
    assert point.loop.step == 4
    _same_weights(ref / LAST_WEIGHTS, run / LAST_WEIGHTS)
    _same_weights(ref / "best.safetensors", run / "best.safetensors")
    assert not [p.name for p in run.iterdir() if p.name.startswith(".") and p.name != ".last.pending.safetensors"]


def test_interrupted_weights_write_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    torch.manual_seed(0)
    good = build_model("tiny_cnn", image_size=64)
    save_checkpoint(path, good)
    before = path.read_bytes()

    newer = build_model("tiny_cnn", image_size=64)

    class HalfWritten(Exception):
        pass

    real_open = open

    def failing_open(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        if "w" in mode and Path(file).name.startswith(".model."):
            real_write = fh.write

            def write_half(data):
                real_write(data[: len(data) // 2])
                fh.flush()
                raise HalfWritten("disk full")

            fh.write = write_half
        return fh

    import builtins

    monkeypatch.setattr(builtins, "open", failing_open)
    with pytest.raises(HalfWritten):
        save_checkpoint(path, newer)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no half file left
    model, _ = load_checkpoint(path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), good.state_dict().values()))


_WRITER = textwrap.dedent("""
    import sys, torch
    from synthfm.weights.checkpoint import save_checkpoint
    from synthfm.modeling import build_model
    torch.set_num_threads(1)
    models = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        models.append(build_model("tiny_cnn", image_size=64))
    print("ready", flush=True)
    i = 0
    while True:
        save_checkpoint(sys.argv[1], models[i % 2], metadata={"which": i % 2})
        i += 1
""")


def test_sigkill_during_checkpoint_writes_leaves_a_loadable_file(tmp_path):
    """A process rewriting a checkpoint in a loop is SIGKILLed at random moments: the file is
    always one complete version, never a mix or a truncation."""
    path = tmp_path / "ckpt.safetensors"
    rng = np.random.default_rng(7)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for delay in rng.uniform(0.05, 0.6, size=3):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.time() + 60
        while not path.exists() and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(float(delay))
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        model, meta = load_checkpoint(path)
        torch.manual_seed(1 + int(meta["which"]))
        expected = build_model("tiny_cnn", image_size=64).state_dict()
        got = model.state_dict()
        assert all(torch.equal(got[k], expected[k]) for k in expected)


def _cli(out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "train.py"), "--preset", "tiny", "--quiet", "--out", str(out), "--epochs", "2",
            "--images-per-epoch", "12", "--batch-size", "2", "--prompts-per-image", "2", "--val-images", "2",
            "--seed", "11", "--checkpoint-every", "1", "--workers", "0", *extra]


def _last_logged_step(log: Path) -> int:
    try:
        return int(log.read_text().splitlines()[-1].split(",")[0])
    except (OSError, IndexError, ValueError):
        return 0


@pytest.mark.slow
def test_three_random_sigkills_then_resume_is_identical(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    ref, run = tmp_path / "ref", tmp_path / "run"
    subprocess.run(_cli(ref), check=True, env=env, cwd=REPO, timeout=600, capture_output=True)
    rng = np.random.default_rng(99)
    log = run / "log.csv"
    for kill in range(3):
        argv = _cli(run) if kill == 0 else [sys.executable, str(REPO / "train.py"), "--resume", str(run), "--quiet"]
        # 12 steps in all; each session is killed 1-2 steps after its start plus 0-0.3 s, so all
        # three kills land before the run could finish (checkpoint_every=1: ~mid-commit often)
        target = _last_logged_step(log) + int(rng.integers(1, 3))
        proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None and _last_logged_step(log) < target:
            time.sleep(0.01)
        time.sleep(float(rng.uniform(0.0, 0.3)))
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL, f"session {kill} ended before it was killed"
    assert _last_logged_step(log) < 12
    done = subprocess.run([sys.executable, str(REPO / "train.py"), "--resume", str(run), "--quiet"],
                          env=env, cwd=REPO, timeout=600, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    _same_weights(ref / LAST_WEIGHTS, run / LAST_WEIGHTS)
    _same_weights(ref / "best.safetensors", run / "best.safetensors")
