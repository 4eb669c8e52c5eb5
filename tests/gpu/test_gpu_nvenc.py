"""NVENC itself (PyNvVideoCodec on an NVIDIA GPU): files and RTSP streams encoded from frames on
the GPU decode back close to their source, and the encoding rate at 1080p; on a GPU without an
NVENC unit (A100, H100, H200), the fallback to the CPU encoder with frames from NVDEC.

Run on a GPU machine: ``pytest tests/gpu -m gpu``. The tests needing NVENC are skipped, with the
reason, where the GPU has none. ``NVENC_RESULTS=path.json`` keeps the measured rates.

One test runs here too, with the software stand-ins for both NVDEC and NVENC: frames from the
decoder reach the encoder as tensors, with no download between.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
import torch
from software_decoding import ONE_BY_ONE, RETAIL, SoftwareNv12Backend

from panoptes import Pipeline
from panoptes.core.bus import MessageType
from panoptes.core.negotiation import BGR_OR_CUDA
from panoptes.media import _nvenc
from panoptes.media.gpu_image import from_bgr_images, rgb_to_nv12
from panoptes.media.rtsp import H264Encoder
from panoptes.models.detector import Detector

RATE_FRAMES = 300
"""Frames encoded for each rate measured, after ``WARMUP_FRAMES``."""
WARMUP_FRAMES = 20


def psnr(first: np.ndarray, second: np.ndarray) -> float:
    error = float(np.mean((first.astype(np.float64) - second.astype(np.float64)) ** 2))
    return float(10 * np.log10(255.0**2 / max(error, 1e-10)))


def cpu_frames(path: Path, count: int) -> list[np.ndarray]:
    """The first ``count`` frames of ``path`` decoded by FFmpeg, as BGR arrays."""
    images: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            images.append(frame.to_ndarray(format="bgr24"))
            if len(images) == count:
                break
    return images


def decoded(path: Path) -> tuple[list[np.ndarray], list[bool], Any]:
    """Every frame of ``path`` (BGR), its packets' key-frame flags, its average rate."""
    with av.open(str(path)) as container:
        keys = [packet.is_keyframe for packet in container.demux(video=0) if packet.size]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        images = [frame.to_ndarray(format="bgr24") for frame in container.decode(stream)]
        return images, keys, stream.average_rate


def record(name: str, value: Any) -> None:
    """Keep a measured figure in ``$NVENC_RESULTS`` (JSON), when set, and print it."""
    print(f"{name}: {value}")
    target = os.environ.get("NVENC_RESULTS")
    if not target:
        return
    path = Path(target)
    results = json.loads(path.read_text()) if path.is_file() else {}
    results[name] = value
    path.write_text(json.dumps(results, indent=2))


# -- on this machine too: the stand-ins --------------------------------------------------------


class StandInSession:
    """Takes what NVENC would be given (NV12 tensors) and encodes it with libx264."""

    def __init__(self, settings: _nvenc.EncoderSettings) -> None:
        self.settings = settings
        self.given: list[torch.Tensor] = []
        self._encoder = H264Encoder(settings.width, settings.height, float(settings.fps))

    def encode(self, nv12: torch.Tensor) -> list[bytes]:
        self.given.append(nv12)
        bgr = cv2.cvtColor(nv12.numpy(), cv2.COLOR_YUV2BGR_NV12)
        return [unit for unit, _ in self._encoder.encode(bgr)]

    def flush(self) -> list[bytes]:
        return [unit for unit, _ in self._encoder.flush()]

    def close(self) -> None:
        pass


class StandInNvenc:
    def __init__(self) -> None:
        self.sessions: list[StandInSession] = []

    def unavailable_reason(self, gpu_id: int, codec: _nvenc.Codec) -> str | None:
        return None

    def device(self, gpu_id: int) -> str:
        return "cpu"

    def open(self, settings: _nvenc.EncoderSettings, gpu_id: int) -> StandInSession:
        self.sessions.append(StandInSession(settings))
        return self.sessions[-1]


def test_nvdec_frames_reach_nvenc_without_a_download(
    software_nvdec: SoftwareNv12Backend, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    encoders = StandInNvenc()
    monkeypatch.setattr(_nvenc, "BACKEND", encoders)
    config = {
        "sources": [{"uri": str(ONE_BY_ONE), "decoder": "nvdec", "max_frames": 8}],
        "sinks": [{"type": "file", "path": str(tmp_path / "out.mp4"), "encoder": "nvenc"}],
    }
    pipeline = Pipeline({"perf": {"interval_s": 0}, **config})
    assert pipeline.run().ok
    assert pipeline.conversions == []
    (session,) = encoders.sessions
    assert len(session.given) == 8 and session.given[0].shape == (648, 768)
    images, _, _ = decoded(tmp_path / "out_0.mp4")
    assert len(images) == 8
    assert min(map(psnr, images, cpu_frames(ONE_BY_ONE, 8))) > 30


# -- on the GPU --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nvenc_reason() -> str | None:
    if not torch.cuda.is_available():
        pytest.fail("no CUDA GPU is visible")
    return _nvenc.PyNvVideoCodecBackend().unavailable_reason(0, "h264")


@pytest.fixture
def nvenc(nvenc_reason: str | None) -> None:
    if nvenc_reason is not None:
        pytest.skip(f"NVENC is not usable here: {nvenc_reason}")


@pytest.fixture(scope="module")
def retail() -> list[np.ndarray]:
    """The first 60 frames of the 1080p clip, BGR."""
    if not RETAIL.is_file():
        pytest.fail(f"the shared clip is missing: expected it at {RETAIL}")
    return cpu_frames(RETAIL, 60)


@pytest.mark.gpu
def test_the_nvenc_probe_leaves_the_callers_cuda_work_alone(
    retail: list[np.ndarray], tmp_path: Path
) -> None:
    """Where NVENC fails to open (an H100), the library leaves CUDA state of its own in the
    thread that tried. The probe tries in a thread of its own: a pipeline asking for NVENC, then
    the torch backend capturing its CUDA graph in this thread, run as they would alone (a
    warning here is an error)."""
    _nvenc._nvenc_unavailable_reason.cache_clear()
    if _nvenc.PyNvVideoCodecBackend().unavailable_reason(0, "h264") is None:
        pytest.skip("this GPU has NVENC")
    config = {
        "sources": [{"uri": str(ONE_BY_ONE), "decoder": "nvdec", "max_frames": 5}],
        "sinks": [{"type": "file", "path": str(tmp_path / "out.mp4"), "encoder": "nvenc"}],
    }
    assert Pipeline({"perf": {"interval_s": 0}, **config}).run().ok
    options = {"device": "cuda", "precision": "fp16", "batch_size": 2, "cache_dir": tmp_path}
    with Detector("yolox-nano", backend="torch", backend_options=options) as detector:
        (result,) = detector.detect(retail[:1])
    assert len(result.detections.xyxy) > 0


@pytest.mark.gpu
def test_rgb_to_nv12_on_the_gpu_is_opencvs(retail: list[np.ndarray]) -> None:
    image = retail[0]
    height, width = image.shape[:2]
    (rgb,) = from_bgr_images([image], "cuda:0")
    nv12 = rgb_to_nv12(rgb).cpu().numpy().astype(np.int16)
    i420 = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420).astype(np.int16)
    assert np.abs(nv12[:height] - i420[:height]).max() <= 1
    u = i420[height : height + height // 4].reshape(height // 2, width // 2)
    assert np.abs(nv12[height:].reshape(height // 2, width // 2, 2)[..., 0] - u).max() <= 1


@pytest.mark.gpu
def test_without_nvenc_nvdec_frames_go_to_the_cpu_encoder(
    nvenc_reason: str | None, tmp_path: Path
) -> None:
    if nvenc_reason is None:
        pytest.skip("this GPU has NVENC")
    config = {
        "sources": [{"uri": str(ONE_BY_ONE), "decoder": "nvdec", "max_frames": 20}],
        "sinks": [{"type": "file", "path": str(tmp_path / "out.mp4"), "encoder": "nvenc"}],
    }
    pipeline = Pipeline({"perf": {"interval_s": 0}, **config})
    assert pipeline.run().ok
    warnings = [m.text for m in pipeline.bus.history if m.type is MessageType.WARNING]
    assert warnings == [
        f"encoder 'nvenc' is not possible here: {nvenc_reason}; encoding on the CPU"
    ]
    assert [conversion.memory for conversion in pipeline.conversions] == ["cpu"]
    images, _, _ = decoded(tmp_path / "out_0.mp4")
    assert len(images) == 20 and min(map(psnr, images, cpu_frames(ONE_BY_ONE, 20))) > 30


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("codec", "extension"), [("h264", "mp4"), ("h265", "mp4"), ("h264", "mkv")]
)
def test_nvenc_files_from_gpu_frames_decode_close_to_their_source(
    nvenc: None, retail: list[np.ndarray], tmp_path: Path, codec: _nvenc.Codec, extension: str
) -> None:
    path = tmp_path / f"retail.{extension}"
    tensors = from_bgr_images(retail, "cuda:0")
    with _nvenc.NvencWriter(path, (1920, 1080), 30, codec=codec, crf=23) as writer:
        for tensor in tensors:
            writer.write(tensor)
    images, keys, rate = decoded(path)
    assert len(images) == 60 and rate == 30 and images[0].shape == (1080, 1920, 3)
    assert keys[0] and not any(keys[1:])  # one key frame every FILE_GOP (250) frames
    values = [psnr(image, source) for image, source in zip(images, retail, strict=True)]
    record(f"psnr_db_file_{codec}_{extension}_min", round(min(values), 2))
    assert min(values) > 30


@pytest.mark.gpu
def test_file_sink_keeps_nvdec_frames_on_the_gpu(nvenc: None, tmp_path: Path) -> None:
    config = {
        "sources": [{"uri": str(RETAIL), "decoder": "nvdec", "max_frames": 30}],
        "sinks": [{"type": "file", "path": str(tmp_path / "out.mp4"), "encoder": "nvenc"}],
    }
    pipeline = Pipeline({"perf": {"interval_s": 0}, **config})
    assert pipeline.run().ok
    assert pipeline.conversions == []
    sink: Any = pipeline.element("file0")
    assert sink.input_memory() == BGR_OR_CUDA
    assert not [m for m in pipeline.bus.history if m.type is MessageType.WARNING]
    images, _, _ = decoded(tmp_path / "out_0.mp4")
    assert len(images) == 30 and min(map(psnr, images, cpu_frames(RETAIL, 30))) > 30


@pytest.fixture
def served_clip(nvenc: None) -> Iterator[tuple[Pipeline, str]]:
    """The one-by-one clip decoded by NVDEC at its real speed, looped, served by the RTSP sink
    with NVENC."""
    config = {
        "sources": [{"uri": str(ONE_BY_ONE), "decoder": "nvdec", "real_time": True, "loop": True}],
        "sinks": [{"type": "rtsp", "host": "127.0.0.1", "port": 0, "encoder": "nvenc"}],
        "perf": {"interval_s": 0},
        "keep_alive": True,
    }
    pipeline = Pipeline(config)
    pipeline.start()
    try:
        sink: Any = pipeline.element("rtsp0")
        deadline = time.monotonic() + 20
        while not sink.paths and time.monotonic() < deadline:
            time.sleep(0.05)
        (source_id,) = sink.paths
        yield pipeline, sink.url(source_id)
    finally:
        pipeline.stop()
        assert pipeline.wait(30)


@pytest.mark.gpu
def test_rtsp_sink_on_nvenc_plays_close_to_its_source(
    served_clip: tuple[Pipeline, str],
) -> None:
    pipeline, url = served_clip
    received: list[np.ndarray] = []
    with av.open(url, options={"rtsp_transport": "tcp"}, timeout=(20, 20)) as container:
        for frame in container.decode(video=0):
            received.append(frame.to_ndarray(format="bgr24"))
            if len(received) == 20:
                break
    assert len(received) == 20
    assert pipeline.conversions == [] and not pipeline.bus.errors()
    # The client joined at some key frame: find it among the source's frames, then follow.
    source = cpu_frames(ONE_BY_ONE, 200)
    start = max(range(len(source)), key=lambda index: psnr(received[0], source[index]))
    values = [
        psnr(image, source[(start + offset) % len(source)]) for offset, image in enumerate(received)
    ]
    record("psnr_db_rtsp_h264_min", round(min(values), 2))
    assert min(values) > 30


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("codec", "preset", "low_latency"),
    [("h264", "ultrafast", True), ("h264", "veryfast", False), ("h265", "veryfast", False)],
)
def test_nvenc_rate_at_1080p(
    nvenc: None, retail: list[np.ndarray], codec: _nvenc.Codec, preset: str, low_latency: bool
) -> None:
    """Frames per second through one NVENC session, frames already on the GPU as RGB (the
    conversion to NV12 included), after a warm-up. A figure for the record, not a check."""
    tensors = from_bgr_images(retail, "cuda:0")
    encoder = _nvenc.NvencEncoder(
        1920, 1080, 30, codec=codec, preset=preset, bitrate_kbps=8000, low_latency=low_latency
    )
    units = sum(len(encoder.encode(tensor)) for tensor in tensors[:WARMUP_FRAMES])
    started = time.perf_counter()
    for index in range(RATE_FRAMES):
        units += len(encoder.encode(tensors[index % len(tensors)]))
    elapsed = time.perf_counter() - started
    units += len(encoder.flush())
    assert units == WARMUP_FRAMES + RATE_FRAMES
    mode = "live" if low_latency else "file"
    record(f"nvenc_fps_1080p_{codec}_{preset}_{mode}", round(RATE_FRAMES / elapsed, 1))
    # The conversion alone, for the share of the rate it takes.
    torch.cuda.synchronize()
    started = time.perf_counter()
    for index in range(RATE_FRAMES):
        encoder.nv12(tensors[index % len(tensors)])
    torch.cuda.synchronize()
    record("rgb_to_nv12_fps_1080p", round(RATE_FRAMES / (time.perf_counter() - started), 1))
