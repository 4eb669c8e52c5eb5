"""``panoptes run CONFIG --http PORT`` as a user runs it: the server starts with the pipeline, the
config's ``http`` section adds the browser view, and Ctrl-C stops both."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import yaml
from prometheus_client.parser import text_string_to_metric_families

from cli_tools import PANOPTES


def _start(config: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [*PANOPTES, "run", str(config), "--no-progress", *args],
        cwd=config.parent,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=os.environ.copy(),
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        found = re.search(r"browser view and REST API at (http://\S+)", line)
        if found:
            return process, found.group(1)
        if not line and process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"no server URL printed; exit code {process.poll()}")


def test_run_with_http_serves_the_view_the_api_and_metrics(tmp_path: Path) -> None:
    config = tmp_path / "live.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "sources": [
                    {"type": "test-source", "name": n, "frames": None, "real_time": True}
                    for n in ("gate", "hall")
                ],
                "tiler": {"width": 320, "height": 180},
                "http": {"host": "127.0.0.1", "max_fps": 10},
                "perf": {"interval_s": 0},
            }
        )
    )
    process, url = _start(config, "--http", "0")
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            streams = client.get("/api/v1/streams").json()
            names = sorted(row["name"] for row in streams["streams"])
            assert names == ["gate", "hall"]

            def frames_out() -> dict[str, float]:
                return {
                    sample.labels["name"]: sample.value
                    for family in text_string_to_metric_families(client.get("/metrics").text)
                    if family.name == "panoptes_stream_frames_out"
                    for sample in family.samples
                    if sample.name.endswith("_total")
                }

            # The server is up before the pipeline starts: on a loaded machine the first
            # pictures can come seconds later.
            deadline = time.monotonic() + 60
            picture = client.get("/snapshot.jpg")
            frames = frames_out()
            while time.monotonic() < deadline and not (
                picture.status_code == 200
                and set(frames) == {"gate", "hall"}
                and min(frames.values()) > 0
            ):
                time.sleep(0.1)
                picture = client.get("/snapshot.jpg")
                frames = frames_out()
            assert picture.status_code == 200
            image = cv2.imdecode(np.frombuffer(picture.content, np.uint8), cv2.IMREAD_COLOR)
            assert image.shape == (180, 320, 3)  # the tiled view the config asked for
            assert set(frames) == {"gate", "hall"} and min(frames.values()) > 0
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    # The server stopped with the pipeline: the port is free again.
    try:
        httpx.get(f"{url}/api/v1/health", timeout=2)
    except httpx.TransportError:
        pass
    else:
        raise AssertionError("the HTTP server still answers after the run")
