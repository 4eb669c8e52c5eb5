"""Fixtures for the GPU path: the software stand-in for NVDEC in place of the hardware one."""

from __future__ import annotations

import pytest
import torch
from software_decoding import ONE_BY_ONE, VIDEOS, SoftwareNv12Backend

from panoptes.media import _nvdec

# The CPU tests share a small machine with other work: one thread is enough for them.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def videos() -> None:
    if not ONE_BY_ONE.is_file():
        pytest.fail(f"the shared clips are missing: expected them at {VIDEOS}")


@pytest.fixture
def software_nvdec(monkeypatch: pytest.MonkeyPatch, videos: None) -> SoftwareNv12Backend:
    """``decoder: nvdec`` decodes with FFmpeg into NV12 tensors on torch's CPU device."""
    backend = SoftwareNv12Backend()
    monkeypatch.setattr(_nvdec, "BACKEND", backend)
    return backend
