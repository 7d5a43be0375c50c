"""--time-budget: the cosine follows the budget, the run stops validated and checkpointed, resume honours it.

The loop's clock is replaced by one that advances 10 s per optimiser step, so the tests are exact
and fast whatever the machine's speed.
"""

from __future__ import annotations

import csv
import dataclasses

import pytest

from synthfm.errors import UserError
from synthfm.training import loop as loop_module
from synthfm.training.config import preset_config, validate_config
from synthfm.training.loop import lr_at, resume_config, train
from synthfm.weights.checkpoint import read_metadata

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SECONDS_PER_STEP = 10.0


@pytest.fixture
def step_clock(monkeypatch):
    monkeypatch.setattr(loop_module._Loop, "wall", lambda self: SECONDS_PER_STEP * self.state.step)


def _config(out, **kw):
    base = dict(val_images=2, workers=0, batch_size=2, prompts_per_image=1, epochs=4, images_per_epoch=20,
                lr=1e-3, warmup_steps=0, lr_schedule="cosine", log_every=1, checkpoint_every=0, out=str(out))
    base.update(kw)
    return preset_config("tiny", **base)


def test_cosine_follows_whichever_of_steps_and_budget_is_further():
    c = preset_config("tiny", lr=1.0, warmup_steps=10, lr_schedule="cosine")
    assert lr_at(c, 10, 110, time_fraction=0.5) == pytest.approx(0.5)
    assert lr_at(c, 60, 110, time_fraction=0.1) == pytest.approx(0.5)  # the steps are further along
    assert lr_at(c, 10, 110, time_fraction=1.0) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(c, 4, 110, time_fraction=0.9) == pytest.approx(0.5)  # warm-up stays by steps
    assert lr_at(dataclasses.replace(c, lr_schedule="constant"), 50, 110, time_fraction=0.9) == 1.0


def test_bad_budget_is_one_clear_error():
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(UserError, match="--time-budget"):
            validate_config(preset_config("tiny", time_budget=bad))


def test_run_stops_when_the_budget_is_spent_validated_and_checkpointed(tmp_path, step_clock):
    out = tmp_path / "run"
    # 10 steps per epoch, 40 in all; 0.5 min = 30 s = 3 steps of the fake clock
    result = train(_config(out, time_budget=0.5), progress=False)
    assert result.step == 3 and result.total_steps == 40 and result.time_budget_spent
    assert read_metadata(out / "last.safetensors")["step"] == 3
    assert (out / "best.safetensors").is_file()
    val = list(csv.DictReader(open(out / "val.csv")))
    assert [int(r["step"]) for r in val] == [3]  # validated at the stop, mid-epoch
    rows = list(csv.DictReader(open(out / "log.csv")))
    lrs = [float(r["lr"]) for r in rows]
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert lrs[0] == pytest.approx(1e-3) and lrs[0] > lrs[1] > lrs[2]
    assert lrs[2] == pytest.approx(1e-3 * 0.5 * (1 + __import__("math").cos(__import__("math").pi * 2 / 3)))


def test_resume_honours_the_budget_and_a_larger_one_continues(tmp_path, step_clock):
    out = tmp_path / "run"
    train(_config(out, time_budget=0.5), progress=False)
    again = train(resume_config(out), resume=True, progress=False)
    assert again.step == 3 and again.time_budget_spent  # nothing left: no step was run
    more = train(resume_config(out, {"time_budget": 1.0}), resume=True, progress=False)
    assert more.step == 6 and more.time_budget_spent
    assert [int(r["step"]) for r in csv.DictReader(open(out / "val.csv"))] == [3, 6]


def test_budget_is_not_inherited_through_init(tmp_path, step_clock):
    from synthfm.training.config import init_config

    out = tmp_path / "run"
    train(_config(out, time_budget=0.5), progress=False)
    assert init_config(str(out / "best.safetensors")).time_budget is None
