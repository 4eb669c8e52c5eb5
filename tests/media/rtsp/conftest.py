"""A server shared by the RTSP tests: two real clips looped at their real speed on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from media_clips import ONE_BY_ONE, PARKING
from rtsp_served import ServedClips

from panoptes.media.rtsp import FileFeeder, RtspServer, probe_clip


@pytest.fixture(scope="session")
def served(videos: Path) -> Iterator[ServedClips]:
    server = RtspServer("127.0.0.1", 0)
    server.start()
    feeders = {}
    for path, clip in (("/hall", ONE_BY_ONE), ("/parking", PARKING)):
        feeders[path] = FileFeeder(probe_clip(clip), server.mount(path))
        feeders[path].start()
    yield ServedClips(server, feeders)
    for feeder in feeders.values():
        feeder.stop()
        feeder.join()
    server.stop()
    assert not server.errors, list(server.errors)
    assert all(feeder.error is None for feeder in feeders.values())
