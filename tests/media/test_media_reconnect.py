"""Live sources in a running pipeline: reconnection with back-off, stalls, give-up, and the
freshest-frame policy, against real servers on 127.0.0.1."""

from __future__ import annotations

import http.server
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from panoptes import Batch, MessageType, Pipeline
from panoptes.core.streams import StreamState


class DroppingCamera(http.server.ThreadingHTTPServer):
    """Serves a raw H.264 stream (live: no duration) that hangs up after ``cut`` bytes, or
    stalls there when ``stall`` is set; each new connection starts the stream again."""

    daemon_threads = True

    def __init__(self, payload: bytes, *, cut: int, stall: bool = False) -> None:
        self.payload, self.cut, self.stall = payload, cut, stall
        self.connections = 0
        self.release = threading.Event()
        super().__init__(("127.0.0.1", 0), _CameraHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/live.h264"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the pipeline hangs up on a stalled connection: not an error here


class _CameraHandler(http.server.BaseHTTPRequestHandler):
    server: DroppingCamera

    def do_GET(self) -> None:
        camera = self.server
        camera.connections += 1
        self.send_response(200)
        self.send_header("Content-Type", "video/h264")
        self.end_headers()
        self.wfile.write(camera.payload[: camera.cut])
        self.wfile.flush()
        if camera.stall:
            camera.release.wait(30)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def camera_payload(raw_h264: Path) -> bytes:
    return raw_h264.read_bytes()


@pytest.fixture
def dropping_camera(camera_payload: bytes) -> Iterator[DroppingCamera]:
    camera = DroppingCamera(camera_payload, cut=len(camera_payload) // 2)
    thread = threading.Thread(target=camera.serve_forever, daemon=True)
    thread.start()
    yield camera
    camera.release.set()
    camera.shutdown()
    camera.server_close()
    thread.join()


@pytest.fixture
def stalling_camera(camera_payload: bytes) -> Iterator[DroppingCamera]:
    camera = DroppingCamera(camera_payload, cut=len(camera_payload) // 2, stall=True)
    thread = threading.Thread(target=camera.serve_forever, daemon=True)
    thread.start()
    yield camera
    camera.release.set()
    camera.shutdown()
    camera.server_close()
    thread.join()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _run_until(pipeline: Pipeline, done: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_camera_that_hangs_up_is_reconnected(dropping_camera: DroppingCamera) -> None:
    pipeline = Pipeline(
        {
            "sources": [
                {
                    "uri": dropping_camera.url,
                    "name": "door",
                    "reconnect_attempts": 2,
                    "reconnect_backoff_s": 0.2,
                    "frame_policy": "every",
                }
            ],
            "perf": {"interval_s": 0},
        }
    )
    frame_nums: list[int] = []
    pipeline.add_probe("mux", lambda batch: frame_nums.extend(f.frame_num for f in batch))
    states: list[str] = []
    pipeline.bus.subscribe(
        lambda message: states.append(message.text) if message.type is MessageType.WARNING else None
    )
    summary = pipeline.run()
    # Three connections (the first and two reconnections), each giving the same first half of
    # the 100-frame stream's bytes; then the attempts are spent and the stream has failed.
    assert dropping_camera.connections == 3
    (stream,) = summary.streams
    assert stream.state == "failed"
    assert len(frame_nums) % 3 == 0 and len(frame_nums) >= 3 * 40
    assert frame_nums == list(range(len(frame_nums))), "frame numbers carry on across reconnections"
    reconnecting = [text for text in states if "reconnecting in" in text]
    assert len(reconnecting) == 2
    assert "reconnecting in 0.2 s (1 attempt(s) left)" in reconnecting[0]
    assert "reconnecting in 0.4 s (0 attempt(s) left)" not in reconnecting[1]  # it played: reset
    assert "reconnecting in 0.2 s (0 attempt(s) left)" in reconnecting[1]
    assert summary.errors and "sources[0].uri" in str(summary.errors[0])


def test_a_stalled_camera_is_reconnected_and_the_others_go_on(
    stalling_camera: DroppingCamera,
) -> None:
    pipeline = Pipeline(
        {
            "sources": [
                {
                    "uri": stalling_camera.url,
                    "name": "stalls",
                    "stall_timeout_s": 1,
                    "reconnect_backoff_s": 0.1,
                },
                {"type": "test-source", "name": "steady", "frames": None, "real_time": True},
            ],
            "perf": {"interval_s": 0},
            "mux": {"batched_push_timeout_ms": 20},
        }
    )
    seen: dict[str, list[float]] = {"stalls": [], "steady": []}

    def record(batch: Batch) -> None:
        for frame in batch:
            seen[frame.source_name].append(time.monotonic())

    pipeline.add_probe("mux", record)
    pipeline.start()
    stream = pipeline.streams()[0]
    _run_until(pipeline, lambda: stream.stats.reconnects >= 2)
    state_while_waiting = stream.state
    pipeline.stop()
    assert pipeline.wait(20)
    assert stream.stats.reconnects >= 2 and stalling_camera.connections >= 2
    assert state_while_waiting in (StreamState.RECONNECTING, StreamState.PLAYING)
    assert "no data for 1 s" in (stream.error or "")
    # The steady stream never waited for the stalled one: no gap in it of a second or more
    # (its frames come at 30 FPS).
    steady = seen["steady"]
    assert len(steady) > 60
    assert max(b - a for a, b in itertools.pairwise(steady)) < 1.0


def test_an_unreachable_camera_fails_after_its_attempts_and_others_finish() -> None:
    pipeline = Pipeline(
        {
            "sources": [
                {
                    "uri": f"rtsp://127.0.0.1:{_closed_port()}/cam",
                    "reconnect_attempts": 2,
                    "reconnect_backoff_s": 0.1,
                },
                {"type": "test-source", "frames": 30},
            ],
            "perf": {"interval_s": 0},
        }
    )
    summary = pipeline.run()
    camera, pattern = summary.streams
    assert camera.state == "failed" and "connection refused" in (camera.error or "")
    assert camera.errors == 1
    assert pattern.state == "ended" and pattern.frames == 30
    assert pipeline.summary().streams[0].dropped == 0


def test_reconnection_can_be_switched_off() -> None:
    pipeline = Pipeline(
        {
            "sources": [{"uri": f"rtsp://127.0.0.1:{_closed_port()}/cam", "reconnect_attempts": 0}],
            "perf": {"interval_s": 0},
        }
    )
    warnings: list[str] = []
    pipeline.bus.subscribe(
        lambda m: warnings.append(m.text) if m.type is MessageType.WARNING else None
    )
    (camera,) = pipeline.run().streams
    assert camera.state == "failed"
    assert not [w for w in warnings if "reconnecting" in w]


def test_a_live_stream_keeps_only_its_freshest_frame(dropping_camera: DroppingCamera) -> None:
    """A pipeline slower than the camera drops old frames (counted) instead of queueing them."""
    pipeline = Pipeline(
        {
            "sources": [
                {"uri": dropping_camera.url, "reconnect_attempts": 0, "frame_policy": "freshest"}
            ],
            "perf": {"interval_s": 0},
        }
    )
    taken: list[int] = []

    def slow(batch: Batch) -> None:
        taken.extend(frame.frame_num for frame in batch)
        time.sleep(0.05)

    pipeline.add_probe("mux", slow)
    summary = pipeline.run()
    (stream,) = summary.streams
    decoded = pipeline._retired[0].stats.frames_decoded
    assert stream.dropped > 0
    assert len(taken) + stream.dropped == decoded
    assert taken == sorted(taken) and len(taken) < decoded
