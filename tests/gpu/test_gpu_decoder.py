"""The NVDEC reader with a software decoder in NVDEC's place, and the ``decoder`` setting: what
falls back to the CPU, what is refused, and what is said on the bus."""

from __future__ import annotations

import ctypes
import importlib.util
import itertools
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
from software_decoding import ONE_BY_ONE, PARKING, RETAIL, SoftwareNv12Backend, encode, remux

from panoptes import MessageType, Pipeline
from panoptes.core.errors import ConfigError
from panoptes.media import _nvdec, gpu_image
from panoptes.media.reader import open_reader


def read(uri: Path | str, **kwargs: Any) -> tuple[Any, list[Any]]:
    reader = open_reader(str(uri), **kwargs)
    with reader:
        return reader, list(reader.frames())


@pytest.fixture(scope="module")
def derived_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("derived")
    return {
        "mkv": remux(ONE_BY_ONE, folder / "one-by-one-30.mkv", "matroska", packets=30),
        "h264": remux(ONE_BY_ONE, folder / "one-by-one-30.h264", "h264", packets=30),
        "mpeg4": encode(ONE_BY_ONE, folder / "one-by-one-12.mp4", "mpeg4", frames=12),
        "hevc": remux(RETAIL, folder / "retail-40.mkv", "matroska", packets=40),
        "mpegts": remux(ONE_BY_ONE, folder / "one-by-one-30.ts", "mpegts", packets=30),
    }


def read_sampled(uri: Path, keep: set[int], **kwargs: Any) -> tuple[Any, list[Any], dict[int, Any]]:
    """A reader after reading ``uri`` through, its frames' pts, and the frames at ``keep``."""
    reader = open_reader(str(uri), **kwargs)
    pts, kept = [], {}
    with reader:
        for frame in reader.frames():
            pts.append(frame.pts_s)
            if frame.index in keep:
                kept[frame.index] = frame
    return reader, pts, kept


@pytest.mark.parametrize("clip", ["h264", "hevc"])
def test_frames_are_nv12_tensors_with_the_cpu_readers_timing(
    software_nvdec: SoftwareNv12Backend, derived_clips: dict[str, Path], clip: str
) -> None:
    path = PARKING if clip == "h264" else derived_clips["hevc"]  # B-frames; 1080p HEVC
    keep = {0, 17, 39}
    cpu_reader, cpu_pts, cpu_frames = read_sampled(path, keep)
    reader, pts, frames = read_sampled(path, keep, decoder="nvdec")
    assert type(reader).__name__ == "NvdecReader" and reader.tensor_device == "cpu"
    assert len(pts) == len(cpu_pts) == (459 if clip == "h264" else 40)
    assert pts == cpu_pts and reader.corrupt_frames == 0
    width, height = cpu_reader.size_wh
    for index in keep:
        image = frames[index].image
        assert isinstance(image, torch.Tensor) and image.shape == (height * 3 // 2, width)
        assert frames[index].color_space == "bt601"
        (bgr,) = gpu_image.to_bgr_images([gpu_image.nv12_to_rgb(image)])
        difference = np.abs(bgr.astype(int) - cpu_frames[index].image.astype(int))
        assert difference.mean() < 1.5  # swscale interpolates chroma; NV12 repeats it
    assert reader.warnings == []


@pytest.mark.parametrize("clip", ["mp4", "hevc", "h264", "mpegts"])
def test_what_nvdec_is_given_is_a_whole_annexb_stream(
    derived_clips: dict[str, Path], clip: str
) -> None:
    """The bytes the NVDEC session submits, decoded by a decoder that has seen no container
    header (as NVDEC has not), give every picture the container's own decoding gives, and the
    pictures of the packets its edit list cuts (which the reader drops by their pts)."""
    path = PARKING if clip == "mp4" else derived_clips[clip]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        annexb = _nvdec.AnnexB(stream)
        units, cut = [], 0
        for packet in container.demux(stream):
            cut += packet.is_discard  # read first: the filter takes the packet's data
            units += annexb.convert(packet)
        units += annexb.convert(None)
        codec = stream.codec_context.name
    with av.open(str(path)) as container:
        expected = [f.to_ndarray(format="nv12") for f in container.decode(video=0)]
    decoder = av.CodecContext.create(codec, "r")
    decoded = []
    for data, _pts in units:
        for packet in decoder.parse(bytes(data)):
            decoded += decoder.decode(packet)
    for packet in decoder.parse(None):
        decoded += decoder.decode(packet)
    decoded += decoder.decode(None)
    assert len(decoded) == len(expected) + cut and cut == (8 if clip == "mp4" else 0)
    pictures = {f.to_ndarray(format="nv12").tobytes() for f in decoded}
    assert all(picture.tobytes() in pictures for picture in expected)


def test_nvdec_is_given_the_bytes_where_they_are() -> None:
    """A packet's bytes are submitted from the packet itself, a header joined to one from its
    own buffer: the address and size given to the decoder hold exactly those bytes."""
    with av.open(str(RETAIL)) as container:
        stream = container.streams.video[0]
        annexb = _nvdec.AnnexB(stream)
        units = annexb.convert(next(container.demux(stream)))
    assert isinstance(units[0][0], av.Packet)
    header = b"\x00\x00\x00\x01" + bytes(units[0][0])
    for data in (units[0][0], header):
        address, size = _nvdec._address(data)
        assert size == len(bytes(data)) and ctypes.string_at(address, size) == bytes(data)
    assert _nvdec._address(b"") == (0, 0)


def test_loops_and_drops_frames_as_the_cpu_reader(
    software_nvdec: SoftwareNv12Backend, derived_clips: dict[str, Path]
) -> None:
    stop = threading.Event()
    outputs = []
    for decoder in ("cpu", "nvdec"):
        reader = open_reader(
            str(derived_clips["mkv"]), decoder=decoder, loop=True, drop_frame_interval=4
        )
        frames = []
        with reader:
            for frame in reader.frames(stop):
                frames.append(frame)
                if len(frames) == 20:  # 30 frames a pass, every 4th: two passes and more
                    break
        outputs.append(frames)
    cpu, nvdec = outputs
    assert [f.pts_s for f in nvdec] == [f.pts_s for f in cpu]
    assert all(b.pts_s > a.pts_s for a, b in itertools.pairwise(nvdec))
    # Each new pass goes on with the pass before's decoder, drained at its end, and gives the
    # same pictures as the CPU's.
    assert len(software_nvdec.sessions) == 1 and software_nvdec.sessions[0].restarts == 2
    converted = gpu_image.to_bgr_images([gpu_image.nv12_to_rgb(f.image) for f in nvdec])
    for image, expected in zip(converted, cpu, strict=True):
        assert np.abs(image.astype(int) - expected.image.astype(int)).mean() < 1.5


def test_raw_h264_without_timestamps_is_timed_by_counting(
    software_nvdec: SoftwareNv12Backend, derived_clips: dict[str, Path]
) -> None:
    _, cpu = read(derived_clips["h264"])
    _, nvdec = read(derived_clips["h264"], decoder="nvdec")
    assert len(nvdec) == len(cpu) == 30
    assert [f.pts_s for f in nvdec] == pytest.approx([f.pts_s for f in cpu])


def test_packets_reach_the_tap_before_nvdec(
    software_nvdec: SoftwareNv12Backend, derived_clips: dict[str, Path]
) -> None:
    reader = open_reader(str(derived_clips["mkv"]), decoder="nvdec")
    taken: list[float] = []
    assert reader.set_packet_tap(lambda packet, offset_s: taken.append(offset_s))
    with reader:
        frames = sum(1 for _ in reader.frames())
    assert len(taken) == frames


@pytest.mark.parametrize(("decoder", "warned"), [("nvdec", True), ("auto", False)])
def test_a_codec_nvdec_does_not_take_is_decoded_on_the_cpu(
    software_nvdec: SoftwareNv12Backend,
    derived_clips: dict[str, Path],
    decoder: str,
    warned: bool,
) -> None:
    reader, frames = read(derived_clips["mpeg4"], decoder=decoder)
    assert len(frames) == 12 and all(isinstance(f.image, np.ndarray) for f in frames)
    assert frames[0].color_space is None and software_nvdec.sessions == []
    expected = [
        "decoder 'nvdec': NVDEC decodes H.264 and HEVC here, not mpeg4; this stream is "
        "decoded on the CPU"
    ]
    assert reader.warnings == (expected if warned else [])


@pytest.mark.parametrize("decoder", ["nvdec", "auto"])
def test_a_decoder_that_does_not_start_leaves_the_stream_to_the_cpu(
    monkeypatch: pytest.MonkeyPatch, decoder: str
) -> None:
    monkeypatch.setattr(_nvdec, "BACKEND", SoftwareNv12Backend(fail="CUDA_ERROR_NO_DEVICE"))
    reader, frames = read(PARKING, decoder=decoder)
    assert frames and all(isinstance(f.image, np.ndarray) for f in frames)
    # Unexpected where the GPU and library are there: said even for auto.
    assert reader.warnings == [
        "decoder 'nvdec': the hardware decoder did not start (CUDA_ERROR_NO_DEVICE); "
        "this stream is decoded on the CPU"
    ]


class NoGpu(SoftwareNv12Backend):
    def unavailable_reason(self, gpu_id: int) -> str | None:
        return "no CUDA GPU is visible"


def run(config: dict[str, Any]) -> tuple[Pipeline, Any]:
    pipeline = Pipeline({"perf": {"interval_s": 0}, **config})
    return pipeline, pipeline.run()


@pytest.mark.parametrize(("decoder", "warned"), [("nvdec", True), ("auto", False)])
def test_no_gpu_means_the_cpu_with_a_warning_for_nvdec(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, decoder: str, warned: bool
) -> None:
    monkeypatch.setattr(_nvdec, "BACKEND", NoGpu())
    source = {"uri": str(PARKING), "name": "parking", "decoder": decoder, "max_frames": 5}
    pipeline, summary = run(
        {"sources": [source], "sinks": [{"type": "jsonl", "path": str(tmp_path / "m.jsonl")}]}
    )
    assert summary.ok and summary.frames == 5 and pipeline.conversions == []
    warnings = [m for m in pipeline.bus.history if m.type is MessageType.WARNING]
    expected = (
        "sources[0]: decoder 'nvdec' is not possible here: no CUDA GPU is visible; "
        "decoding on the CPU"
    )
    assert [(m.origin, m.text) for m in warnings] == ([("parking", expected)] if warned else [])


def test_this_machine_says_why_nvdec_is_not_possible() -> None:
    reason = _nvdec.PyNvVideoCodecBackend().unavailable_reason(0)
    if reason is None:
        pytest.skip("NVDEC is there")
    assert "PyNvVideoCodec" in reason or "CUDA" in reason or "GPU" in reason


@pytest.mark.parametrize(
    ("uri", "what"),
    [
        ("test://ball?frames=3", "a generated test pattern"),
        ("{folder}", "a folder of images"),
        ("{folder}/*.png", "a set of images"),
    ],
)
def test_nvdec_for_a_source_without_video_is_refused(tmp_path: Path, uri: str, what: str) -> None:
    (tmp_path / "a.png").write_bytes(b"")  # never read: refused at build
    config = {"sources": [{"uri": uri.format(folder=tmp_path), "decoder": "nvdec"}]}
    with pytest.raises(ConfigError) as caught:
        Pipeline(config)
    assert caught.value.place == "sources[0].decoder"
    assert str(caught.value) == (
        f"sources[0].decoder: 'nvdec' decodes H.264 and HEVC video, and this source is {what}: "
        "leave decoder at 'cpu' (or set 'auto')"
    )


def test_auto_on_a_source_without_video_is_the_cpu() -> None:
    pipeline, summary = run({"sources": [{"uri": "test://ball?frames=3", "decoder": "auto"}]})
    assert summary.ok and summary.frames == 3 and pipeline.conversions == []


def test_a_test_source_has_no_decoder_setting() -> None:
    with pytest.raises(ConfigError, match="decoder"):
        Pipeline({"sources": [{"type": "test-source", "decoder": "nvdec"}]})


@pytest.mark.parametrize("decoder", ["cpu", "auto"])
def test_the_cpu_path_never_imports_torch(tmp_path: Path, decoder: str) -> None:
    if decoder == "auto" and importlib.util.find_spec("PyNvVideoCodec") is not None:
        pytest.skip("PyNvVideoCodec is installed: auto looks for a GPU with torch")
    config = {
        "sources": [{"uri": str(PARKING), "decoder": decoder, "max_frames": 3}],
        "mux": {"width": 320, "height": 320},
        "osd": {},
        "sinks": [
            {"type": "jsonl", "path": str(tmp_path / "m.jsonl")},
            {"type": "file", "path": str(tmp_path / "out.mp4")},
        ],
        "perf": {"interval_s": 0},
    }
    code = (
        "import json, sys\n"
        "import panoptes\n"
        f"summary = panoptes.Pipeline(json.loads({json.dumps(config)!r})).run()\n"
        "assert summary.ok and summary.frames == 3, summary\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "False"
