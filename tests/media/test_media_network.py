"""Network sources against real servers on 127.0.0.1: one that serves, one that refuses, one
that accepts and never answers."""

from __future__ import annotations

import functools
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from media_clips import ONE_BY_ONE

from panoptes.core.errors import SourceError
from panoptes.media import open_reader
from panoptes.media._av import network_url_and_options


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the reader hangs up mid-file when a test has read enough: not an error here


@pytest.fixture
def http_root(videos: Path, raw_h264: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``(base URL, folder)`` of an HTTP server on 127.0.0.1 serving a clip and a raw stream."""
    (tmp_path / "hall.mp4").symlink_to(ONE_BY_ONE)
    (tmp_path / "hall.h264").symlink_to(raw_h264)
    handler = functools.partial(QuietHandler, directory=str(tmp_path))
    server = QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose kernel completes the TCP handshake but where nobody ever reads or answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_decodes_a_clip_served_over_http(http_root: tuple[str, Path]) -> None:
    base_url, _ = http_root
    reader = open_reader(f"{base_url}/hall.mp4", name="hall")
    reader.open()
    assert (reader.size_wh, reader.frame_count, reader.is_live) == ((768, 432), 1394, False)
    frames = []
    for frame in reader.frames():
        frames.append(frame)
        if len(frames) == 30:
            break
    reader.close()
    assert [frame.index for frame in frames] == list(range(30))
    assert frames[-1].image.shape == (432, 768, 3)


def test_a_stream_without_duration_is_live(http_root: tuple[str, Path]) -> None:
    base_url, _ = http_root
    reader = open_reader(f"{base_url}/hall.h264", loop=True)
    reader.open()
    assert reader.is_live
    assert reader.frame_count is None
    frames = list(reader.frames())  # a live stream is never looped: it ends when the sender does
    reader.close()
    assert len(frames) == 100


def test_http_404(http_root: tuple[str, Path]) -> None:
    base_url, _ = http_root
    with pytest.raises(SourceError, match="has no such stream") as caught:
        open_reader(f"{base_url}/absent.mp4", name="cam").open()
    assert str(caught.value).startswith("cam: 127.0.0.1:")


@pytest.mark.parametrize("scheme", ["http", "rtsp"])
def test_a_refused_connection(closed_port: int, scheme: str) -> None:
    reader = open_reader(f"{scheme}://127.0.0.1:{closed_port}/stream", name="cam")
    with pytest.raises(SourceError, match=f"connection refused by 127.0.0.1:{closed_port}"):
        reader.open()


@pytest.mark.parametrize("scheme", ["http", "rtsp"])
def test_a_server_that_never_answers_times_out(silent_port: int, scheme: str) -> None:
    reader = open_reader(f"{scheme}://127.0.0.1:{silent_port}/stream", open_timeout_s=2)
    with pytest.raises(SourceError, match=r"no answer from 127\.0\.0\.1:\d+ within 2 s"):
        reader.open()


@pytest.fixture
def stalling_url(raw_h264: Path) -> Iterator[str]:
    """URL of a server that sends 80% of a raw H.264 stream, then goes quiet."""
    payload = raw_h264.read_bytes()
    release = threading.Event()

    class StallingHandler(QuietHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "video/h264")
            self.end_headers()
            self.wfile.write(payload[: len(payload) * 8 // 10])
            self.wfile.flush()
            release.wait(30)

    server = QuietServer(("127.0.0.1", 0), StallingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/live.h264"
    release.set()
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_stream_that_stalls_times_out_while_reading(stalling_url: str) -> None:
    reader = open_reader(stalling_url, name="cam", open_timeout_s=1)
    reader.open()
    assert reader.is_live
    frames = []
    with pytest.raises(SourceError, match=r"^cam: no data for 1 s after \d+ frames \(stalled\)"):
        frames.extend(reader.frames())
    reader.close()
    assert len(frames) > 50


@pytest.mark.parametrize(
    ("uri", "url", "options"),
    [
        (
            "rtsp://cam/live?channel=2",
            "rtsp://cam/live?channel=2",
            {"rtsp_transport": "tcp", "timeout": "3000000"},
        ),
        (
            "rtsp://cam/live?transport=udp&channel=2",
            "rtsp://cam/live?channel=2",
            {"rtsp_transport": "udp", "timeout": "3000000"},
        ),
        (
            "https://host/a.m3u8",
            "https://host/a.m3u8",
            {"timeout": "3000000", "rw_timeout": "3000000"},
        ),
        ("srt://host:9000", "srt://host:9000", {"rw_timeout": "3000000"}),
    ],
)
def test_network_options(uri: str, url: str, options: dict[str, str]) -> None:
    assert network_url_and_options(uri, 3.0, source="cam") == (url, options)
