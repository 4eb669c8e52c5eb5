"""Fixtures: the shared clips, and clips derived from them in temporary folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from media_clips import ONE_BY_ONE, VIDEOS, remux


@pytest.fixture(scope="session")
def videos() -> Path:
    if not ONE_BY_ONE.is_file():
        pytest.skip(f"the shared clips are not at {VIDEOS}")
    return VIDEOS


@pytest.fixture(scope="session")
def clip_100_frames(videos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 100 frames (10 s) of the one-by-one clip in Matroska."""
    folder = tmp_path_factory.mktemp("remuxed")
    return remux(ONE_BY_ONE, folder / "one-by-one-100.mkv", "matroska", packets=100)


@pytest.fixture(scope="session")
def raw_h264(videos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 100 frames of the one-by-one clip as a raw H.264 elementary stream."""
    folder = tmp_path_factory.mktemp("raw")
    return remux(ONE_BY_ONE, folder / "one-by-one-100.h264", "h264", packets=100)
