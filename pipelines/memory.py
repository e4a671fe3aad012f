"""Keep a local run's memory flat: tune glibc malloc in the runner and in its worker processes.

Two glibc defaults make a long Beam run's resident memory creep up with the amount of data that went through it:

* threads get their own malloc arenas (up to 8 per core); an SDK worker moves every element through several
  gRPC threads, so freed memory stays spread over many half-empty arenas. Capped at 2 (`MALLOC_ARENA_MAX`).
* after a large block is freed, glibc raises its mmap threshold, so later large buffers (the runner's data
  chunks of up to 10 MB) come from the heap, whose free middle is never returned to the system. A fixed trim
  threshold of 64 KB (`MALLOC_TRIM_THRESHOLD_`, as Dask sets for its workers) turns that adjustment off.

Measured with `python bench/scale.py` (bench/RESULTS.md, "Scale"): the arena cap, added with split reads, and
the trim threshold, added with packed dedup shuffles, are in the rows that took the 300 MB peak from 5.5 GB to
1.45 GB; neither was measured alone, and neither changed docs per CPU second. Worker processes read the
variables when they start; this process, already running, gets the same settings through mallopt(). A variable
the user already set is left alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

#: environment variable -> (mallopt parameter number in glibc's malloc.h, value)
SETTINGS = {"MALLOC_ARENA_MAX": (-8, 2), "MALLOC_TRIM_THRESHOLD_": (-1, 64 * 1024)}
_M_MMAP_THRESHOLD = -3
_DEFAULT_MMAP_THRESHOLD = 128 * 1024


def tune_malloc() -> dict[str, bool]:
    """Apply each setting the user has not set: to the environment (for the processes this one starts) and to
    this process. Returns, per variable, whether this process took it (False off glibc or when already set)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): the variables alone are harmless
        mallopt = None
    applied = {}
    for name, (param, value) in SETTINGS.items():
        if name in os.environ:
            applied[name] = False
            continue
        os.environ[name] = str(value)
        applied[name] = bool(mallopt and mallopt(param, value))
        if name == "MALLOC_TRIM_THRESHOLD_" and mallopt:  # as the variable does: a fixed mmap threshold too
            mallopt(_M_MMAP_THRESHOLD, _DEFAULT_MMAP_THRESHOLD)
    return applied
