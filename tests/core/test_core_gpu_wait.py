"""How pipeline threads wait for the GPU: the mode asked for, checked, and set on the primary
context of every GPU (on a GPU machine: ``pytest -m gpu tests/core``)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
import torch

from panoptes.core.errors import ConfigError
from panoptes.core.gpu_wait import gpu_wait_mode, primary_context_wait, set_gpu_wait


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    set_gpu_wait.cache_clear()
    yield
    set_gpu_wait.cache_clear()


def test_threads_block_on_the_gpu_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PANOPTES_CUDA_WAIT", raising=False)
    assert gpu_wait_mode() == "block"
    monkeypatch.setenv("PANOPTES_CUDA_WAIT", " Spin ")
    assert gpu_wait_mode() == "spin"
    monkeypatch.setenv("PANOPTES_CUDA_WAIT", "auto")
    assert gpu_wait_mode() == "auto"


def test_an_unknown_wait_mode_names_the_variable_and_the_modes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PANOPTES_CUDA_WAIT", "sleepy")
    with pytest.raises(ConfigError, match=r"PANOPTES_CUDA_WAIT='sleepy'.*auto, spin, yield, block"):
        gpu_wait_mode()
    with pytest.raises(ConfigError, match="PANOPTES_CUDA_WAIT"):
        set_gpu_wait()
    with pytest.raises(ValueError, match="'nap' is not a CUDA wait mode"):
        set_gpu_wait("nap")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without a GPU")
def test_without_a_cuda_driver_nothing_is_set_and_nothing_fails() -> None:
    assert set_gpu_wait("block") is False
    assert primary_context_wait(0) is None


_AFTER_TORCH = """
import torch
from panoptes.core.gpu_wait import primary_context_wait, set_gpu_wait
torch.zeros(1, device="cuda").sum().item()  # the primary context is active from here
before = primary_context_wait(0)
assert set_gpu_wait("yield") is True
after = primary_context_wait(0)
torch.cuda.synchronize()
print(before, after)
"""


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_wait_mode_is_set_before_and_after_torch_starts_the_gpu() -> None:
    assert set_gpu_wait("block") is True
    assert primary_context_wait(0) == "block"
    # In a process of its own: the flags are the process's, and this one's tests keep theirs.
    shown = subprocess.run(
        [sys.executable, "-c", _AFTER_TORCH], capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == ["auto", "yield"]
