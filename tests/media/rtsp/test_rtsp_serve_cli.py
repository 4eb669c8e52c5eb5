"""``panoptes serve`` run as a user runs it, read by real clients, stopped by a signal."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from media_clips import ONE_BY_ONE, PARKING, RETAIL
from rtsp_real_clients import finish, frames_read, start_client

from cli_tools import PANOPTES, panoptes
from panoptes.core.errors import SourceError
from panoptes.media.rtsp import RtspServer, serve_files

#: Seconds the command may take to print its URLs, or to exit once told to stop.
COMMAND_TIMEOUT_S = 30


class Serving:
    """A running ``panoptes serve``: its URLs, and its output once it exits."""

    def __init__(self, *files: Path) -> None:
        self.process = subprocess.Popen(
            [*PANOPTES, "serve", *map(str, files), "--host", "127.0.0.1", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        assert self.process.stdout is not None
        self._lines: queue.Queue[str] = queue.Queue()
        stdout = self.process.stdout
        # A thread reads stdout, so that waiting for a line can time out.
        self._reader = threading.Thread(
            target=lambda: [self._lines.put(line) for line in stdout], daemon=True
        )
        self._reader.start()
        self.urls = [self._next_line() for _ in files]

    def _next_line(self) -> str:
        try:
            return self._lines.get(timeout=COMMAND_TIMEOUT_S).strip()
        except queue.Empty:
            self.process.kill()
            _, stderr = self.process.communicate()
            pytest.fail(f"panoptes serve printed no URL in {COMMAND_TIMEOUT_S} s: {stderr}")

    def stop(self, signum: signal.Signals) -> tuple[int, str]:
        """Send ``signum``; the exit status and what it said on stderr."""
        self.process.send_signal(signum)
        try:
            _, stderr = self.process.communicate(timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate()
            pytest.fail(f"panoptes serve did not exit on {signum.name}: {stderr}")
        self._reader.join()
        return self.process.returncode, stderr


@pytest.fixture
def serving_h264(videos: Path) -> Iterator[Serving]:
    serving = Serving(ONE_BY_ONE, PARKING)
    yield serving
    if serving.process.poll() is None:
        serving.process.kill()
        serving.process.communicate()


def test_serves_h264_clips_until_sigterm(serving_h264: Serving) -> None:
    port = serving_h264.urls[0].split(":")[2].split("/")[0]
    assert serving_h264.urls == [
        f"rtsp://127.0.0.1:{port}/one-by-one-person-detection",
        f"rtsp://127.0.0.1:{port}/person-bicycle-car-detection",
    ]
    tcp = start_client("ffmpeg", serving_h264.urls[0], "tcp", 30)
    udp = start_client("ffmpeg", serving_h264.urls[0], "udp", 30)
    for process in (tcp, udp):
        run = finish(process, COMMAND_TIMEOUT_S)
        assert run.returncode == 0 and frames_read("ffmpeg", run) == 30, run.report()
    returncode, stderr = serving_h264.stop(signal.SIGTERM)
    assert returncode == 0, stderr
    assert "SIGTERM: stopping" in stderr and "stopped" in stderr
    assert "transcoded" not in stderr  # H.264 goes out as it is
    assert "Traceback" not in stderr


def test_transcodes_hevc_and_stops_on_ctrl_c(videos: Path) -> None:
    serving = Serving(RETAIL)
    try:
        assert serving.urls[0].endswith("/Retail02_short")
        decoded = []
        with av.open(serving.urls[0], options={"rtsp_transport": "tcp"}, timeout=30) as stream:
            assert stream.streams.video[0].codec_context.name == "h264"
            for frame in stream.decode(video=0):
                decoded.append((frame.width, frame.height))
                if len(decoded) == 10:
                    break
        assert decoded == [(1920, 1080)] * 10
        returncode, stderr = serving.stop(signal.SIGINT)
    finally:
        if serving.process.poll() is None:
            serving.process.kill()
            serving.process.communicate()
    assert returncode == 0, stderr
    assert "Retail02_short.mp4: hevc video is transcoded to H.264" in stderr
    assert "SIGINT: stopping" in stderr and "Traceback" not in stderr


def test_a_missing_file_is_an_error_before_serving(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.mp4"
    result = panoptes("serve", str(ONE_BY_ONE), str(missing), "--port", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {missing}: no such file"
    assert result.stdout == ""  # no URL: the server never started


def test_a_taken_port_is_an_error(tmp_path: Path) -> None:
    with RtspServer("127.0.0.1", 0) as taken:
        port = str(taken.port)
        result = panoptes(
            "serve", str(ONE_BY_ONE), "--host", "127.0.0.1", "--port", port, cwd=tmp_path
        )
    assert result.returncode == 2
    assert f"cannot listen for RTSP on 127.0.0.1:{port}" in result.stderr
    assert "another server is on that port" in result.stderr


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "a folder, not a video file"),
        (b"", "the file is empty"),
        (b"just some text\n", "not a video file FFmpeg can read"),
    ],
)
def test_files_that_cannot_be_served(tmp_path: Path, content: bytes | None, reason: str) -> None:
    path = tmp_path / "clip.mp4"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(SourceError, match=reason) as raised:
        serve_files([path], host="127.0.0.1", port=0)
    assert raised.value.source == str(path)


def test_two_files_of_one_name_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    other = tmp_path / "a" / ONE_BY_ONE.name
    other.symlink_to(ONE_BY_ONE)
    with pytest.raises(SourceError, match="would both be served at /one-by-one-person-detection"):
        serve_files([ONE_BY_ONE, other], host="127.0.0.1", port=0)
