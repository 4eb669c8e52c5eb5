"""Process-wide memory settings that keep a long run's footprint flat."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 128 << 10
_pinned = False


def pin_mmap_threshold() -> bool:
    """Serve every allocation of 128 KiB or more (decoded frames, batches) with its own mmap.

    glibc raises its mmap threshold each time such a block is freed, after which frame-sized
    arrays come from the heaps of the many decoder and inference threads; a frame allocated in a
    source thread and freed in another fragments those heaps, and the resident size creeps up for
    as long as the run lasts. Measured with benchmarks/cpu_pipeline.py's looping four-stream run
    (yolox-nano): unpinned, peak RSS +19% between 500 and 5,000 frames; pinned at 1 MiB, still
    +4 KB a frame over 15,000 frames (a 768x432 frame is just under 1 MiB); pinned at 128 KiB,
    flat (331-348 MiB from 500 to 8,000 frames). Setting the threshold once also turns the
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
