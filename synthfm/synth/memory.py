"""Allocator tuning for processes that generate samples all day (data workers, benchmarks).

A 1024^2 sample allocates and frees a few dozen 1-4 MiB float32 arrays.  By default glibc serves
blocks that large with fresh ``mmap`` calls and returns them on free, so every sample pays
~1500 page faults (zero-filling ~6 MiB) -- a third or more of its generation time.  Raising the
mmap and trim thresholds makes malloc keep freed blocks in the heap and reuse them.

This changes process-wide allocator behaviour, so the engine never does it on import: it is
called in DataLoader workers of :class:`~synthfm.synth.dataset.SyntheticStream`, in the worker
processes of ``synthfm generate`` and by ``benchmarks/bench_synth.py``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

# glibc <malloc.h> parameter numbers.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# The largest mmap threshold glibc accepts on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX).
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 256 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Make glibc malloc reuse freed large blocks instead of unmapping them.

    Returns True when the thresholds were set, False where this is not glibc (a no-op).
    Memory kept by the process grows by at most ``TRIM_THRESHOLD`` of freed heap.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
