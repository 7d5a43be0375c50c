"""A non-finite loss or gradient skips the step (weights and Adam state untouched); a run of them stops the run."""

from __future__ import annotations

import math

import pytest
import torch

from synthfm.errors import UserError
from synthfm.training import loop as loop_module
from synthfm.training import step as step_module
from synthfm.training.config import preset_config
from synthfm.training.loop import train
from synthfm.weights.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(out, **kw):
    base = dict(val_images=0, workers=0, batch_size=2, prompts_per_image=1, epochs=1, images_per_epoch=12,
                lr=1e-3, warmup_steps=0, log_every=1, checkpoint_every=0, out=str(out))
    base.update(kw)
    return preset_config("tiny", **base)


def _poison(monkeypatch, bad_calls):
    """Make compute_loss return NaN (with a NaN gradient) on the given 0-based calls."""
    real = step_module.compute_loss
    calls = {"n": 0}

    def compute_loss(*args, **kwargs):
        total, mask = real(*args, **kwargs)
        n = calls["n"]
        calls["n"] += 1
        if n in bad_calls:
            total = total * math.nan
        return total, mask

    monkeypatch.setattr(step_module, "compute_loss", compute_loss)


def test_a_nan_step_leaves_the_weights_and_optimizer_untouched():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    x = torch.randn(4, 3)
    model(x).sum().backward()
    opt.step()
    before = [p.detach().clone() for p in model.parameters()]
    state_before = {k: v.clone() for k, v in opt.state[model.weight].items()}
    model.zero_grad()
    (model(x).sum() * math.inf).backward()
    assert not step_module.gradients_are_finite(torch.tensor(1.0), list(model.parameters()))
    model.zero_grad()
    model(x).sum().backward()
    assert step_module.gradients_are_finite(torch.tensor(1.0), list(model.parameters()))
    assert not step_module.gradients_are_finite(torch.tensor(math.nan), list(model.parameters()))
    assert step_module.gradients_are_finite(None, list(model.parameters()))
    for a, b in zip(before, model.parameters()):
        assert torch.equal(a, b)
    for k, v in opt.state[model.weight].items():
        assert torch.equal(v, state_before[k])


def test_run_skips_nan_steps_and_writes_finite_weights(tmp_path, monkeypatch, capsys):
    _poison(monkeypatch, bad_calls={2, 3})
    out = tmp_path / "run"
    result = train(_config(out), progress=False)
    assert result.step == 6
    model, _ = load_checkpoint(out / "last.safetensors")
    assert all(torch.isfinite(p).all() for p in model.state_dict().values())
    rows = (out / "log.csv").read_text().splitlines()[1:]
    losses = [float(r.split(",")[3]) for r in rows]
    assert [math.isnan(v) for v in losses] == [False, False, True, True, False, False]
    assert "skipped" in capsys.readouterr().err


def test_run_that_diverges_stops_with_one_clear_error(tmp_path, monkeypatch):
    _poison(monkeypatch, bad_calls=set(range(1, 10_000)))
    out = tmp_path / "run"
    cfg = _config(out, images_per_epoch=2 * (loop_module.MAX_SKIPPED_IN_A_ROW + 5), checkpoint_every=1)
    with pytest.raises(UserError, match="training diverged"):
        train(cfg, progress=False)
    model, meta = load_checkpoint(out / "last.safetensors")
    assert all(torch.isfinite(p).all() for p in model.state_dict().values())
