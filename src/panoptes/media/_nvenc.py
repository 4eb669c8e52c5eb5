"""H.264 and HEVC encoded by the GPU's hardware encoder (NVENC) through PyNvVideoCodec, for the
file and RTSP sinks (``encoder: nvenc | auto``).

Frames come as numpy BGR arrays (uploaded) or as uint8 tensors: RGB ``[3, H, W]``, what the mux
gives on the GPU, or NV12 ``[H * 3 / 2, W]``. They are converted to NV12 on the device with
torch (BT.601, limited range: the CPU path's colours, see
:func:`panoptes.media.gpu_image.rgb_to_nv12`) and encoded from device memory. What comes back is
Annex B access units, SPS and PPS (and VPS) before every IDR, no B-frames: what the RTSP mounts
take as they are, and what :class:`AccessUnitMuxer` writes into mp4, mov and mkv files, whose
muxers turn Annex B into their own form themselves.

The hardware sits behind :data:`BACKEND`, which tests replace with a software encoder taking the
same NV12 tensors on torch's CPU device. NVENC asked for by name (``encoder: nvenc``) where it
cannot run gives a warning naming the reason and the CPU encoder; ``encoder: auto`` takes the CPU
quietly (said once at info level). Data-centre GPUs without an NVENC unit (A100, H100, H200)
are found by opening a small encoder once, as the library's import succeeds there.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import av
import av.container
import numpy as np

from panoptes.core.bus import Message, MessageType
from panoptes.core.gpu_wait import set_gpu_wait
from panoptes.media._nvdec import video_codec_unavailable_reason
from panoptes.media.rtsp._h264 import join_annexb, split_annexb
from panoptes.media.rtsp.encoder import check_stream_settings
from panoptes.media.writer import (
    CONTAINER_FORMATS,
    PRESETS,
    EncodedFile,
    container_format,
    frame_rate,
)

if TYPE_CHECKING:
    import torch

    from panoptes.core.element import Element

__all__ = [
    "BACKEND",
    "AccessUnitMuxer",
    "EncoderSettings",
    "NvencEncoder",
    "NvencWriter",
    "PyNvVideoCodecBackend",
    "access_units",
    "choose_nvenc",
    "nvenc_error_text",
    "nvenc_preset",
]

Codec = Literal["h264", "h265"]
Encoder = Literal["cpu", "auto", "nvenc"]
"""What a video sink encodes with: ``cpu`` (libx264/libx265), ``nvenc``, or ``auto`` (NVENC where
there is one)."""

NVENC_CODECS: dict[Codec, str] = {"h264": "h264", "h265": "hevc"}
"""The sinks' codec names and PyNvVideoCodec's (and FFmpeg's) for them."""

#: libx264's speed presets and the NVENC presets (P1 fastest, P7 best) of about the same place
#: on the speed-quality scale, so that one ``preset`` property serves both encoders.
_NVENC_PRESETS = {
    "ultrafast": "P1",
    "superfast": "P2",
    "veryfast": "P3",
    "faster": "P3",
    "fast": "P4",
    "medium": "P5",
    "slow": "P6",
    "slower": "P7",
    "veryslow": "P7",
    "placebo": "P7",
}

#: Frames between key frames in files: libx264's default keyint, so that a file seeks alike
#: from either encoder.
FILE_GOP = 250

# The size of the encoder opened to find out whether the GPU has NVENC at all.
_PROBE_WH = (320, 240)

# nal_unit_type values (H.264 table 7-1, HEVC table 7-1) that delimit access units and mark
# random access points.
_H264_VCL = range(1, 6)
_H264_IDR = 5
_H264_AU_PREFIXES = frozenset({6, 7, 8, 9, *range(14, 19)})  # SEI, SPS, PPS, AUD, reserved
_HEVC_VCL = range(0, 32)
_HEVC_IRAP = range(16, 24)  # BLA, IDR, CRA: a decoder can start there
_HEVC_AU_PREFIXES = frozenset({32, 33, 34, 35, 39, *range(41, 45), *range(48, 56)})


def nvenc_preset(preset: str) -> str:
    """The NVENC preset (``P1``-``P7``) for a libx264 speed preset (``ultrafast`` → ``P1``)."""
    if preset not in _NVENC_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    return _NVENC_PRESETS[preset]


def access_units(data: bytes, codec: Codec) -> tuple[list[tuple[bytes, bool]], bytes]:
    """The access units in the Annex B byte stream ``data``, each with whether it is a random
    access point (an IDR; for HEVC any IRAP picture), as ``(Annex B bytes, key frame)`` pairs,
    and what follows the last of them without a picture yet (parameter sets sent apart from
    their frame), to go before the next bytes.

    An encoder's output for one call may hold several frames, or one frame in several NAL units:
    a new access unit begins at the first slice of a picture, or at the parameter sets, SEI or
    delimiter before it (H.264 7.4.1.2.3, HEVC 7.4.2.4.4).
    """
    units: list[tuple[bytes, bool]] = []
    current: list[bytes] = []
    keyframe = has_picture = False
    for nal in split_annexb(data):
        starts_picture, is_picture, is_key = _nal_role(nal, codec)
        begins_next = starts_picture or (not is_picture and _starts_access_unit(nal, codec))
        if has_picture and begins_next:
            units.append((join_annexb(current), keyframe))
            current, keyframe, has_picture = [], False, False
        current.append(nal)
        has_picture = has_picture or is_picture
        keyframe = keyframe or is_key
    if has_picture:
        units.append((join_annexb(current), keyframe))
        current = []
    return units, join_annexb(current)


def _nal_role(nal: bytes, codec: Codec) -> tuple[bool, bool, bool]:
    """(first slice of a picture, a slice, a random access point's slice) for one NAL unit."""
    if codec == "h264":
        kind = nal[0] & 0x1F
        is_slice = kind in _H264_VCL
        # first_mb_in_slice is the slice header's first field, ue(v): a leading 1 bit is 0.
        first = is_slice and len(nal) > 1 and bool(nal[1] & 0x80)
        return first, is_slice, kind == _H264_IDR
    kind = (nal[0] >> 1) & 0x3F
    is_slice = kind in _HEVC_VCL
    # first_slice_segment_in_pic_flag follows the two-byte NAL unit header.
    first = is_slice and len(nal) > 2 and bool(nal[2] & 0x80)
    return first, is_slice, kind in _HEVC_IRAP


def _starts_access_unit(nal: bytes, codec: Codec) -> bool:
    if codec == "h264":
        return nal[0] & 0x1F in _H264_AU_PREFIXES
    return (nal[0] >> 1) & 0x3F in _HEVC_AU_PREFIXES


@dataclass(frozen=True)
class EncoderSettings:
    """What an NVENC session is opened with.

    ``width`` and ``height`` are even (4:2:0); ``qp`` (constant quantiser, 0-51) applies when
    ``bitrate_kbps`` is None; ``low_latency``: NVENC's ultra-low-latency tuning, for live
    streaming (RTSP), else its high-quality tuning (files).
    """

    width: int
    height: int
    fps: Fraction
    codec: Codec = "h264"
    gop: int = 30
    bitrate_kbps: int | None = None
    qp: int = 23
    preset: str = "P3"
    low_latency: bool = True

    def options(self, gpu_id: int) -> dict[str, Any]:
        """``PyNvVideoCodec.CreateEncoder``'s keyword arguments."""
        options: dict[str, Any] = {
            "codec": NVENC_CODECS[self.codec],
            "gpuid": gpu_id,
            "fps": max(1, round(self.fps)),  # the rate control's; the container keeps the exact
            "preset": self.preset,
            "tuning_info": "ultra_low_latency" if self.low_latency else "high_quality",
            # IDR at every key frame (an I-frame that is not an IDR is no place to join),
            # parameter sets before each, and no B-frames: access units come out in the order
            # frames go in, so a frame's pts is its index, and nothing waits for a later frame.
            "gop": self.gop,
            "idrperiod": self.gop,
            "repeatspspps": 1,
            "bf": 0,
        }
        if self.bitrate_kbps is None:
            options.update(rc="constqp", constqp=self.qp)
        else:
            bits = self.bitrate_kbps * 1000
            # A one-second buffer, as the CPU encoder's, keeps the rate steady for a network
            # link; files may vary more between scenes.
            rate_control = "cbr" if self.low_latency else "vbr"
            options.update(rc=rate_control, bitrate=bits, maxbitrate=bits, vbvbufsize=bits)
        return options


class EncoderSession(Protocol):
    """Encodes NV12 pictures of one size into an H.264 or HEVC byte stream."""

    def encode(self, nv12: torch.Tensor) -> list[bytes]:
        """Annex B bytes ready after ``nv12`` (uint8 ``[H * 3 / 2, W]`` on the backend's
        device): the frame's access unit, with those of frames held back before, or none."""

    def flush(self) -> list[bytes]:
        """End of stream: the bytes of the frames still held back."""

    def close(self) -> None:
        """Release the encoder."""


class EncoderBackend(Protocol):
    """Where encoder sessions come from: NVENC here, a software stand-in in tests."""

    def unavailable_reason(self, gpu_id: int, codec: Codec) -> str | None:
        """Why it cannot encode ``codec`` on GPU ``gpu_id``, or None when it can."""

    def device(self, gpu_id: int) -> str:
        """The torch device its input tensors must be on (``cuda:0``)."""

    def open(self, settings: EncoderSettings, gpu_id: int) -> EncoderSession:
        """A session; raises when the encoder cannot start."""


def _first_line(error: BaseException) -> str:
    # PyNvVideoCodec's import errors carry pages of troubleshooting after their first line.
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


# NVENCSTATUS values (nvEncodeAPI.h) that a session's opening gives, by what they mean here.
_NVENC_STATUS = {
    1: "NV_ENC_ERR_NO_ENCODE_DEVICE",
    2: "NV_ENC_ERR_UNSUPPORTED_DEVICE",
    3: "NV_ENC_ERR_INVALID_ENCODERDEVICE",
    4: "NV_ENC_ERR_INVALID_DEVICE",
    5: "NV_ENC_ERR_DEVICE_NOT_EXIST",
    8: "NV_ENC_ERR_INVALID_PARAM",
    10: "NV_ENC_ERR_OUT_OF_MEMORY",
    12: "NV_ENC_ERR_UNSUPPORTED_PARAM",
    15: "NV_ENC_ERR_INVALID_VERSION",
    21: "NV_ENC_ERR_INCOMPATIBLE_CLIENT_KEY",
}
_NO_NVENC_UNIT = (1, 2)
_STATUS_LINE = re.compile(r"(\w+)\(.*\) returned error (\d+)")


def nvenc_error_text(error: BaseException) -> str:
    """What PyNvVideoCodec's ``error`` says, in one line: the NVENC call that failed and its
    status by name where the message has them (its first line names only the C++ class:
    ``PyNvEncoderCaps :``), else its first line."""
    found = _STATUS_LINE.search(str(error))
    if found is None:
        return _first_line(error)
    call, code = found.group(1), int(found.group(2))
    status = _NVENC_STATUS.get(code, "NVENCSTATUS")
    text = f"{call} returned {status} ({code})"
    if code in _NO_NVENC_UNIT:
        text += ": this GPU has no NVENC unit (data-centre GPUs such as the A100, H100 and H200)"
    return text


def _bitstreams(result: Any) -> list[bytes]:
    """What ``Encode``/``EndEncode`` gave, as byte strings: a list of packets (dicts whose
    ``data`` is the bitstream, in PyNvVideoCodec 2.2) or one buffer, or list of byte values
    (earlier versions)."""
    if isinstance(result, bytes | bytearray | memoryview | np.ndarray) or (
        isinstance(result, list) and result and isinstance(result[0], int)
    ):
        data = bytes(result)
        return [data] if data else []
    chunks = []
    for item in result or ():
        data = bytes(item["data"] if isinstance(item, dict) else item)
        if data:
            chunks.append(data)
    return chunks


class _PyNvVideoCodecSession:
    """One NVENC encoder (``PyNvVideoCodec.CreateEncoder``) taking NV12 from device memory."""

    def __init__(self, settings: EncoderSettings, gpu_id: int) -> None:
        import PyNvVideoCodec as nvc

        set_gpu_wait()
        self._encoder: Any = nvc.CreateEncoder(
            settings.width, settings.height, "NV12", False, **settings.options(gpu_id)
        )

    def encode(self, nv12: torch.Tensor) -> list[bytes]:
        import torch

        # The encoder copies the picture on its own CUDA stream: the conversion queued on
        # torch's must be done first.
        torch.cuda.current_stream(nv12.device).synchronize()
        return _bitstreams(self._encoder.Encode(nv12))

    def flush(self) -> list[bytes]:
        return _bitstreams(self._encoder.EndEncode())

    def close(self) -> None:
        self._encoder = None


@functools.cache
def _nvenc_unavailable_reason(gpu_id: int, codec: Codec) -> str | None:
    reason = video_codec_unavailable_reason(gpu_id)
    if reason is not None:
        return reason
    import torch

    try:
        import PyNvVideoCodec as nvc
    except Exception as error:  # a wheel for another CUDA, a driver without libnvidia-encode
        return f"PyNvVideoCodec does not load: {_first_line(error)}"
    width, height = _PROBE_WH
    failure: list[BaseException] = []

    def probe() -> None:
        try:
            nvc.CreateEncoder(width, height, "NV12", False, codec=NVENC_CODECS[codec], gpuid=gpu_id)
        except Exception as error:
            failure.append(error)

    # In a thread of its own: an encoder that fails to open leaves a CUDA context of its own
    # current in the thread that tried (seen on an H100, which has no NVENC), and the caller's
    # later CUDA work there would run in it (cuDNN: CUDNN_STATUS_BAD_PARAM_STREAM_MISMATCH).
    thread = threading.Thread(target=probe, name="nvenc-probe")
    thread.start()
    thread.join()
    if failure:
        name = torch.cuda.get_device_name(gpu_id)
        return (
            f"GPU {gpu_id} ({name}) opens no NVENC {codec} encoder: {nvenc_error_text(failure[0])}"
        )
    return None


class PyNvVideoCodecBackend:
    """NVENC through PyNvVideoCodec (``CreateEncoder(..., "NV12", usecpuinputbuffer=False)``)."""

    def unavailable_reason(self, gpu_id: int, codec: Codec) -> str | None:
        return _nvenc_unavailable_reason(gpu_id, codec)

    def device(self, gpu_id: int) -> str:
        return f"cuda:{gpu_id}"

    def open(self, settings: EncoderSettings, gpu_id: int) -> EncoderSession:
        return _PyNvVideoCodecSession(settings, gpu_id)


BACKEND: EncoderBackend = PyNvVideoCodecBackend()
"""Where :class:`NvencEncoder` gets its sessions (replaced in tests)."""


def choose_nvenc(encoder: Encoder, gpu_id: int, codec: Codec) -> tuple[bool, str | None]:
    """Whether a video sink set to ``encoder`` encodes ``codec`` with NVENC on GPU ``gpu_id``,
    and, when NVENC was wanted and cannot be had, why (for :func:`say_fallback`)."""
    if encoder == "cpu":
        return False, None
    reason = BACKEND.unavailable_reason(gpu_id, codec)
    return reason is None, reason


def say_fallback(element: Element, encoder: Encoder, reason: str, **data: Any) -> None:
    """Say on the bus that ``element`` encodes on the CPU although ``encoder`` wanted NVENC."""
    if encoder == "nvenc":
        element.bus.warning(
            element.name,
            f"encoder 'nvenc' is not possible here: {reason}; encoding on the CPU",
            encoder="cpu",
            reason=reason,
            **data,
        )
        return
    element.bus.post(
        Message(
            MessageType.INFO,
            element.name,
            f"encoder 'auto': encoding on the CPU ({reason})",
            {"encoder": "cpu", "reason": reason, **data},
        )
    )


class NvencEncoder:
    """Frames in, H.264 or HEVC access units out, encoded by NVENC on GPU ``gpu_id``: the
    counterpart of :class:`panoptes.media.rtsp.H264Encoder`, with the same ``encode`` and
    ``flush``.

    Access units are Annex B, every key frame is an IDR carrying its parameter sets, and there
    are no B-frames, so they go in display order.

    Args:
        width, height: frame size in pixels; images of another size are resized to it. An odd
            size is padded by one pixel (repeating the edge): 4:2:0 chroma needs even sizes.
        fps: frame rate of the stream.
        codec: ``"h264"`` or ``"h265"``.
        gpu_id: the GPU whose NVENC encodes.
        bitrate_kbps: target bitrate in kbit/s; unused when ``None``.
        crf: without a bitrate, the constant quantiser (0-51, lower is better; about what
            libx264's CRF of the same number gives, in larger files); default 23.
        preset: a libx264 speed preset name, mapped to NVENC's P1-P7 (:func:`nvenc_preset`).
        gop: frames from one key frame to the next; default one second of frames.
        low_latency: tuned for live streaming (RTSP) rather than for quality (files).

    Raises:
        ValueError: a size, rate, bitrate, CRF or GOP out of range, or an unknown codec or
            preset.
        Exception: the library's own error when the encoder does not start (no NVENC, too many
            sessions on the GPU, a size NVENC does not take).
    """

    def __init__(
        self,
        width: int,
        height: int,
        fps: float,
        *,
        codec: Codec = "h264",
        gpu_id: int = 0,
        bitrate_kbps: int | None = None,
        crf: int | None = None,
        preset: str = "ultrafast",
        gop: int | None = None,
        low_latency: bool = True,
    ) -> None:
        import torch

        if codec not in NVENC_CODECS:
            raise ValueError(f"unknown codec {codec!r}; known: {', '.join(NVENC_CODECS)}")
        self.rate, self.gop = check_stream_settings(width, height, fps, bitrate_kbps, crf, gop)
        self.codec: Codec = codec
        self.gpu_id = gpu_id
        self.size_wh = (width, height)
        self.encoded_size_wh = (width + width % 2, height + height % 2)
        self.settings = EncoderSettings(
            *self.encoded_size_wh,
            fps=self.rate,
            codec=codec,
            gop=self.gop,
            bitrate_kbps=bitrate_kbps,
            qp=crf if crf is not None else 23,
            preset=nvenc_preset(preset),
            low_latency=low_latency,
        )
        self.device = torch.device(BACKEND.device(gpu_id))
        self.frames_encoded = 0
        self._closed = False
        self._pending = b""
        """NAL units of the next access unit that came before its picture."""
        self._session = BACKEND.open(self.settings, gpu_id)

    def encode(self, image: np.ndarray | torch.Tensor) -> list[tuple[bytes, bool]]:
        """Encode one frame: a numpy HWC uint8 BGR array, or a uint8 tensor RGB ``[3, H, W]``
        or NV12 ``[H * 3 / 2, W]`` (BT.601 limited range, on any device), of any size
        (resized to ``size_wh``). Returns ``(access unit, is key frame)`` pairs: one per frame
        in the steady state, none while the encoder holds frames back."""
        if self._closed:
            raise ValueError("the encoder was flushed: make a new one")
        nv12 = self.nv12(image)
        chunks = self._session.encode(nv12)
        self.frames_encoded += 1
        return self._access_units(chunks)

    def flush(self) -> list[tuple[bytes, bool]]:
        """Drain the encoder and close it. Idempotent."""
        if self._closed:
            return []
        self._closed = True
        try:
            return self._access_units(self._session.flush())
        finally:
            self._session.close()

    def close(self) -> None:
        """Release the encoder without draining it (after a failure). Idempotent."""
        if not self._closed:
            self._closed = True
            self._session.close()

    def nv12(self, image: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``image`` as the encoder takes it: NV12 ``[H * 3 / 2, W]`` at the encoded size, on
        the encoder's device, contiguous."""
        from panoptes.media import gpu_image

        width, height = self.size_wh
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(
                    f"expected an HWC uint8 BGR image, got {image.dtype} {image.shape}"
                )
            if image.shape[:2] != (height, width):
                import cv2

                # Resized before the upload, as the CPU encoders resize: the smaller transfer.
                shrinking = image.shape[1] > width
                interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
                image = cv2.resize(image, (width, height), interpolation=interpolation)
            rgb = gpu_image.from_bgr_images([image], self.device)[0]
        else:
            if image.dtype.is_floating_point or image.element_size() != 1:
                raise ValueError(f"expected a uint8 tensor, got {image.dtype}")
            image = image.to(self.device)
            if image.ndim == 2:
                if tuple(image.shape) == (height * 3 // 2, width) and (width, height) == (
                    self.encoded_size_wh
                ):
                    return image.contiguous()
                rgb = gpu_image.nv12_to_rgb(image)
            elif image.ndim == 3 and image.shape[0] == 3:
                rgb = image
            else:
                raise ValueError(
                    f"expected RGB [3, H, W] or NV12 [H * 3 / 2, W], got {tuple(image.shape)}"
                )
            if (rgb.shape[2], rgb.shape[1]) != (width, height):
                resized, _ = gpu_image.letterbox(rgb[None], (width, height), keep_aspect=False)
                rgb = resized[0]
        return gpu_image.rgb_to_nv12(self._pad(rgb))

    def _pad(self, rgb: torch.Tensor) -> torch.Tensor:
        """``rgb`` [3, H, W] padded to the encoded (even) size by repeating its last column and
        row."""
        import torch

        width, height = self.size_wh
        if self.encoded_size_wh[0] != width:
            rgb = torch.cat((rgb, rgb[:, :, -1:]), dim=2)
        if self.encoded_size_wh[1] != height:
            rgb = torch.cat((rgb, rgb[:, -1:, :]), dim=1)
        return rgb

    def _access_units(self, chunks: Sequence[bytes]) -> list[tuple[bytes, bool]]:
        units, self._pending = access_units(b"".join([self._pending, *chunks]), self.codec)
        return units

    def __repr__(self) -> str:
        width, height = self.size_wh
        return (
            f"<NvencEncoder {self.codec} {width}x{height} @ {self.rate} fps, gop {self.gop}, "
            f"cuda:{self.gpu_id}>"
        )


class AccessUnitMuxer:
    """H.264 or HEVC access units (Annex B) written into a video file (mp4, mov or mkv) as they
    are, at a constant frame rate: the muxing half of a writer whose encoding happens elsewhere
    (NVENC).

    The stream takes its parameter sets (as extradata) from the first access unit, which must
    be a key frame carrying them; FFmpeg's muxers convert Annex B into their length-prefixed
    form. Frames come without B-frames, so each one's pts and dts are its index. The file is
    created with the first access unit and complete once :meth:`close` returns.

    Raises:
        ValueError: an unknown extension or codec, or a size or rate that is not positive.
    """

    def __init__(
        self, path: str | Path, size_wh: tuple[int, int], fps: float, codec: Codec
    ) -> None:
        self.path = Path(path)
        muxer = container_format(self.path)
        if muxer is None:
            allowed = ", ".join(CONTAINER_FORMATS)
            raise ValueError(f"{self.path}: unknown video file extension; use one of {allowed}")
        if codec not in NVENC_CODECS:
            raise ValueError(f"unknown codec {codec!r}; known: {', '.join(NVENC_CODECS)}")
        width, height = size_wh
        if width <= 0 or height <= 0:
            raise ValueError(f"the frame size must be positive, not {width}x{height}")
        self.rate = frame_rate(fps)
        self.codec: Codec = codec
        self.frames_written = 0
        self._time_base = 1 / self.rate
        self._closed = False
        # faststart: the index at the front, as VideoWriter's files have it.
        options = {"movflags": "+faststart"} if muxer in ("mp4", "mov") else {}
        self._container: av.container.OutputContainer = av.open(
            str(self.path), "w", format=muxer, options=options
        )
        try:
            self._stream = self._container.add_mux_stream(
                NVENC_CODECS[codec], rate=self.rate, width=width, height=height
            )
            self._stream.time_base = self._time_base
        except BaseException:
            self._container.close()
            raise

    def mux(self, access_unit: bytes, keyframe: bool) -> None:
        """Write one frame's access unit. Raises ``OSError`` when the file cannot be written."""
        if self._closed:
            raise ValueError(f"{self.path} is closed")
        packet = av.Packet(access_unit)
        packet.stream = self._stream
        packet.time_base = self._time_base
        # Constant frame rate from the count of frames, as VideoWriter's: sources drop frames,
        # restart (loop) and jitter.
        packet.pts = packet.dts = self.frames_written
        packet.duration = 1
        packet.is_keyframe = keyframe
        self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        """Write the container's index and close the file. Idempotent."""
        if not self._closed:
            self._closed = True
            self._container.close()

    @property
    def closed(self) -> bool:
        return self._closed


class NvencWriter(EncodedFile):
    """An open video file encoded by NVENC: :class:`panoptes.media.writer.VideoWriter`'s
    counterpart, taking numpy BGR arrays or device tensors (see :meth:`NvencEncoder.encode`).

    The encoder starts in the constructor, so a GPU that cannot encode fails there, before the
    file exists. Arguments as VideoWriter's, with ``gpu_id``; ``crf`` is NVENC's constant
    quantiser.
    """

    def __init__(
        self,
        path: str | Path,
        size_wh: tuple[int, int],
        fps: float,
        *,
        codec: Codec = "h264",
        crf: int | None = 23,
        bitrate_kbps: int | None = None,
        preset: str = "veryfast",
        gpu_id: int = 0,
    ) -> None:
        self.path = Path(path)
        if container_format(self.path) is None:
            allowed = ", ".join(CONTAINER_FORMATS)
            raise ValueError(f"{self.path}: unknown video file extension; use one of {allowed}")
        width, height = size_wh
        self.size_wh = size_wh
        self._encoder = NvencEncoder(
            width,
            height,
            fps,
            codec=codec,
            gpu_id=gpu_id,
            bitrate_kbps=bitrate_kbps,
            crf=crf,
            preset=preset,
            gop=FILE_GOP,
            low_latency=False,
        )
        try:
            self._muxer = AccessUnitMuxer(self.path, self._encoder.encoded_size_wh, fps, codec)
        except BaseException:
            self._encoder.close()
            raise
        self.rate = self._muxer.rate
        self.codec: Codec = codec
        self.frames_written = 0
        self._closed = False
        self._failed = False

    def write(self, image: np.ndarray | torch.Tensor) -> None:
        """Encode one frame (numpy HWC BGR, or a uint8 RGB or NV12 tensor), of any size."""
        if self._closed or self._failed:
            state = "closed" if self._closed else "failed on an earlier frame"
            raise ValueError(f"{self.path} is {state}")
        try:
            for access_unit, keyframe in self._encoder.encode(image):
                self._muxer.mux(access_unit, keyframe)
        except BaseException:
            self._failed = True
            raise
        self.frames_written += 1

    def close(self) -> None:
        """Drain the encoder, write the container's index and close the file. Idempotent; the
        file is closed even when draining fails (the error is raised after)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._failed:
                self._encoder.close()
            else:
                for access_unit, keyframe in self._encoder.flush():
                    self._muxer.mux(access_unit, keyframe)
        finally:
            self._muxer.close()
