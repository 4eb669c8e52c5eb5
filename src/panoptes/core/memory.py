"""Process-wide memory settings that keep a long run's footprint flat."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 1 << 20
_pinned = False


def pin_mmap_threshold() -> bool:
    """Serve every allocation of 1 MiB or more (decoded frames, batches) with its own mmap.

    glibc raises its mmap threshold each time such a block is freed, after which frame-sized
    arrays come from the heaps of the many decoder and inference threads, fragment them, and the
    resident size creeps up for hours (seen in benchmarks/cpu_pipeline.py: +19% peak RSS between
    500 and 5,000 frames, +5% with the threshold pinned). Setting the threshold once turns that
    adjustment off. Returns whether it was set (glibc only).
    """
    global _pinned
    if _pinned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    _pinned = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES))
    return _pinned
