"""NVENC encoding (``panoptes.media._nvenc``) on a machine without it: the colour conversion, the
access units and their muxing into files, the sinks' fallback to the CPU encoder, and the whole
NVENC path with a software encoder standing in for the hardware one (libx264 and libx265 taking
the same NV12 tensors on torch's CPU device). ``tests/gpu/test_gpu_nvenc.py`` runs the hardware.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.video.codeccontext
import cv2
import numpy as np
import pytest
import skimage.data
import torch
import yaml
from media_clips import ONE_BY_ONE

from cli_tools import ffprobe as probe
from cli_tools import panoptes
from panoptes import Pipeline
from panoptes.config.deepstream.translate import translate_app_config
from panoptes.core.bus import MessageType
from panoptes.core.negotiation import BGR_OR_CUDA, CPU_ONLY
from panoptes.media import _nvenc
from panoptes.media.gpu_image import COLOR_SPACES, from_bgr_images, nv12_to_rgb, rgb_to_nv12
from panoptes.media.rtsp import H264Encoder
from panoptes.media.rtsp._h264 import join_annexb, split_annexb

# The tests share a small machine with other work: one thread is enough for them.
torch.set_num_threads(1)


# -- helpers ----------------------------------------------------------------------------------


def moving_frames(count: int, size_wh: tuple[int, int]) -> list[np.ndarray]:
    """A crop of the astronaut image panned right one step per frame: HWC uint8 BGR."""
    width, height = size_wh
    source = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    source = cv2.resize(source, (width + 2 * count, height))
    return [
        np.ascontiguousarray(source[:, 2 * index : 2 * index + width]) for index in range(count)
    ]


def psnr(first: np.ndarray, second: np.ndarray) -> float:
    error = float(np.mean((first.astype(np.float64) - second.astype(np.float64)) ** 2))
    return float(10 * np.log10(255.0**2 / max(error, 1e-10)))


def decode(path: Path) -> tuple[list[np.ndarray], list[bool], Fraction | None]:
    """Every frame of ``path`` as BGR, the key-frame flag of every packet, the average rate."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        keys = [packet.is_keyframe for packet in container.demux(stream) if packet.size]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        images = [frame.to_ndarray(format="bgr24") for frame in container.decode(stream)]
        return images, keys, stream.average_rate


def ffprobe(path: Path) -> dict[str, Any]:
    entries = "nb_read_frames,width,height,r_frame_rate,codec_name,codec_tag_string"
    probed: dict[str, Any] = probe(path, entries)
    return probed


def x264_access_units(frames: list[np.ndarray], fps: float, gop: int) -> list[tuple[bytes, bool]]:
    """The frames through the RTSP sink's CPU encoder: Annex B access units, as NVENC's."""
    height, width = frames[0].shape[:2]
    encoder = H264Encoder(width, height, fps, gop=gop, crf=18)
    units = [unit for image in frames for unit in encoder.encode(image)]
    return units + encoder.flush()


def x265_stream(frames: list[np.ndarray], gop: int) -> bytes:
    """The frames as one HEVC Annex B byte stream with parameter sets before each key frame."""
    height, width = frames[0].shape[:2]
    context = av.CodecContext.create("libx265", "w")
    assert isinstance(context, av.video.codeccontext.VideoCodecContext)
    context.width, context.height, context.pix_fmt = width, height, "yuv420p"
    context.time_base = Fraction(1, 15)
    context.options = {
        "x265-params": f"repeat-headers=1:keyint={gop}:min-keyint={gop}:bframes=0:"
        "pools=1:frame-threads=1:log-level=error"
    }
    data = bytearray()
    for index, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")
        frame.pts = index
        data += b"".join(bytes(packet) for packet in context.encode(frame))
    data += b"".join(bytes(packet) for packet in context.encode(None))
    return bytes(data)


class SoftwareSession:
    """libx264 or libx265 taking what NVENC would be given (an NV12 tensor of the session's size,
    contiguous, on the backend's device) and giving Annex B as NVENC does: parameter sets before
    every key frame, every ``gop`` frames, no B-frames."""

    def __init__(self, settings: _nvenc.EncoderSettings) -> None:
        self.settings = settings
        name = {"h264": "libx264", "h265": "libx265"}[settings.codec]
        context = av.CodecContext.create(name, "w")
        assert isinstance(context, av.video.codeccontext.VideoCodecContext)
        context.width, context.height = settings.width, settings.height
        context.pix_fmt = "yuv420p"
        context.time_base = 1 / settings.fps
        context.thread_count = 1
        quality = {"qp": str(settings.qp)}
        if settings.bitrate_kbps is not None:
            context.bit_rate = settings.bitrate_kbps * 1000
            quality = {}
        gop = settings.gop
        if settings.codec == "h264":
            params = f"repeat-headers=1:annexb=1:keyint={gop}:min-keyint={gop}:bframes=0"
            context.options = {"preset": "ultrafast", "x264-params": params, **quality}
        else:
            params = (
                f"repeat-headers=1:keyint={gop}:min-keyint={gop}:bframes=0:pools=1:"
                "frame-threads=1:log-level=error"
            )
            context.options = {"preset": "ultrafast", "x265-params": params, **quality}
        self._context = context
        self.frames = 0
        self.closed = False

    def encode(self, nv12: torch.Tensor) -> list[bytes]:
        height, width = self.settings.height, self.settings.width
        assert nv12.device.type == "cpu" and nv12.dtype == torch.uint8 and nv12.is_contiguous()
        assert tuple(nv12.shape) == (height * 3 // 2, width)
        planes = nv12.numpy()
        chroma = planes[height:].reshape(height // 2, width // 2, 2)
        i420 = np.concatenate(
            [planes[:height].ravel(), chroma[..., 0].ravel(), chroma[..., 1].ravel()]
        ).reshape(height * 3 // 2, width)
        frame = av.VideoFrame.from_ndarray(i420, format="yuv420p")
        frame.pts = self.frames
        self.frames += 1
        return [bytes(packet) for packet in self._context.encode(frame)]

    def flush(self) -> list[bytes]:
        return [bytes(packet) for packet in self._context.encode(None)]

    def close(self) -> None:
        self.closed = True


class SoftwareNvenc:
    """The backend the NVENC path finds: software sessions on torch's CPU device."""

    def __init__(self, fail_with: str | None = None) -> None:
        self.sessions: list[SoftwareSession] = []
        self._fail_with = fail_with

    def unavailable_reason(self, gpu_id: int, codec: _nvenc.Codec) -> str | None:
        return None

    def device(self, gpu_id: int) -> str:
        return "cpu"

    def open(self, settings: _nvenc.EncoderSettings, gpu_id: int) -> SoftwareSession:
        if self._fail_with is not None:
            raise RuntimeError(self._fail_with)
        session = SoftwareSession(settings)
        self.sessions.append(session)
        return session


@pytest.fixture
def software_nvenc(monkeypatch: pytest.MonkeyPatch) -> SoftwareNvenc:
    backend = SoftwareNvenc()
    monkeypatch.setattr(_nvenc, "BACKEND", backend)
    return backend


@pytest.fixture(scope="module")
def clip() -> Path:
    if not ONE_BY_ONE.is_file():
        pytest.fail(f"the shared clip is missing: expected it at {ONE_BY_ONE}")
    return ONE_BY_ONE


def clip_frames(clip: Path, count: int) -> list[np.ndarray]:
    with av.open(str(clip)) as container:
        images = []
        for frame in container.decode(video=0):
            images.append(frame.to_ndarray(format="bgr24"))
            if len(images) == count:
                return images
    raise AssertionError(f"{clip} has fewer than {count} frames")


def here_reason() -> str:
    reason = _nvenc.PyNvVideoCodecBackend().unavailable_reason(0, "h264")
    assert reason is not None, "this test is for a machine without NVENC"
    return reason


def read_rtsp(url: str, count: int, timeout_s: float = 30) -> list[np.ndarray]:
    """``count`` frames decoded by PyAV (FFmpeg's RTSP client, over TCP), as BGR arrays."""
    images: list[np.ndarray] = []
    options = {"rtsp_transport": "tcp"}
    with av.open(url, options=options, timeout=(timeout_s, timeout_s)) as container:
        for frame in container.decode(video=0):
            images.append(frame.to_ndarray(format="bgr24"))
            if len(images) == count:
                break
    return images


def serving(config: dict[str, Any]) -> Iterator[tuple[Pipeline, Any]]:
    pipeline = Pipeline({**config, "perf": {"interval_s": 0}, "keep_alive": True})
    pipeline.start()
    try:
        sink: Any = pipeline.element("rtsp0")
        deadline = time.monotonic() + 20
        while not sink.paths and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sink.paths, [str(message) for message in pipeline.bus.history]
        yield pipeline, sink
    finally:
        pipeline.stop()
        assert pipeline.wait(30)


PATTERN = {
    "type": "test-source",
    "name": "gate",
    "width": 320,
    "height": 180,
    "fps": 30,
    "frames": None,
    "real_time": True,
}


# -- RGB to NV12 on torch ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["astronaut", "noise"])
def test_rgb_to_nv12_is_opencvs_i420_within_a_grey_level(kind: str) -> None:
    if kind == "astronaut":
        bgr = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    else:
        bgr = np.random.default_rng(7).integers(0, 256, (90, 160, 3), dtype=np.uint8)
    height, width = bgr.shape[:2]
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).astype(np.int16)
    quarter = height * width // 4
    chroma = i420[height:].ravel()
    u = chroma[:quarter].reshape(height // 2, width // 2)
    v = chroma[quarter:].reshape(height // 2, width // 2)

    (rgb,) = from_bgr_images([bgr], "cpu")
    nv12 = rgb_to_nv12(rgb).numpy().astype(np.int16)
    assert nv12.shape == (height * 3 // 2, width)
    uv = nv12[height:].reshape(height // 2, width // 2, 2)
    for mine, opencv in ((nv12[:height], i420[:height]), (uv[..., 0], u), (uv[..., 1], v)):
        difference = np.abs(mine - opencv)
        assert difference.max() <= 1 and difference.mean() < 0.5


@pytest.mark.parametrize("color_space", COLOR_SPACES)
def test_rgb_to_nv12_and_back_keeps_flat_colours(color_space: str) -> None:
    """Colours constant over each 2 × 2 block lose nothing to the chroma subsampling: the round
    trip through NV12 gives them back within the rounding of the two conversions."""
    blocks = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (2, 3, 12, 16), np.uint8))
    rgb = blocks.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    nv12 = rgb_to_nv12(rgb, color_space)
    assert nv12.shape == (2, 36, 32)
    back = nv12_to_rgb(nv12, color_space)
    # Limited range squeezes 256 levels into 220, which rounds a level or two away.
    limit = 1 if color_space.endswith("-full") else 3
    assert (back.int() - rgb.int()).abs().max() <= limit


def test_rgb_to_nv12_refuses_odd_sizes_and_other_types() -> None:
    with pytest.raises(ValueError, match="even width and height"):
        rgb_to_nv12(torch.zeros((3, 9, 16), dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        rgb_to_nv12(torch.zeros((3, 8, 16), dtype=torch.float32))
    with pytest.raises(ValueError, match="unknown colour space 'bt999'"):
        rgb_to_nv12(torch.zeros((3, 8, 16), dtype=torch.uint8), "bt999")


# -- access units ------------------------------------------------------------------------------


def test_access_units_come_apart_from_one_byte_stream() -> None:
    """An encoder call may give several frames at once: they come back one by one, the key
    frames (IDR with SPS and PPS) flagged."""
    units = x264_access_units(moving_frames(12, (160, 96)), 15, gop=5)
    assert [key for _, key in units] == [index % 5 == 0 for index in range(12)]
    found, rest = _nvenc.access_units(b"".join(unit for unit, _ in units), "h264")
    # The same NAL units (start codes become four bytes) and key frames.
    assert [(split_annexb(unit), key) for unit, key in found] == [
        (split_annexb(unit), key) for unit, key in units
    ]
    assert rest == b""


def test_parameter_sets_sent_apart_wait_for_their_frame() -> None:
    ((first, key), (second, _)) = x264_access_units(moving_frames(2, (160, 96)), 15, gop=5)[:2]
    assert key
    # The SPS and PPS of the first access unit, alone: no picture yet.
    parameter_sets = join_annexb([nal for nal in split_annexb(first) if nal[0] & 0x1F in (7, 8)])
    found, rest = _nvenc.access_units(parameter_sets, "h264")
    assert found == [] and rest == parameter_sets
    found, rest = _nvenc.access_units(rest + first + second, "h264")
    assert [k for _, k in found] == [True, False] and rest == b""


def test_hevc_access_units_and_random_access_points() -> None:
    stream = x265_stream(moving_frames(9, (160, 96)), gop=4)
    units, rest = _nvenc.access_units(stream, "h265")
    assert rest == b""
    assert [key for _, key in units] == [index % 4 == 0 for index in range(9)]
    # VPS (32), SPS (33) and PPS (34) lead each key frame.
    for unit, key in units:
        first_nal_type = (unit[4] >> 1) & 0x3F
        assert (first_nal_type == 32) == key


# -- muxing Annex B into files -----------------------------------------------------------------


@pytest.mark.parametrize(("extension", "tag"), [("mp4", "avc1"), ("mkv", None), ("mov", "avc1")])
def test_annexb_h264_muxed_into_a_file_plays_every_frame(
    tmp_path: Path, extension: str, tag: str | None
) -> None:
    frames = moving_frames(30, (320, 180))
    units = x264_access_units(frames, 15, gop=10)
    path = tmp_path / f"annexb.{extension}"
    muxer = _nvenc.AccessUnitMuxer(path, (320, 180), 15, "h264")
    for access_unit, keyframe in units:
        muxer.mux(access_unit, keyframe)
    muxer.close()
    assert muxer.frames_written == 30 and muxer.closed

    probed = ffprobe(path)
    assert probed["nb_read_frames"] == "30" and probed["r_frame_rate"] == "15/1"
    assert (probed["codec_name"], probed["width"], probed["height"]) == ("h264", 320, 180)
    if tag is not None:
        assert probed["codec_tag_string"] == tag
    images, keys, rate = decode(path)
    assert rate == 15 and len(images) == 30
    assert keys == [index % 10 == 0 for index in range(30)]
    assert min(psnr(image, frame) for image, frame in zip(images, frames, strict=True)) > 30
    with av.open(str(path)) as container:
        extradata = container.streams.video[0].codec_context.extradata or b""
    # The container's own form of the parameter sets (avcC), made from the Annex B ones.
    assert extradata[:1] == b"\x01"


def test_annexb_hevc_muxed_into_mp4(tmp_path: Path) -> None:
    frames = moving_frames(20, (320, 180))
    units, _ = _nvenc.access_units(x265_stream(frames, gop=8), "h265")
    path = tmp_path / "annexb.mp4"
    muxer = _nvenc.AccessUnitMuxer(path, (320, 180), 30000 / 1001, "h265")
    for access_unit, keyframe in units:
        muxer.mux(access_unit, keyframe)
    muxer.close()
    probed = ffprobe(path)
    assert probed["codec_name"] == "hevc" and probed["nb_read_frames"] == "20"
    # hev1: parameter sets may come in band too, as they do here.
    assert probed["codec_tag_string"] == "hev1" and probed["r_frame_rate"] == "30000/1001"
    images, keys, _ = decode(path)
    assert len(images) == 20 and keys == [index % 8 == 0 for index in range(20)]


def test_the_muxer_refuses_an_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"out\.avi: unknown video file extension"):
        _nvenc.AccessUnitMuxer(tmp_path / "out.avi", (320, 180), 15, "h264")


# -- settings ----------------------------------------------------------------------------------


def test_live_and_file_settings() -> None:
    live = _nvenc.EncoderSettings(1280, 720, Fraction(30), gop=30, bitrate_kbps=4000)
    options = live.options(1)
    assert options["gpuid"] == 1 and options["codec"] == "h264"
    assert options["tuning_info"] == "ultra_low_latency" and options["bf"] == 0
    assert options["gop"] == options["idrperiod"] == 30 and options["repeatspspps"] == 1
    assert options["rc"] == "cbr" and options["bitrate"] == options["vbvbufsize"] == 4_000_000
    archive = _nvenc.EncoderSettings(
        1920, 1080, Fraction(30000, 1001), codec="h265", qp=20, low_latency=False
    )
    options = archive.options(0)
    assert options["codec"] == "hevc" and options["tuning_info"] == "high_quality"
    assert options["rc"] == "constqp" and options["constqp"] == 20 and options["fps"] == 30
    assert [_nvenc.nvenc_preset(name) for name in ("ultrafast", "veryfast", "medium")] == [
        "P1",
        "P3",
        "P5",
    ]
    with pytest.raises(ValueError, match="unknown preset 'quick'"):
        _nvenc.nvenc_preset("quick")


def test_nvencs_errors_are_said_in_one_line() -> None:
    # What PyNvVideoCodec 2.2.4 raised opening an encoder on an H100, which has no NVENC unit.
    h100 = (
        "PyNvEncoderCaps : \nError code : 2\nError Type : m_nvenc.nvEncOpenEncodeSessionEx("
        "&encodeSessionExParams, &hEncoder) returned error 2\nat /project/src/PyNvVideoCodec/"
        "src/PyNvEncoder.cpp:1103\n"
    )
    assert _nvenc.nvenc_error_text(RuntimeError(h100)) == (
        "nvEncOpenEncodeSessionEx returned NV_ENC_ERR_UNSUPPORTED_DEVICE (2): this GPU has no "
        "NVENC unit (data-centre GPUs such as the A100, H100 and H200)"
    )
    busy = h100.replace("error 2", "error 10")
    assert _nvenc.nvenc_error_text(RuntimeError(busy)) == (
        "nvEncOpenEncodeSessionEx returned NV_ENC_ERR_OUT_OF_MEMORY (10)"
    )
    assert _nvenc.nvenc_error_text(RuntimeError("Driver version is too old\nmore")) == (
        "Driver version is too old"
    )


@pytest.mark.parametrize(
    "given",
    [
        [{"data": b"\x00\x00\x01\x09", "timestamp": 0, "picture_type": 3}, {"data": b""}],
        b"\x00\x00\x01\x09",
        [0, 0, 1, 9],
        np.array([0, 0, 1, 9], np.uint8),
    ],
    ids=["packets-2.2", "bytes", "byte-values", "array"],
)
def test_every_form_of_bitstream_the_library_gives(given: Any) -> None:
    assert _nvenc._bitstreams(given) == [b"\x00\x00\x01\x09"]
    assert _nvenc._bitstreams([]) == _nvenc._bitstreams(b"") == []


def test_the_reason_nvenc_is_unavailable_here() -> None:
    reason = here_reason()
    assert "PyNvVideoCodec" in reason or "PyTorch" in reason or "GPU" in reason


# -- the NVENC path, with the software stand-in -----------------------------------------------


@pytest.mark.parametrize("form", ["bgr", "rgb-tensor", "nv12-tensor"])
def test_nvenc_writer_makes_a_file_close_to_its_frames(
    tmp_path: Path, software_nvenc: SoftwareNvenc, form: str
) -> None:
    frames = moving_frames(24, (320, 180))
    path = tmp_path / "nvenc.mp4"
    with _nvenc.NvencWriter(path, (320, 180), 12, crf=18) as writer:
        for image in frames:
            (rgb,) = from_bgr_images([image], "cpu")
            given: np.ndarray | torch.Tensor = {
                "rgb-tensor": rgb,
                "nv12-tensor": rgb_to_nv12(rgb),
            }.get(form, image)
            writer.write(given)
    (session,) = software_nvenc.sessions
    assert session.closed and session.settings.gop == _nvenc.FILE_GOP
    assert not session.settings.low_latency and session.settings.qp == 18
    assert writer.frames_written == 24
    assert ffprobe(path)["nb_read_frames"] == "24"
    images, keys, rate = decode(path)
    assert rate == 12 and keys[0] and not any(keys[1:])
    assert min(psnr(image, frame) for image, frame in zip(images, frames, strict=True)) > 30


def test_an_odd_size_is_padded_and_other_sizes_resized(
    tmp_path: Path, software_nvenc: SoftwareNvenc
) -> None:
    frames = moving_frames(6, (321, 181))
    path = tmp_path / "odd.mkv"
    with _nvenc.NvencWriter(path, (321, 181), 10) as writer:
        for image in frames:
            writer.write(image)
        (rgb,) = from_bgr_images([cv2.resize(frames[-1], (642, 362))], "cpu")
        writer.write(rgb)  # twice the size, as a tensor
    probed = ffprobe(path)
    assert (probed["width"], probed["height"], probed["nb_read_frames"]) == (322, 182, "7")
    images, _, _ = decode(path)
    assert psnr(images[-1][:181, :321], frames[-1]) > 30
    # The padding repeats the last column and row.
    assert psnr(images[0][:181, 321], images[0][:181, 320]) > 30


def test_the_nvenc_encoder_refuses_what_it_cannot_take(software_nvenc: SoftwareNvenc) -> None:
    encoder = _nvenc.NvencEncoder(64, 48, 10)
    with pytest.raises(ValueError, match="HWC uint8 BGR"):
        encoder.encode(np.zeros((48, 64), np.uint8))
    with pytest.raises(ValueError, match="uint8 tensor"):
        encoder.encode(torch.zeros((3, 48, 64)))
    with pytest.raises(ValueError, match=r"RGB \[3, H, W\] or NV12"):
        encoder.encode(torch.zeros((4, 48, 64), dtype=torch.uint8))
    with pytest.raises(ValueError, match="crf must be 0-51"):
        _nvenc.NvencEncoder(64, 48, 10, crf=60)
    assert encoder.flush() == [] and encoder.flush() == []
    with pytest.raises(ValueError, match="flushed"):
        encoder.encode(np.zeros((48, 64, 3), np.uint8))


def test_file_sink_on_nvenc(tmp_path: Path, clip: Path, software_nvenc: SoftwareNvenc) -> None:
    pipeline = Pipeline(
        {
            "sources": [{"uri": str(clip), "max_frames": 25}],
            "sinks": [{"type": "file", "path": "out/cam.mp4", "encoder": "nvenc", "crf": 20}],
        },
        base_dir=tmp_path,
    )
    summary = pipeline.run()
    assert summary.ok, [str(message) for message in summary.errors]
    sink: Any = pipeline.element("file0")
    assert sink.input_memory() == BGR_OR_CUDA
    assert not [m for m in pipeline.bus.history if m.type is MessageType.WARNING]
    (session,) = software_nvenc.sessions
    assert (session.settings.width, session.settings.height) == (768, 432)
    path = tmp_path / "out" / "cam_0.mp4"
    assert ffprobe(path)["nb_read_frames"] == "25" and ffprobe(path)["r_frame_rate"] == "10/1"
    images, _, _ = decode(path)
    assert min(map(psnr, images, clip_frames(clip, 25))) > 30


def test_a_session_that_does_not_start_leaves_that_file_to_the_cpu(
    tmp_path: Path, clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_nvenc, "BACKEND", SoftwareNvenc(fail_with="no free NVENC session"))
    pipeline = Pipeline(
        {
            "sources": [{"uri": str(clip), "max_frames": 12}],
            "sinks": [{"type": "file", "path": "cam.mkv", "encoder": "nvenc"}],
        },
        base_dir=tmp_path,
    )
    assert pipeline.run().ok
    warnings = [str(m) for m in pipeline.bus.history if m.type is MessageType.WARNING]
    assert len(warnings) == 1 and "no free NVENC session" in warnings[0], warnings
    assert "encoding on the CPU" in warnings[0]
    assert ffprobe(tmp_path / "cam_0.mkv")["nb_read_frames"] == "12"


def test_rtsp_sink_on_nvenc_serves_what_it_was_given(software_nvenc: SoftwareNvenc) -> None:
    config = {
        "sources": [PATTERN],
        "sinks": [{"type": "rtsp", "host": "127.0.0.1", "port": 0, "encoder": "nvenc"}],
    }
    for pipeline, sink in serving(config):
        (source_id,) = sink.paths
        images = read_rtsp(sink.url(source_id), 20)
        assert len(images) == 20 and images[0].shape == (180, 320, 3)
        (session,) = software_nvenc.sessions
        assert session.settings.low_latency and session.settings.gop == 30
        assert session.settings.bitrate_kbps == 4000
        assert sink.input_memory() == BGR_OR_CUDA
        assert not pipeline.bus.errors()


# -- the fallback to the CPU encoder, on this machine -----------------------------------------


def test_nvenc_asked_for_here_warns_with_the_reason_and_writes_with_the_cpu(
    tmp_path: Path, clip: Path
) -> None:
    config = {
        "sources": [{"uri": str(clip), "max_frames": 30}],
        "sinks": [{"type": "file", "path": "out.mp4", "encoder": "nvenc"}],
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = panoptes("run", "config.yaml", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    said = result.stdout + result.stderr
    assert f"encoder 'nvenc' is not possible here: {here_reason()}; encoding on the CPU" in said
    probed = ffprobe(tmp_path / "out_0.mp4")
    assert probed["nb_read_frames"] == "30" and probed["codec_name"] == "h264"
    assert (probed["width"], probed["height"], probed["r_frame_rate"]) == (768, 432, "10/1")


def test_auto_falls_back_quietly(tmp_path: Path, clip: Path) -> None:
    pipeline = Pipeline(
        {
            "sources": [{"uri": str(clip), "max_frames": 10}],
            "sinks": [{"type": "file", "path": "out.mkv", "encoder": "auto", "codec": "h265"}],
        },
        base_dir=tmp_path,
    )
    assert pipeline.run().ok
    assert not [m for m in pipeline.bus.history if m.type is MessageType.WARNING]
    infos = [m for m in pipeline.bus.history if m.data.get("encoder") == "cpu"]
    assert len(infos) == 1 and infos[0].type is MessageType.INFO
    assert infos[0].data["reason"] == _nvenc.PyNvVideoCodecBackend().unavailable_reason(0, "h265")
    sink: Any = pipeline.element("file0")
    assert sink.input_memory() == CPU_ONLY
    assert ffprobe(tmp_path / "out_0.mkv")["codec_name"] == "hevc"


def test_rtsp_sink_falls_back_with_a_warning() -> None:
    config = {
        "sources": [PATTERN],
        "sinks": [{"type": "rtsp", "host": "127.0.0.1", "port": 0, "encoder": "nvenc"}],
    }
    for pipeline, sink in serving(config):
        warnings = [str(m) for m in pipeline.bus.history if m.type is MessageType.WARNING]
        assert len(warnings) == 1 and here_reason() in warnings[0], warnings
        (source_id,) = sink.paths
        assert len(read_rtsp(sink.url(source_id), 10)) == 10
        assert isinstance(sink._encoders[source_id], H264Encoder)


# -- DeepStream configurations -----------------------------------------------------------------


def test_deepstream_enc_type_0_asks_for_hardware_encoding(tmp_path: Path, clip: Path) -> None:
    (tmp_path / "app.txt").write_text(
        f"[source0]\nenable=1\ntype=3\nuri=file://{clip}\n"
        "[sink0]\nenable=1\ntype=3\ncontainer=1\noutput-file=hw.mp4\nenc-type=0\n"
        "[sink1]\nenable=1\ntype=4\nrtsp-port=8554\nenc-type=0\n"
        "[sink2]\nenable=1\ntype=3\ncontainer=2\noutput-file=sw.mkv\nenc-type=1\n"
    )
    translation = translate_app_config(tmp_path / "app.txt")
    sinks = translation.config["sinks"]
    assert [sink.get("encoder", "cpu") for sink in sinks] == ["auto", "auto", "cpu"]
    assert not [note for note in translation.notes if "enc-type" in str(note)]


def test_cli_inspect_lists_the_encoder() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "panoptes.cli", "inspect", "file"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "encoder" in result.stdout and "nvenc" in result.stdout
