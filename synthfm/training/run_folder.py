"""The run folder: crash-safe checkpoints, resumption and CSV logs.

A run folder ``OUT`` holds::

    config.json          resolved TrainConfig + recipe (written before the first step)
    last.safetensors     latest weights (synthfm.weights.checkpoint format, usable by the predictor)
    last_state.pt        optimiser state, counters, stream positions, RNG states, sha256 of the weights
    best.safetensors     weights with the best mean validation Dice so far
    log.csv, val.csv     training and validation logs

Two files must change together at every checkpoint, and a crash may happen between any two
system calls.  They are committed in two phases: (1) the new weights are written (atomically) to
``.last.pending.safetensors``; (2) the new state, which records the sha256 of those weights, replaces
``last_state.pt`` atomically — this rename is the commit point; (3) the pending weights are renamed
over ``last.safetensors``.  On resume the state's hash is checked against ``last.safetensors`` and,
if a crash happened between (2) and (3), against the pending file, which is then moved into place.
A crash before (2) leaves the previous, consistent pair.  The state file holds only tensors and
plain Python types and is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from synthfm.io.atomic import atomic_output, atomic_write_bytes
from synthfm.errors import CheckpointError, UserError

CONFIG_FILE = "config.json"
LAST_WEIGHTS = "last.safetensors"
LAST_STATE = "last_state.pt"
PENDING_WEIGHTS = ".last.pending.safetensors"
BEST_WEIGHTS = "best.safetensors"
TRAIN_LOG = "log.csv"
VAL_LOG = "val.csv"
RUN_FILES = (CONFIG_FILE, LAST_WEIGHTS, LAST_STATE, PENDING_WEIGHTS, BEST_WEIGHTS, TRAIN_LOG, VAL_LOG)
STATE_FORMAT = 1

TRAIN_LOG_COLUMNS = ("step", "epoch", "images_seen", "loss", "lr", "img_s", "wall_s")


@dataclass
class LoopState:
    """Counters of the training loop (all that is needed to continue it, besides the tensors).

    step: optimiser steps done.  epochs_done: completed epochs.  images_seen: images used for
    training, all processes together.  next_index: per process (rank), the stream index of the
    first sample not yet consumed.  best_score / best_step: best mean validation Dice (None before
    the first validation).  wall_s: training wall time accumulated over all sessions.
    """

    step: int = 0
    epochs_done: int = 0
    images_seen: int = 0
    next_index: list[int] = field(default_factory=lambda: [0])
    best_score: float | None = None
    best_step: int | None = None
    wall_s: float = 0.0


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state() -> dict[str, Any]:
    """torch's global CPU (and CUDA) RNG states; training draws nothing from numpy's global RNG."""
    state: dict[str, Any] = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch_cpu"])
    if "torch_cuda" in state and torch.cuda.is_available():
        cuda_states = state["torch_cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def write_checkpoint(
    out: Path,
    write_weights: Callable[[Path], None],
    optimizer: torch.optim.Optimizer,
    loop: LoopState,
) -> None:
    """Commit weights + state to ``out`` crash-safely (see module docstring).

    write_weights(path) must write the weights file at ``path`` (e.g. ``save_checkpoint``).
    """
    pending = out / PENDING_WEIGHTS
    write_weights(pending)
    _fsync_file(pending)
    state = {
        "format": STATE_FORMAT,
        "weights_sha256": sha256_file(pending),
        "loop": json.dumps(asdict(loop)),
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(),
    }
    with atomic_output(out / LAST_STATE) as tmp:
        torch.save(state, tmp)
        _fsync_file(tmp)
    os.replace(pending, out / LAST_WEIGHTS)
    _fsync_dir(out)


@dataclass
class ResumePoint:
    """A verified checkpoint: the weights file, the optimiser state dict, counters and RNG states."""

    weights: Path
    optimizer: dict[str, Any]
    loop: LoopState
    rng: dict[str, Any]


def read_checkpoint(out: Path) -> ResumePoint | None:
    """The committed checkpoint of run folder ``out``, or None if it has none yet.

    Verifies the weights against the hash the state recorded (completing an interrupted commit
    when the pending file is the matching one); raises CheckpointError when nothing matches.
    """
    state_path = out / LAST_STATE
    if not state_path.is_file():
        return None
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file; torch raises several types
        raise CheckpointError(f"cannot read training state {state_path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{state_path} is not a synthfm training state (format {STATE_FORMAT})")
    loop = _loop_state(state, state_path)
    expected = state["weights_sha256"]
    weights, pending = out / LAST_WEIGHTS, out / PENDING_WEIGHTS
    if not (weights.is_file() and sha256_file(weights) == expected):
        if pending.is_file() and sha256_file(pending) == expected:
            os.replace(pending, weights)
            _fsync_dir(out)
        else:
            raise CheckpointError(
                f"{weights} does not match the weights recorded in {state_path} (sha256 {expected[:12]}...); "
                "the run folder was modified"
            )
    return ResumePoint(weights=weights, optimizer=state["optimizer"], loop=loop, rng=state["rng"])


def _loop_state(state: dict, where: Path) -> LoopState:
    """The counters of a state file, checked field by field (a crafted file gets one line, not a traceback)."""
    bad = CheckpointError(f"{where} is damaged or not written by synthfm (malformed fields)")
    if not (isinstance(state.get("weights_sha256"), str) and isinstance(state.get("loop"), str)
            and isinstance(state.get("optimizer"), dict) and isinstance(state.get("rng"), dict)
            and isinstance(state["rng"].get("torch_cpu"), torch.Tensor)
            and state["rng"]["torch_cpu"].dtype == torch.uint8):
        raise bad
    try:
        fields = json.loads(state["loop"])
        loop = LoopState(**fields)
    except (ValueError, TypeError):
        raise bad from None
    ints = [loop.step, loop.epochs_done, loop.images_seen, *loop.next_index]
    if not (isinstance(loop.next_index, list) and loop.next_index
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**62 for v in ints)
            and isinstance(loop.wall_s, (int, float)) and (loop.best_score is None or isinstance(loop.best_score, (int, float)))
            and (loop.best_step is None or isinstance(loop.best_step, int))):
        raise bad
    return loop


def prepare_run_folder(out: Path, resume: bool, overwrite: bool, guard=None) -> None:
    """Check (and create) the run folder before any work is done; lock it when ``guard`` is given.

    A fresh run needs ``out`` to be absent or empty; ``overwrite`` moves a previous run's files
    aside (``guard``: :class:`synthfm.training.run_guard.RunGuard`, which drops them only once the
    new run commits its first checkpoint, and restores them if it fails before); ``resume`` needs
    ``out`` to hold a run (its config.json).  Raises UserError with one line otherwise.
    """
    from synthfm.training.run_guard import PREVIOUS_RUN

    if resume and overwrite:
        raise UserError("--resume and --overwrite exclude each other")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out is a file, not a folder: {out}")
    if resume:
        if not (out / CONFIG_FILE).is_file():
            raise UserError(f"nothing to resume: {out} holds no training run ({CONFIG_FILE} missing)")
        if guard is not None:
            guard.resume = True
            guard.lock()
        return
    set_aside = out.is_dir() and (out / PREVIOUS_RUN).is_dir()
    if out.is_dir() and any(out.iterdir()):
        is_run = (out / CONFIG_FILE).is_file() or set_aside
        if not overwrite:
            what = "holds a training run" if is_run else "exists and is not empty"
            if set_aside:
                what += f" (and {PREVIOUS_RUN}/, a run set aside by an interrupted --overwrite)"
            hint = f"pass --resume {out} to continue it or " if (out / CONFIG_FILE).is_file() else "pass "
            raise UserError(f"output folder {out} {what}; {hint}--overwrite to start over")
        if not is_run:
            raise UserError(f"--overwrite refuses to clear {out}: it is not a training run folder")
        others = sorted(e.name for e in out.iterdir() if e.name not in RUN_FILES + ("tb", PREVIOUS_RUN))
        if others:
            raise UserError(f"--overwrite refuses to clear {out}: it holds files a run does not write ({', '.join(others[:3])})")
    parent = out.parent if str(out.parent) else Path(".")
    created = False
    if not out.exists():
        if not parent.exists():
            raise UserError(f"output folder's parent does not exist: {parent}")
        try:
            out.mkdir()
        except FileExistsError:
            raise UserError(f"{out} was created by another process meanwhile; choose another --out") from None
        created = True
    if not os.access(out, os.W_OK):
        raise UserError(f"output folder is not writable: {out}")
    if guard is not None:
        guard.created = created
        guard.lock()
        if overwrite and any(out.iterdir()):
            guard.move_aside()
        elif any(out.iterdir()):  # another run started here between the check and the lock
            guard.release()
            raise UserError(f"output folder {out} was filled by another process meanwhile; choose another --out")


def write_run_config(out: Path, payload: dict[str, Any]) -> None:
    atomic_write_bytes(out / CONFIG_FILE, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())


def read_run_config(out: Path) -> dict[str, Any]:
    path = out / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"nothing to resume: {out} holds no training run ({CONFIG_FILE} missing)")
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read run config {path}: {exc}") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("config"), dict):
        raise UserError(f"{path} is not a synthfm run config (no 'config' section)")
    return payload


class CsvLog:
    """Append-only CSV log with a fixed header; each row is flushed as it is written."""

    def __init__(self, path: Path, columns: Sequence[str]):
        self.path = path
        self.columns = tuple(columns)
        new = not path.exists() or path.stat().st_size == 0
        self._fh = open(path, "a", newline="")
        self._writer = csv.writer(self._fh)
        if new:
            self._writer.writerow(self.columns)
            self._fh.flush()

    def write(self, row: dict[str, Any]) -> None:
        self._writer.writerow([_fmt(row[c]) for c in self.columns])
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def truncate_log(path: Path, keep: Callable[[dict[str, str]], bool]) -> None:
    """Atomically rewrite a CSV log keeping only the rows for which ``keep(row)`` is true.

    Used on resume: rows logged after the checkpoint belong to steps that are run again.
    """
    if not path.is_file():
        return
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        rows = [r for r in reader if keep(r)]
    with atomic_output(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
