"""What the benchmarks share: the machine's description for the JSON reports, and for the live
ones a 720p camera clip, fake RTSP cameras served by ``panoptes serve`` in a process of their
own, and readings of this process."""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

REPO = Path(__file__).resolve().parents[1]
ASSETS = (REPO / ".." / "shared" / "assets").resolve()
VIDEOS = ASSETS / "videos"
MODELS = ASSETS / "models"
CACHE = REPO / "out" / "bench"


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }


def camera_clip(width: int = 1280, height: int = 720, fps: int = 15) -> Path:
    """The shared Retail02 clip (1080p HEVC) as an H.264 camera would send it: ``width`` x
    ``height`` at ``fps``, a key frame every 2 s; made once and kept in ``out/bench``."""
    path = CACHE / f"retail_{height}p{fps}.mp4"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.mp4")
    with av.open(str(VIDEOS / "Retail02_short.mp4")) as source, av.open(str(partial), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"preset": "veryfast", "crf": "23", "g": str(2 * fps), "bf": "0"}
        step = source.streams.video[0].average_rate / fps
        kept = 0
        for index, frame in enumerate(source.decode(video=0)):
            if index < kept * step:
                continue
            image = frame.reformat(width, height, "yuv420p")
            image.pts, image.time_base = kept, Fraction(1, fps)
            kept += 1
            out.mux(stream.encode(image))
        out.mux(stream.encode(None))
    partial.rename(path)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def served_cameras(clip: Path, count: int, port: int | None = None) -> Iterator[list[str]]:
    """``count`` RTSP cameras looping ``clip`` at its real speed, from ``panoptes serve`` in a
    process of its own; yields their URLs once the server answers."""
    port = port or free_port()
    with tempfile.TemporaryDirectory() as folder:
        names = []
        for index in range(count):
            link = Path(folder) / f"cam{index}{clip.suffix}"
            link.symlink_to(clip)
            names.append(link)
        command = [sys.executable, "-m", "panoptes", "serve", *map(str, names), "--port", str(port)]
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_for_port(port, server)
            yield [f"rtsp://127.0.0.1:{port}/cam{index}" for index in range(count)]
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _wait_for_port(port: int, server: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            stderr = server.stderr.read().decode() if server.stderr else ""
            raise RuntimeError(f"panoptes serve exited: {stderr}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"panoptes serve did not listen on port {port} within {timeout_s:g} s")


def process_readings() -> dict[str, float]:
    """RSS in MiB, open file descriptors and threads of this process."""
    import psutil

    process = psutil.Process()
    return {
        "rss_mib": process.memory_info().rss / 2**20,
        "open_fds": process.num_fds(),
        "threads": process.num_threads(),
    }
