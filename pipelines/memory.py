"""Keep a local run's memory flat: cap glibc's malloc arenas in the runner and its worker processes.

glibc gives threads their own malloc arenas (up to 8 per core). A Beam SDK worker moves every element through
several gRPC threads, so freed memory stays spread over many half-empty arenas and the resident size of each
process creeps up with the amount of data that went through it. Capping the arenas at 2 (as many long-running
Python gRPC services do) cut the peak memory of `wudao text` on 300 MB of WARC by a fifth here
(bench/RESULTS.md, "Scale"); it costs no measurable speed. A value the user already set is left alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt() parameter number for M_ARENA_MAX


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap arenas for this process (mallopt) and for the processes it starts (MALLOC_ARENA_MAX, read by glibc at
    start-up). Returns True when this process was capped; False off glibc or when the user set the variable."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    os.environ["MALLOC_ARENA_MAX"] = str(arenas)
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc (musl, macOS): the variable alone is harmless
        return False
