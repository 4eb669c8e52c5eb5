"""Pipelines on a real Triton server: switching a model to Triton changes one line of the config and
no box; a server stopped (SIGTERM) and started again in the middle of a run is reported, costs
only the frames of that time their objects, and inference resumes when it is back."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from triton_server import MODEL_NAME, TritonServer

from cli_tools import panoptes
from panoptes import Batch, MessageType, Pipeline

CONFIG = """\
sources:
  - uri: {clip}
    max_frames: 40
  - uri: {clip}
    name: second
    max_frames: 40
infer:
  - name: detector
    model: yolox-nano
    threshold: 0.2
    backend: {backend}
    url: {url}
sinks:
  - type: jsonl
    path: {output}
"""


def _records(path: Path) -> dict[tuple[int, int], list[dict[str, Any]]]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return {(r["source_id"], r["frame_num"]): r["objects"] for r in records}


def test_switching_to_triton_changes_one_line_and_no_box(
    running_server: TritonServer, assets: Path, tmp_path: Path
) -> None:
    clip = assets / "videos" / "one-by-one-person-detection.mp4"
    outputs = {}
    for backend in ("onnxruntime", "triton"):
        output = tmp_path / f"{backend}.jsonl"
        config = tmp_path / f"{backend}.yaml"
        config.write_text(
            CONFIG.format(clip=clip, backend=backend, url=running_server.grpc_url, output=output)
        )
        result = panoptes("run", str(config), "--quiet", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        outputs[backend] = _records(output)
    local, remote = outputs["onnxruntime"], outputs["triton"]
    assert len(local) == 80 and local.keys() == remote.keys()
    # A television in every frame, whose score sits near yolox-nano's default threshold (0.25).
    assert sum(len(objects) for objects in local.values()) >= 60
    for frame, objects in local.items():
        served = remote[frame]
        assert [o["label"] for o in served] == [o["label"] for o in objects], frame
        for want, got in zip(objects, served, strict=True):
            np.testing.assert_allclose(got["bbox"], want["bbox"], atol=0.05, err_msg=str(frame))
            assert abs(got["confidence"] - want["confidence"]) < 1e-3, frame


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_server_stopped_and_started_mid_run(
    running_server: TritonServer, assets: Path, protocol: str
) -> None:
    clip = str(assets / "videos" / "one-by-one-person-detection.mp4")
    pipeline = Pipeline(
        {
            "sources": [
                {"uri": clip, "name": "cam0", "real_time": True},
                {"uri": clip, "name": "cam1", "real_time": True},
            ],
            "infer": [
                {
                    "name": "detector",
                    "backend": "triton",
                    "url": running_server.url(protocol),
                    "protocol": protocol,
                    "timeout_s": 2,
                }
            ],
            "perf": {"interval_s": 0},
        }
    )
    lock = threading.Lock()
    # (seconds since start, source id, inferred, objects) of every frame, in order.
    seen: list[tuple[float, int, bool, int]] = []
    started = time.monotonic()

    def record(batch: Batch) -> None:
        with lock:
            for frame in batch.frames:
                inferred = 1 in frame.meta.inferred_by
                seen.append(
                    (time.monotonic() - started, frame.source_id, inferred, len(frame.objects))
                )

    def count(since_s: float, inferred: bool) -> int:
        with lock:
            return sum(1 for t, _, done, _ in seen if t >= since_s and done == inferred)

    pipeline.add_probe("detector", record)
    pipeline.start()
    try:
        _wait_for(lambda: count(0, inferred=True) >= 10, 60, "inference before the stop")
        running_server.stop()  # SIGTERM, as an operator stops it
        stopped_s = time.monotonic() - started
        _wait_for(lambda: count(stopped_s, inferred=False) >= 20, 30, "frames during the stop")
        running_server.start()
        back_s = time.monotonic() - started
        _wait_for(lambda: count(back_s, inferred=True) >= 10, 60, "inference after the restart")
    finally:
        pipeline.stop()
        assert pipeline.wait(30), "the pipeline did not stop"
        if not running_server.running:
            running_server.start()

    errors = [m for m in pipeline.bus.history if m.type is MessageType.ERROR]
    assert errors and all(m.origin == "detector" for m in errors)
    assert running_server.url(protocol) in errors[0].text
    assert f"model {MODEL_NAME}" in errors[0].text
    resumed = [m for m in pipeline.bus.history if "inference resumed" in m.text]
    assert len(resumed) == 1 and resumed[0].type is MessageType.WARNING

    missed = [entry for entry in seen if not entry[2]]
    detector: Any = pipeline.element("detector")
    assert detector.frames_failed == len(missed) >= 20  # every frame without objects is counted
    assert all(objects == 0 for *_, objects in missed)
    # Both streams went on through the stop, and were inferred again after it.
    assert {source for _, source, _, _ in missed} == {0, 1}
    with lock:
        after = {source for t, source, done, _ in seen if t >= back_s and done}
    assert after == {0, 1}
    assert sum(objects for t, _, done, objects in seen if t >= back_s and done) > 0
