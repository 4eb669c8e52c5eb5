"""How the threads of a pipeline wait for the GPU: asleep, not spinning.

CUDA's default (``CU_CTX_SCHED_AUTO``) makes a thread that waits for the GPU spin on its core
whenever the process has fewer CUDA contexts than the machine has cores, which is always the
case here. A GPU pipeline waits a great deal: every stream's source thread synchronises once a
frame (the decoder's picture copied out before its next ``Decode``), PyNvVideoCodec waits inside
``Decode``, and the detector waits for its boxes. Spinning, those threads take cores from the
ones holding Python's interpreter lock, and several worker processes on one machine take them
from each other. Blocking sync puts a waiting thread to sleep until the GPU is done, at a cost of
some microseconds of wake-up per wait, which throughput does not notice.

The setting is the primary context's (``cuDevicePrimaryCtxSetFlags``), which the CUDA runtime
(PyTorch) and PyNvVideoCodec share; since CUDA 11 it may change while the context is active.
``PANOPTES_CUDA_WAIT`` picks another mode (``spin``, ``yield``, or ``auto``: CUDA's default).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os

from panoptes.core.cuda_driver import cuda_driver
from panoptes.core.errors import ConfigError

__all__ = ["GPU_WAIT_MODES", "gpu_wait_mode", "primary_context_wait", "set_gpu_wait"]

GPU_WAIT_MODES: dict[str, int] = {"auto": 0, "spin": 1, "yield": 2, "block": 4}
"""``PANOPTES_CUDA_WAIT`` values and their ``CU_CTX_SCHED_*`` flags."""

_SCHEDULE_MASK = 0x07
_ENVIRONMENT = "PANOPTES_CUDA_WAIT"

logger = logging.getLogger(__name__)


def _primary_context(driver: ctypes.CDLL, ordinal: int) -> tuple[ctypes.c_int, int] | None:
    """GPU ``ordinal``'s device handle and its primary context's flags; None if refused."""
    device = ctypes.c_int(0)
    flags = ctypes.c_uint(0)
    active = ctypes.c_int(0)
    if driver.cuDeviceGet(ctypes.byref(device), ordinal) != 0:
        return None
    if driver.cuDevicePrimaryCtxGetState(device, ctypes.byref(flags), ctypes.byref(active)) != 0:
        return None
    return device, flags.value


def _checked(mode: str, named: str, error: type[ValueError]) -> str:
    if mode not in GPU_WAIT_MODES:
        known = ", ".join(GPU_WAIT_MODES)
        raise error(f"{named} is not a CUDA wait mode: use one of {known}")
    return mode


def gpu_wait_mode() -> str:
    """The mode ``PANOPTES_CUDA_WAIT`` asks for (``block`` when unset)."""
    mode = os.environ.get(_ENVIRONMENT, "").strip().lower() or "block"
    return _checked(mode, f"{_ENVIRONMENT}={mode!r}", ConfigError)


@functools.cache
def set_gpu_wait(mode: str | None = None) -> bool:
    """Make every GPU's primary context wait by ``mode`` (default: :func:`gpu_wait_mode`).

    Returns whether it was set on every GPU; False, quietly, where there is no CUDA driver (a
    machine without a GPU) and, with a log line, where the driver refused. Once per process and
    mode: later calls return the first answer.
    """
    mode = gpu_wait_mode() if mode is None else _checked(mode, repr(mode), ValueError)
    driver = cuda_driver()
    count = ctypes.c_int(0)
    if driver is None or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return False
    set_flags = getattr(driver, "cuDevicePrimaryCtxSetFlags_v2", None) or getattr(
        driver, "cuDevicePrimaryCtxSetFlags", None
    )
    if set_flags is None:
        return False
    done = True
    for ordinal in range(count.value):
        context = _primary_context(driver, ordinal)
        result = -1
        if context is not None:
            device, flags = context
            wanted = (flags & ~_SCHEDULE_MASK) | GPU_WAIT_MODES[mode]
            result = set_flags(device, ctypes.c_uint(wanted))
        if result != 0:
            logger.info("CUDA wait %s not set on GPU %d: driver error %d", mode, ordinal, result)
            done = False
    return done


def primary_context_wait(gpu_id: int = 0) -> str | None:
    """The wait mode GPU ``gpu_id``'s primary context has now, or None without a driver."""
    driver = cuda_driver()
    context = None if driver is None else _primary_context(driver, gpu_id)
    if context is None:
        return None
    by_flag = {flag: name for name, flag in GPU_WAIT_MODES.items()}
    return by_flag.get(context[1] & _SCHEDULE_MASK, "auto")
