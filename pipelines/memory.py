"""Keep a local run's memory flat: tune glibc malloc in the runner and in its worker processes.

Two glibc defaults make a long Beam run's resident memory creep up with the amount of data that went through it:

* threads get their own malloc arenas (up to 8 per core); an SDK worker moves every element through several
  gRPC threads, so freed memory stays spread over many half-empty arenas. Capped at 2 (`MALLOC_ARENA_MAX`).
* after a large block is freed, glibc raises its mmap threshold, so later large buffers (the runner's data
  chunks of up to 10 MB) come from the heap, whose free middle is never returned to the system. A fixed trim
  threshold of 64 KB (`MALLOC_TRIM_THRESHOLD_`, as Dask sets for its workers) turns that adjustment off; the
  mmap threshold is then fixed too (`MALLOC_MMAP_THRESHOLD_`, 1 MB), so those chunks still come from mmap.

Returning every freed page to the system has a price: a web page's buffers (its bytes, the decoded text, the
parser's copies: 100-600 KB each, over glibc's default 128 KB mmap threshold) were mapped and faulted in afresh for
every page, about 470 page faults per document. Buffers under 1 MB now come from the heap, and a trim keeps 4 MB
at its top (`MALLOC_TOP_PAD_`) for the next page: on bench/throughput.py's input, `wudao text` with one worker
went from 939,024 to 98,997 minor page faults and from 2.3 to 0.7 system CPU seconds, peak RSS 233 -> 236 MB
(`/usr/bin/time -f "%S %R %M" python -m pipelines.cli text --input 'bench/work/input/*.warc.gz' ...`).

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
SETTINGS = {"MALLOC_ARENA_MAX": (-8, 2), "MALLOC_TRIM_THRESHOLD_": (-1, 64 * 1024),
            "MALLOC_MMAP_THRESHOLD_": (-3, 1024 * 1024), "MALLOC_TOP_PAD_": (-2, 4 * 1024 * 1024)}


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
    return applied
