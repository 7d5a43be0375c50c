"""Collapsed runs are recognised (prompts ignored, all foreground/background); a finished run is not resumed."""

import time

import numpy as np
import pytest
import torch
from torch import nn

from synthfm.cli.support import run_click
from synthfm.cli.train import train_command
from synthfm.synth.recipe import default_recipe
from synthfm.training.collapse import check_run, collapse_warnings, prediction_stats
from synthfm.training.validation import build_validation_set

S = 64


@pytest.fixture(scope="module")
def vset():
    return build_validation_set(default_recipe(), seed=5, n_images=4, image_size=S)


class _Fake(nn.Module):
    """encode/decode like SynthFM; ``mode`` = constant +/- logits, or a disc around the clicks."""

    image_size = S

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def encode(self, images):
        return images

    def decode(self, emb, point_coords, point_labels):
        b, low = emb.shape[0], S // 4
        if self.mode in ("foreground", "background"):
            value = 10.0 if self.mode == "foreground" else -10.0
            return torch.full((b, 1, low, low), value), torch.zeros(b, 1)
        yy, xx = torch.meshgrid(torch.arange(low) * 4.0, torch.arange(low) * 4.0, indexing="ij")
        logits = torch.full((b, 1, low, low), -10.0)
        for i in range(b):
            for (x, y), lab in zip(point_coords[i].tolist(), point_labels[i].tolist()):
                if lab == 1:  # every positive click adds a disc: more clicks, a different mask
                    logits[i, 0][(xx - x) ** 2 + (yy - y) ** 2 < 36] = 10.0
        return logits, torch.zeros(b, 1)


@pytest.mark.parametrize("mode, expected", [("foreground", ["ignores its prompts", "everything"]),
                                            ("background", ["ignores its prompts", "nothing"])])
def test_constant_models_are_flagged(vset, mode, expected):
    stats = prediction_stats(_Fake(mode), vset)
    assert stats.prompt_change == 0.0
    warnings = collapse_warnings(stats)
    assert len(warnings) == len(expected)
    for line, needle in zip(warnings, expected):
        assert needle in line
    assert "identical for every setting" in warnings[0]


def test_a_model_that_follows_its_clicks_is_not_flagged(vset):
    stats = prediction_stats(_Fake("clicks"), vset)
    assert stats.prompt_change > 1e-3 and 1e-3 < stats.foreground < 0.9
    assert collapse_warnings(stats) == []
    assert collapse_warnings(None) == []


def _train(capsys, args):
    code = run_click(train_command, args, prog_name="train.py")
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_finished_run_warns_if_collapsed_and_is_not_resumed(capsys, tmp_path, one_torch_thread):
    out = tmp_path / "run"
    code, stdout, err = _train(capsys, ["--preset", "tiny", "--quiet", "--out", str(out), "--epochs", "1",
                                        "--images-per-epoch", "8", "--val-images", "4", "--seed", "3",
                                        "--stop-after-steps", "1"])
    assert code == 0 and "1/2 steps" in stdout and "collapsed" not in err, err  # not checked before the end
    code, stdout, _ = _train(capsys, ["--resume", str(out), "--quiet", "--stop-after-steps", "1"])
    assert code == 0 and "already reached --stop-after-steps 1" in stdout
    code, stdout, err = _train(capsys, ["--resume", str(out), "--quiet"])
    assert code == 0 and "2/2 steps" in stdout, err
    from synthfm.training.loop import resume_config

    warnings = check_run(out, resume_config(out))  # the verdict is a property of the weights
    assert ("this run has collapsed" in err) == bool(warnings), err
    start = time.perf_counter()
    code, stdout, err = _train(capsys, ["--resume", str(out), "--quiet"])
    assert code == 0, err
    assert "nothing left to resume" in stdout and "all 2 steps (1 epochs) are done" in stdout
    assert time.perf_counter() - start < 5.0  # no model, data or validation set is built
