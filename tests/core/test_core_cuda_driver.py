"""The CUDA driver's copy: what it copies, in threads that never used CUDA, after an event; and
its error without a driver (on a GPU machine: ``pytest -m gpu tests/core``)."""

from __future__ import annotations

import threading

import pytest
import torch

from panoptes.core.cuda_driver import CudaDriverError, DeviceCopy, cuda_driver, error_text


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without a GPU")
def test_without_a_cuda_driver_a_copy_says_so() -> None:
    assert cuda_driver() is None
    with pytest.raises(CudaDriverError, match=r"no CUDA driver \(libcuda\.so\.1\)"):
        DeviceCopy(0, 0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_copy_in_a_fresh_thread_waits_for_the_event_before_it() -> None:
    stream = torch.cuda.Stream()
    other = torch.cuda.Stream()
    copy = DeviceCopy(0, stream.cuda_stream)
    source = torch.zeros(4096, 1024, dtype=torch.uint8, device="cuda")
    destination = torch.empty_like(source)
    done = torch.cuda.Event()
    with torch.cuda.stream(other):
        # Work queued on another stream, which the copy must wait for through the event.
        torch.cuda._sleep(50_000_000)
        source.fill_(7)
        done.record()
    errors: list[BaseException] = []

    def run() -> None:  # a thread that has never touched CUDA: no current context
        try:
            size = source.numel()
            copy.copy(destination.data_ptr(), source.data_ptr(), size, after_event=done.cuda_event)
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    assert errors == []
    assert bool((destination == 7).all())
    copy.close()
    with pytest.raises(CudaDriverError, match="closed"):
        copy.copy(destination.data_ptr(), source.data_ptr(), 1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_driver_errors_are_named() -> None:
    driver = cuda_driver()
    assert driver is not None
    assert error_text(driver, 1) == "CUDA_ERROR_INVALID_VALUE (1)"
