"""Sample clips made from scikit-image's photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from panoptes.media import default_sample_sources, make_sample_clips, open_reader


@pytest.fixture(scope="module")
def sample_clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("samples")
    return make_sample_clips(folder, seconds=2, fps=10, size_wh=(320, 180))


def test_three_clips_that_read_back(sample_clips: list[Path]) -> None:
    assert [clip.name for clip in sample_clips] == ["astronaut.mp4", "chelsea.mp4", "coffee.mp4"]
    for clip in sample_clips:
        reader = open_reader(str(clip))
        reader.open()
        assert (reader.size_wh, reader.fps, reader.frame_count) == ((320, 180), 10.0, 20)
        frames = list(reader.frames())
        reader.close()
        assert len(frames) == 20
        first, middle = frames[0].image.astype(int), frames[10].image.astype(int)
        assert np.abs(first - middle).mean() > 10.0  # the window moved over the photo


def test_existing_clips_are_kept(sample_clips: list[Path]) -> None:
    modified_ns = [clip.stat().st_mtime_ns for clip in sample_clips]
    again = make_sample_clips(sample_clips[0].parent, seconds=2, fps=10, size_wh=(320, 180))
    assert again == sample_clips
    assert [clip.stat().st_mtime_ns for clip in again] == modified_ns
    assert not list(sample_clips[0].parent.glob("*.partial"))


def test_default_sources_prefer_the_shared_videos(videos: Path, sample_clips: list[Path]) -> None:
    assert default_sample_sources(videos, sample_clips[0].parent) == sorted(videos.glob("*.mp4"))
    cache = sample_clips[0].parent
    assert default_sample_sources(cache / "absent", cache) == sample_clips
    assert default_sample_sources(None, cache) == sample_clips


def test_odd_sizes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        make_sample_clips(tmp_path, size_wh=(321, 180))
