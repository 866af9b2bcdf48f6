"""The C allocator's settings for training on Linux: keep freed memory for the next batch.

glibc's malloc serves every block larger than its mmap threshold (at most 32 MB) with a fresh
mapping and unmaps it when freed. A training step allocates and frees hundreds of activation
and gradient tensors that large, so every step maps them again and the kernel zero-fills every
page on first touch: on this project's 2-core VM that page-fault work took a quarter of the
CPU time of `pneumonia train` and made a step of EfficientNet-Lite0 at 192 px about twice as
slow (`benchmarks/train_step.py --allocator default keep`, docs/benchmarks.md). Serving every
block from malloc's heaps and never trimming them keeps that memory mapped for reuse, as
jemalloc or tcmalloc would, without preloading another library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)
M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_MAX = -4
NEVER_TRIM = 2**31 - 1  # mallopt takes an int: the largest threshold it can set


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to serve large blocks from its heaps and keep what is freed
    (for this process, from now on); True when it took the settings. Elsewhere (macOS,
    Windows, musl) nothing changes and the answer is False."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    kept = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, NEVER_TRIM) == 1
    log.debug("malloc keeps freed memory: %s", kept)
    return kept
