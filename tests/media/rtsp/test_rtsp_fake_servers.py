"""The misbehaving servers of fake_servers.py do make real clients fail, as the failure tests
that use them expect."""

from __future__ import annotations

import pytest
from fake_servers import broken_sdp_server, random_bytes_server

from panoptes.core.errors import SourceError
from panoptes.media import open_reader


def test_a_broken_sdp_fails_to_open() -> None:
    with broken_sdp_server() as server:
        reader = open_reader(server.url, open_timeout_s=5)
        with pytest.raises(SourceError, match=server.url):
            reader.open()
    assert server.connections >= 1 and not server.errors


@pytest.mark.parametrize("hang_up", [False, True])
def test_random_bytes_fail_to_open(hang_up: bool) -> None:
    with random_bytes_server(hang_up=hang_up) as server:
        reader = open_reader(server.url, open_timeout_s=2)
        with pytest.raises(SourceError, match=server.url):
            reader.open()
    assert server.connections >= 1 and not server.errors


def test_importable_from_the_tests_folder() -> None:
    from media.rtsp.fake_servers import broken_sdp_server as same_helper

    assert same_helper.__name__ == broken_sdp_server.__name__
