"""One training session's hold on its run folder: an exclusive lock, and ``--overwrite`` without loss.

* Lock: the run folder itself is ``flock``-ed (no lock file is added), so a second ``train.py``
  on the same ``--out`` (fresh, ``--overwrite`` or ``--resume``) is refused with one line instead
  of mixing one run's config with the other's weights.  The lock goes with the process (also on
  SIGKILL).
* ``--overwrite``: the previous run's files are moved into ``OUT/.previous-run/`` (a rename in
  the same folder) and dropped only once the new run has committed its first checkpoint
  (:meth:`RunGuard.committed`).  If the new run fails before that (refused, out of memory,
  interrupted), :meth:`RunGuard.failed` removes the new run's files and moves the previous run
  back.  After a SIGKILL in that window ``.previous-run`` is still there; the next ``--overwrite``
  keeps it as the set-aside run, and the error message of a plain run names it.
* A fresh run that fails before writing anything (e.g. a full disk) leaves no folder behind; one
  that fails later keeps its config.json, so ``--resume`` starts it again, as after a kill.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path

from synthfm.errors import UserError

PREVIOUS_RUN = ".previous-run"


class RunGuard:
    """Lock + set-aside bookkeeping of ``out`` for one session (rank 0 only)."""

    def __init__(self, out: Path, run_files: tuple[str, ...]):
        self.out = Path(out)
        self.run_files = run_files
        self.created = False
        self.resume = False
        self.set_aside = False
        self.is_committed = False
        self._fd: int | None = None

    # -- lock
    def lock(self) -> None:
        fd = os.open(self.out, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(f"another training process is using {self.out} (it is locked); wait for it to end "
                            "or choose another --out") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    # -- --overwrite
    @property
    def previous(self) -> Path:
        return self.out / PREVIOUS_RUN

    def move_aside(self) -> None:
        """Move the previous run's files into .previous-run (an earlier set-aside run is kept)."""
        committed_here = (self.out / "last_state.pt").is_file()
        if self.previous.is_dir() and committed_here:
            shutil.rmtree(self.previous)  # a new run committed but was stopped before dropping the old one
        if self.previous.is_dir():
            self._remove_run_files()  # an interrupted attempt that never committed: the set-aside run is the old one
        else:
            self.previous.mkdir()
            for name in self.run_files:
                if (self.out / name).exists() or (self.out / name).is_symlink():
                    os.replace(self.out / name, self.previous / name)
        self.set_aside = True

    def committed(self) -> None:
        """The new run has a checkpoint: the set-aside run can go."""
        if self.is_committed:
            return
        self.is_committed = True
        if self.set_aside and self.previous.is_dir():
            shutil.rmtree(self.previous, ignore_errors=True)

    def failed(self) -> None:
        """Undo an --overwrite session that ends before its first checkpoint: its files go, the
        set-aside run comes back.  A fresh run keeps what it wrote (its config.json makes it
        resumable, as after a kill); only a folder it made and left empty is removed.  A resumed
        run is never touched."""
        if self.is_committed or self.resume:
            return
        with contextlib.suppress(OSError):
            if self.set_aside:
                self._remove_run_files()
            if self.set_aside and self.previous.is_dir():
                for entry in self.previous.iterdir():
                    os.replace(entry, self.out / entry.name)
                self.previous.rmdir()
            if self.created and not any(self.out.iterdir()):
                self.release()
                self.out.rmdir()

    def _remove_run_files(self) -> None:
        for name in self.run_files:
            p = self.out / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
