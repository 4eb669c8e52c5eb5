"""The Triton backend against a real Triton server serving yolox-nano: what it reads of the model,
the same boxes as onnxruntime frame by frame, batches split at max_batch_size, clear errors."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from triton_server import MAX_BATCH_SIZE, MODEL_NAME, TritonServer, free_port

from panoptes.core.errors import ModelError
from panoptes.models import Detector, TensorInfo
from panoptes.models.backends.onnxruntime import OnnxRuntimeBackend
from panoptes.models.backends.triton import ServerUnavailableError, TritonBackend


@pytest.fixture(scope="module")
def clip_frames(assets: Path) -> list[np.ndarray]:
    """12 BGR frames of the indoor clip, 25 apart (people come and go)."""
    frames: list[np.ndarray] = []
    with av.open(str(assets / "videos" / "one-by-one-person-detection.mp4")) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % 25 == 0:
                frames.append(frame.to_ndarray(format="bgr24"))
            if len(frames) == 12:
                break
    return frames


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_the_model_is_described_by_the_server(running_server: TritonServer, protocol: str) -> None:
    backend = TritonBackend("yolox-nano", url=running_server.url(protocol), protocol=protocol)
    try:
        assert backend.model_name == MODEL_NAME  # the zoo name's file name
        assert backend.max_batch_size == MAX_BATCH_SIZE
        assert backend.inputs == [TensorInfo("images", (None, 3, 416, 416), np.dtype("float32"))]
        assert backend.outputs == [TensorInfo("output", (None, 3549, 85), np.dtype("float32"))]
        assert backend.shared_memory  # auto, and the url is a loopback one
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("protocol", "shared_memory"),
    [("grpc", "auto"), ("grpc", "off"), ("http", "auto"), ("http", "off")],
)
def test_boxes_match_onnxruntime_frame_by_frame(
    running_server: TritonServer,
    clip_frames: list[np.ndarray],
    protocol: str,
    shared_memory: str,
) -> None:
    options = {
        "url": running_server.url(protocol),
        "protocol": protocol,
        "shared_memory": shared_memory,
    }
    with (
        Detector("yolox-nano", threads=1) as local,
        Detector("yolox-nano", backend="triton", backend_options=options) as remote,
    ):
        expected = local.detect(clip_frames)
        found = remote.detect(clip_frames)  # 12 frames: two requests, 8 and 4
    assert sum(len(result.detections) for result in expected) >= 8  # people in most frames
    for index, (want, got) in enumerate(zip(expected, found, strict=True)):
        place = f"frame {index}"
        assert got.detections.class_id.tolist() == want.detections.class_id.tolist(), place
        np.testing.assert_allclose(got.detections.xyxy, want.detections.xyxy, atol=0.01)
        np.testing.assert_allclose(got.detections.confidence, want.detections.confidence, atol=1e-4)


def test_a_batch_beyond_max_batch_size_is_split(running_server: TritonServer, assets: Path) -> None:
    batch = np.random.default_rng(7).uniform(0, 255, (11, 3, 416, 416)).astype(np.float32)
    local = OnnxRuntimeBackend(assets / "models" / "yolox_nano.onnx", threads=1)
    backend = TritonBackend("yolox-nano", url=running_server.grpc_url)
    try:
        outputs = backend.run(batch)
        assert backend.requests == 2  # 8 + 3 images
        assert outputs["output"].shape == (11, 3549, 85)
        expected = np.concatenate([local.run(batch[i : i + 1])["output"] for i in range(11)])
        np.testing.assert_allclose(outputs["output"], expected, rtol=1e-4, atol=1e-3)
    finally:
        backend.close()
        local.close()


def test_a_model_the_server_does_not_serve_is_named(running_server: TritonServer) -> None:
    with pytest.raises(ModelError, match=rf"{running_server.grpc_url}.*model nosuch.*not served"):
        TritonBackend("nosuch", url=running_server.grpc_url, retries=0)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_server_that_is_not_there_is_named(protocol: str) -> None:
    url = f"127.0.0.1:{free_port()}"
    with pytest.raises(ServerUnavailableError, match=rf"{url} \({protocol}\), model yolox_nano"):
        TritonBackend("yolox-nano", url=url, protocol=protocol, retries=1, timeout_s=2)
