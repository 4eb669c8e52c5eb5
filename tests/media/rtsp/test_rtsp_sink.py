"""The ``rtsp`` sink in running pipelines: what it serves plays in real clients over TCP and UDP,
each stream at its own path without a tiler, and a taken port is a build error."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rtsp_real_clients import finish, frames_read, start_client

from cli_tools import panoptes
from panoptes import ConfigError, Pipeline


def _pattern(name: str) -> dict[str, Any]:
    return {
        "type": "test-source",
        "name": name,
        "width": 320,
        "height": 180,
        "fps": 30,
        "frames": None,
        "real_time": True,
    }


def _started(config: dict[str, Any]) -> Pipeline:
    pipeline = Pipeline({**config, "perf": {"interval_s": 0}, "keep_alive": True})
    pipeline.start()
    return pipeline


def _wait_for_paths(pipeline: Pipeline, count: int) -> dict[int, str]:
    sink: Any = pipeline.element("rtsp0")
    deadline = time.monotonic() + 20
    while len(sink.paths) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    paths: dict[int, str] = sink.paths
    assert len(paths) == count, paths
    return paths


@pytest.fixture
def tiled_pipeline() -> Iterator[Pipeline]:
    pipeline = _started(
        {
            "sources": [_pattern("gate"), _pattern("hall")],
            "tiler": {"width": 640, "height": 360},
            "osd": {"clock": True},
            "sinks": [{"type": "rtsp", "host": "127.0.0.1", "port": 0}],
        }
    )
    yield pipeline
    pipeline.stop()
    assert pipeline.wait(30)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_the_tiled_view_plays_in_ffmpeg_and_pyav(tiled_pipeline: Pipeline, transport: str) -> None:
    (source_id,) = _wait_for_paths(tiled_pipeline, 1)
    sink: Any = tiled_pipeline.element("rtsp0")
    url = sink.url(source_id)
    assert url.endswith("/ds-test")
    clients = {name: start_client(name, url, transport, 100) for name in ("ffmpeg", "pyav")}
    runs = {name: finish(process, timeout_s=60) for name, process in clients.items()}
    for name, run in runs.items():
        assert frames_read(name, run) == 100, run.report()
    assert "size=640x360" in runs["pyav"].stdout
    # Frames the clients took were measured from capture to the wire.
    latencies = list(sink.latencies_s)
    assert latencies and min(latencies) > 0 and max(latencies) < 10
    assert not tiled_pipeline.bus.errors()


def test_without_a_tiler_each_stream_has_its_path() -> None:
    pipeline = _started(
        {
            "sources": [_pattern("gate"), _pattern("hall")],
            "sinks": [{"type": "rtsp", "host": "127.0.0.1", "port": 0, "path": "/cams"}],
        }
    )
    try:
        paths = _wait_for_paths(pipeline, 2)
        assert sorted(paths.values()) == ["/cams/gate", "/cams/hall"]
        sink: Any = pipeline.element("rtsp0")
        clients = {
            source_id: start_client("ffmpeg", sink.url(source_id), "tcp", 30) for source_id in paths
        }
        for process in clients.values():
            run = finish(process, timeout_s=60)
            assert frames_read("ffmpeg", run) == 30, run.report()
        # A stream removed at run time leaves the server with its path.
        gate = next(s for s, path in paths.items() if path.endswith("gate"))
        pipeline.remove_source(gate)
        deadline = time.monotonic() + 10
        while "/cams/gate" in sink.server.paths and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sink.server.paths == ["/cams/hall"]
    finally:
        pipeline.stop()
        assert pipeline.wait(30)


def test_a_taken_port_is_refused_when_the_pipeline_is_built() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        pipeline = Pipeline(
            {
                "sources": [_pattern("gate")],
                "sinks": [{"type": "rtsp", "host": "127.0.0.1", "port": port}],
            }
        )
        with pytest.raises(
            ConfigError, match=rf"^sinks\[0\]\.port: cannot serve RTSP on 127\.0\.0\.1:{port}"
        ):
            pipeline.build()


@pytest.mark.parametrize(
    ("path", "message"),
    [("ds-test", "must start with '/'"), ("/x/{camera}", "may name {source_id} and {name} only")],
)
def test_malformed_paths_are_refused(path: str, message: str) -> None:
    pipeline = Pipeline(
        {"sources": [_pattern("gate")], "sinks": [{"type": "rtsp", "port": 0, "path": path}]}
    )
    with pytest.raises(ConfigError, match=rf"sinks\[0\]\.path: .*{message}"):
        pipeline.build()


def test_a_finished_pipeline_frees_its_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pipeline = Pipeline(
        {
            "sources": [{**_pattern("gate"), "frames": 10, "real_time": False}],
            "sinks": [{"type": "rtsp", "host": "127.0.0.1", "port": port}],
            "perf": {"interval_s": 0},
        }
    )
    assert pipeline.run().ok
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))  # raises if the server still held it


def test_the_cli_says_where_the_output_is_served(tmp_path: Path) -> None:
    (tmp_path / "live.yaml").write_text(
        "sources:\n  - {type: test-source, name: gate, frames: 20}\n"
        "sinks:\n  - {type: rtsp, host: 127.0.0.1, port: 0, path: /cams}\n"
        "perf: {interval_s: 0}\n"
    )
    result = panoptes("run", "live.yaml", "--no-progress", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert re.search(r"rtsp0: serving gate at rtsp://127\.0\.0\.1:\d+/cams/gate", result.stderr)
