"""Allocator tuning used by data workers: applies on glibc Linux, a harmless no-op elsewhere."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Allocation pattern of one sample in miniature: several 0.25-4 MiB arrays freed out of order.
WORKLOAD = """
import resource, sys
import numpy as np
if sys.argv[1] == "tuned":
    from synthfm.synth.memory import keep_freed_memory
    assert keep_freed_memory()
def work():
    a = np.ones((1024, 1024), np.float32)
    b = np.ones((724, 724), np.float32)
    c = a * 2
    del a
    d = np.ones((1024, 1024), np.uint8)
    e = c + 1
    del b, c
    f = np.ones((512, 512), np.float32)
    return float(e.sum() + d.sum() + f.sum())
work()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    work()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", WORKLOAD, mode], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_keep_freed_memory_stops_page_faults_of_repeated_large_arrays():
    default, tuned = _page_faults("default"), _page_faults("tuned")
    assert default > 5000  # the default allocator maps fresh pages for these arrays
    assert tuned < default / 10


def test_keep_freed_memory_returns_whether_it_applied():
    from synthfm.synth.memory import keep_freed_memory

    on_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is on_glibc
