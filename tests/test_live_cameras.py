"""Live cameras as deployments have them: four RTSP cameras (``panoptes serve``, each in its own
process), one of which goes away for some seconds and comes back, and cameras that send garbage.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cli_tools import PANOPTES
from media.rtsp.fake_servers import broken_sdp_server, random_bytes_server
from panoptes import Batch, Pipeline
from panoptes.core.streams import StreamState

VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "assets" / "videos"

CAMERAS = 4


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Camera:
    """``panoptes serve CLIP --port PORT`` in a process of its own, as a user starts it."""

    def __init__(self, clip: Path, port: int) -> None:
        self.clip, self.port = clip, port
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{self.clip.stem}"

    def start(self, niceness: int = 0) -> None:
        self.process = subprocess.Popen(
            [*PANOPTES, "serve", str(self.clip), "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
            preexec_fn=(lambda: os.nice(niceness)) if niceness else None,
        )
        assert self.process.stdout is not None
        # It prints each URL once it serves.
        line = self.process.stdout.readline()
        assert self.url in line, (line, self.process.stderr.read() if self.process.stderr else "")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            # Generous: a camera started at a low priority gets little CPU on a loaded machine,
            # and can take half a minute to exit there.
            self.process.communicate(timeout=120)
        self.process = None


@pytest.fixture
def cameras(assets: Path, tmp_path: Path) -> Iterator[list[Camera]]:
    clip = VIDEOS / "person-bicycle-car-detection.mp4"
    started = []
    for index in range(CAMERAS):
        link = tmp_path / f"cam{index}.mp4"
        link.symlink_to(clip)
        camera = Camera(link, _free_port())
        camera.start()
        started.append(camera)
    yield started
    for camera in started:
        camera.stop()


def _arrivals(pipeline: Pipeline) -> dict[str, list[float]]:
    """Monotonic times at which each stream's frames left the mux, filled as the pipeline runs."""
    seen: dict[str, list[float]] = {}
    lock = threading.Lock()

    def record(batch: Batch) -> None:
        now = time.monotonic()
        with lock:
            for frame in batch:
                seen.setdefault(frame.source_name, []).append(now)

    pipeline.add_probe("mux", record)
    return seen


def _wait(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _longest_gap_s(times: list[float], start_s: float, end_s: float) -> float:
    inside = [start_s, *(t for t in times if start_s <= t <= end_s), end_s]
    return max(b - a for a, b in itertools.pairwise(inside))


def test_a_camera_that_goes_away_comes_back_and_the_others_never_wait(
    cameras: list[Camera],
) -> None:
    pipeline = Pipeline(
        {
            "sources": [
                {
                    "uri": camera.url,
                    "name": f"cam{index}",
                    "stall_timeout_s": 2,
                    "reconnect_backoff_s": 0.5,
                    "reconnect_backoff_max_s": 1,
                }
                for index, camera in enumerate(cameras)
            ],
            "mux": {"batched_push_timeout_ms": 30},
            "perf": {"interval_s": 0},
        }
    )
    seen = _arrivals(pipeline)
    pipeline.start()
    try:
        assert _wait(lambda: len(seen) == CAMERAS and min(map(len, seen.values())) > 20, 30)
        lost = cameras[2]
        stream = next(s for s in pipeline.streams() if s.name == "cam2")
        outage_start = time.monotonic()
        lost.stop()
        assert _wait(lambda: stream.state is StreamState.RECONNECTING, 15)
        time.sleep(3)  # the camera stays away for a few seconds
        # Its process starts at a low priority: on two cores, a Python process importing its
        # libraries would otherwise slow the other cameras' own processes, not the pipeline.
        lost.start(niceness=19)
        outage_end = time.monotonic()
        frames_before = len(seen["cam2"])
        assert _wait(lambda: len(seen["cam2"]) > frames_before + 20, 30), stream
        assert stream.state is StreamState.PLAYING and stream.stats.reconnects >= 1
        resumed = time.monotonic()
    finally:
        pipeline.stop()
        assert pipeline.wait(30)
    # The other three delivered frames all along, never a second apart (12 FPS cameras).
    for name in ("cam0", "cam1", "cam3"):
        gap = _longest_gap_s(seen[name], outage_start - 1, resumed)
        assert gap < 1.0, f"{name} stopped for {gap:.2f} s while cam2 was away"
    # cam2 had a real hole while its camera was gone, and frames after it came back.
    assert _longest_gap_s(seen["cam2"], outage_start - 1, resumed) >= outage_end - outage_start - 1
    assert max(seen["cam2"]) > outage_end
    summary = {s.name: s for s in pipeline.summary().streams}
    assert not summary["cam0"].errors and not summary["cam1"].errors and not summary["cam3"].errors


def test_garbage_on_the_wire_fails_that_stream_only(assets: Path) -> None:
    with (
        broken_sdp_server() as broken,
        random_bytes_server(hang_up=True) as noise,
    ):
        pipeline = Pipeline(
            {
                "sources": [
                    {"uri": broken.url, "name": "broken-sdp", "reconnect_attempts": 1},
                    {"uri": noise.url, "name": "noise", "reconnect_attempts": 1},
                    {"uri": str(VIDEOS / "person-bicycle-car-detection.mp4"), "name": "file"},
                ],
                "perf": {"interval_s": 0},
            }
        )
        for props in pipeline.config.sources:
            assert getattr(props, "reconnect_backoff_s", 1.0) == 1.0
        summary = pipeline.run()
    streams = {s.name: s for s in summary.streams}
    assert streams["file"].state == "ended" and streams["file"].frames >= 400
    for name in ("broken-sdp", "noise"):
        assert streams[name].state == "failed" and streams[name].frames == 0
        assert "127.0.0.1" in (streams[name].error or ""), streams[name].error
    # One error per failed stream, each naming its place; nothing from the file.
    assert sorted(error.origin for error in summary.errors) == ["broken-sdp", "noise"]
    assert all(error.text.startswith("sources[") for error in summary.errors)
