"""Shared check: a run stopped after some steps and resumed ends with the uninterrupted run's weights."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file

from synthfm.training.loop import resume_config, train


def assert_stop_resume_exact(make_config: Callable[[Path], object], tmp_path: Path, stop_after_steps: int) -> Path:
    """Train ``make_config(a)`` straight through and ``make_config(b)`` stopped at ``stop_after_steps``
    then resumed; assert identical ``last.safetensors``.  Returns the uninterrupted run's folder."""
    a, b = tmp_path / "a", tmp_path / "b"
    train(make_config(a), progress=False)
    train(make_config(b), stop_after_steps=stop_after_steps, progress=False)
    train(resume_config(b), resume=True, progress=False)
    wa, wb = load_file(str(a / "last.safetensors")), load_file(str(b / "last.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    return a
