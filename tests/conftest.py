"""Shared fixtures: the real models and clips in ../shared/assets, an isolated cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ASSETS = (REPO / ".." / "shared" / "assets").resolve()
MODELS = ASSETS / "models"
VIDEOS = ASSETS / "videos"

# The shared models stand in for the zoo's downloads, and nothing is fetched during tests.
os.environ.setdefault("PANOPTES_MODEL_PATH", str(MODELS))


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PANOPTES_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def assets() -> Path:
    if not ASSETS.is_dir():
        pytest.fail(f"the shared assets are missing: expected them at {ASSETS}")
    return ASSETS
