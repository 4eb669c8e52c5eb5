"""The few CUDA driver calls panoptes makes itself, through ``ctypes`` on ``libcuda.so.1``.

Everything else on the GPU goes through PyTorch and PyNvVideoCodec. Two things they do not do
well enough here: set how the primary context waits (:mod:`panoptes.core.gpu_wait`), and copy
each decoded picture out of NVDEC's buffers (:class:`DeviceCopy`). For the copy, PyTorch's
``from_dlpack`` of a PyNvVideoCodec picture is a Python function that calls the picture's
``__dlpack__`` up to four times (three raise ``TypeError``: it takes only ``stream``), and it
holds the interpreter lock throughout. With 16 streams in one process on an H100 it took 18 % of
the lock's time, and 16 decoding threads copying their pictures that way ran 2,400 to 2,600
frames/s where they decoded 9,000 not copying. Copying through the driver, one pipeline process
of 16 HEVC streams went from 691 and 866 frames/s to 1,046 and 1,097 (docs/gpu.md). The driver
library comes with every NVIDIA driver, so this costs no dependency.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["CudaDriverError", "DeviceCopy", "cuda_driver"]


class CudaDriverError(RuntimeError):
    """A CUDA driver call failed."""


@functools.cache
def cuda_driver() -> ctypes.CDLL | None:
    """The CUDA driver library, initialised; None where there is none (no GPU, no driver).

    Its calls let go of Python's interpreter lock while they run (``ctypes.CDLL``)."""
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    return driver if driver.cuInit(0) == 0 else None


@dataclass(frozen=True)
class _CopyCalls:
    """The driver calls :class:`DeviceCopy` makes, their argument types declared."""

    wait_event: Any
    memcpy: Any
    get_context: Any
    set_context: Any
    synchronize: Any


@functools.cache
def _copy_calls(driver: ctypes.CDLL) -> _CopyCalls:
    # Calls that return at once (queueing work on a stream, the thread's context) keep the
    # interpreter lock (``ctypes.PyDLL``): letting go of it would mean queueing again to take it
    # back, behind every other thread of the process. Waiting for the stream lets go of it.
    # Both are libraries of their own, so that the shared one's calls keep their types.
    quick = ctypes.PyDLL(driver._name)
    waiting = ctypes.CDLL(driver._name)
    pointer = ctypes.c_void_p
    calls = _CopyCalls(
        wait_event=quick.cuStreamWaitEvent,
        memcpy=getattr(quick, "cuMemcpyDtoDAsync_v2", None) or quick.cuMemcpyDtoDAsync,
        get_context=quick.cuCtxGetCurrent,
        set_context=quick.cuCtxSetCurrent,
        synchronize=waiting.cuStreamSynchronize,
    )
    calls.wait_event.argtypes = [pointer, pointer, ctypes.c_uint]
    calls.memcpy.argtypes = [pointer, pointer, ctypes.c_size_t, pointer]
    calls.get_context.argtypes = [ctypes.POINTER(pointer)]
    calls.set_context.argtypes = [pointer]
    calls.synchronize.argtypes = [pointer]
    return calls


def error_text(driver: ctypes.CDLL, code: int) -> str:
    """The driver's name for error ``code`` (``CUDA_ERROR_INVALID_VALUE``), with the code."""
    name = ctypes.c_char_p()
    if driver.cuGetErrorName(code, ctypes.byref(name)) == 0 and name.value:
        return f"{name.value.decode()} ({code})"
    return f"error {code}"


class DeviceCopy:
    """Copies device memory on one CUDA stream of GPU ``gpu_id``'s primary context (the one
    PyTorch and PyNvVideoCodec share), each copy complete when :meth:`copy` returns.

    The copy is queued with the interpreter lock held (it returns at once) and waited for
    without it, by blocking sync where :func:`~panoptes.core.gpu_wait.set_gpu_wait` set it.

    Args:
        gpu_id: the GPU.
        stream: the CUDA stream's handle (``torch.cuda.Stream.cuda_stream``).
    """

    def __init__(self, gpu_id: int, stream: int) -> None:
        driver = cuda_driver()
        if driver is None:
            raise CudaDriverError("no CUDA driver (libcuda.so.1) on this machine")
        self._driver = driver
        self._calls = _copy_calls(driver)
        self._stream = ctypes.c_void_p(stream)
        device = ctypes.c_int(0)
        context = ctypes.c_void_p()
        self._check(driver.cuDeviceGet(ctypes.byref(device), gpu_id), "cuDeviceGet")
        self._check(
            driver.cuDevicePrimaryCtxRetain(ctypes.byref(context), device),
            "cuDevicePrimaryCtxRetain",
        )
        self._device = device
        self._context: ctypes.c_void_p | None = context
        self._thread = threading.local()
        """``bound``: the primary context is current in this thread."""

    def copy(self, destination: int, source: int, size: int, *, after_event: int = 0) -> None:
        """Copy ``size`` bytes from device address ``source`` to ``destination`` once the
        stream has waited for CUDA event ``after_event`` (0: none), and wait for the copy."""
        if not getattr(self._thread, "bound", False) or self._context is None:
            self._bind()
        calls, stream = self._calls, self._stream
        if after_event:
            self._check(calls.wait_event(stream, after_event, 0), "cuStreamWaitEvent")
        self._check(calls.memcpy(destination, source, size, stream), "cuMemcpyDtoDAsync")
        self._check(calls.synchronize(stream), "cuStreamSynchronize")

    def _bind(self) -> None:
        """Make the primary context current in this thread (the driver's calls act on the
        current one; a thread that has not used the CUDA runtime yet has none)."""
        if self._context is None:
            raise CudaDriverError("the copy was closed")
        current = ctypes.c_void_p()
        self._check(self._calls.get_context(ctypes.byref(current)), "cuCtxGetCurrent")
        if current.value != self._context.value:
            self._check(self._calls.set_context(self._context), "cuCtxSetCurrent")
        self._thread.bound = True

    def _check(self, code: int, call: str) -> None:
        if code != 0:
            raise CudaDriverError(f"{call} failed: {error_text(self._driver, code)}")

    def close(self) -> None:
        """Let go of the primary context retained at the start."""
        if self._context is not None:
            self._context = None
            release = getattr(self._driver, "cuDevicePrimaryCtxRelease_v2", None)
            (release or self._driver.cuDevicePrimaryCtxRelease)(self._device)
