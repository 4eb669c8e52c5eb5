"""Fixtures for the torch backend and the GPU path: frames of the shared clips, shared models.

Self-contained, so that the GPU tests run on a machine without the other tests' dependencies:
``pytest tests/models/gpu -m gpu --confcutdir tests/models/gpu``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_gpu_helpers import ASSETS, CLIP_FRAMES, MODELS, VIDEOS, read_frames

# The CPU tests share a small machine with other work: one thread is enough for them.
torch.set_num_threads(1)

# The shared models stand in for the zoo's downloads.
os.environ.setdefault("PANOPTES_MODEL_PATH", str(MODELS))


@pytest.fixture(scope="session")
def shared_models() -> Path:
    if not MODELS.is_dir():
        pytest.fail(f"the shared assets are missing: expected them at {ASSETS}")
    return MODELS


@pytest.fixture(scope="session")
def clip_frames() -> dict[str, list[np.ndarray]]:
    """A few frames of each shared clip, by clip name."""
    return {name: read_frames(VIDEOS / name, indices) for name, indices in CLIP_FRAMES.items()}


@pytest.fixture(scope="session")
def all_frames(clip_frames: dict[str, list[np.ndarray]]) -> list[np.ndarray]:
    return [frame for frames in clip_frames.values() for frame in frames]


@pytest.fixture(scope="session")
def torch_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One artefact cache for the session: a model converted once serves every test."""
    return tmp_path_factory.mktemp("torch-cache")


@pytest.fixture(autouse=True)
def _panoptes_cache(torch_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PANOPTES_CACHE_DIR", str(torch_cache))
