"""Keep freed CPU memory inside the process between training steps (glibc malloc tuning).

A GraphLearner epoch on Cora allocates and frees dozens of 5–15 MB tensors. glibc serves large blocks
with fresh ``mmap`` pages and returns freed memory above its trim threshold to the kernel, so every
epoch page-faults (and the kernel zeroes) the same memory again. Raising both thresholds lets the heap
reuse those blocks. Measured on Cora, 150 epochs, 2 threads: minor page faults 0.64–0.71 M -> 0.14 M,
system time 1.4–1.7 s -> 0.5 s, training 10.3–10.5 s -> 9.7 s. Raising only the trim threshold is worse
than nothing (glibc stops adapting its mmap threshold and maps every large block), so both are set.
The process keeps its peak heap instead of returning it, which a training process wants anyway.
PyTorch's CPU tuning guide suggests jemalloc/tcmalloc for the same reason; this needs no extra library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 * 1024 * 1024  # the largest value glibc accepts on 64-bit (HEAP_MAX_SIZE / 2)
_TRIM_THRESHOLD = 2**31 - 1


def retain_freed_memory() -> bool:
    """Tune glibc malloc as above; returns False (and changes nothing) off Linux/glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )
