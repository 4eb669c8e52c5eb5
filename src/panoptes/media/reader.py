"""Frame readers: one interface over video files, network streams, image folders and patterns.

:func:`open_reader` maps a URI to a reader without touching the source; :meth:`FrameReader.open`
does the I/O and :meth:`FrameReader.frames` yields :class:`DecodedFrame` objects::

    reader = open_reader("file:///videos/hall.mp4", name="hall", drop_frame_interval=2)
    reader.open()
    for frame in reader.frames(stop_event):
        ...  # frame.image: (H, W, 3) uint8 BGR
    reader.close()

Kinds of URI:

- a path (relative to ``base_dir``) or ``file://`` URI of any file FFmpeg reads (mp4, mkv, mov,
  avi, raw ``.h264``/``.h265``, ...), decoded with PyAV; only the best video stream is demuxed;
- ``rtsp://`` (RTSP over TCP unless ``?transport=udp``), ``http(s)://`` and the other network
  protocols of FFmpeg (``rtmp``, ``udp``, ``srt``, ...), with open and read timeouts;
- ``v4l2:///dev/video0?width=W&height=H&fps=N/D``: a V4L2 camera (USB webcams, capture
  cards), read through FFmpeg's ``v4l2`` input device, in the size and rate asked for (the
  camera's current mode for those left out); live;
- a folder of images, a glob (``/x/*.jpg``) or one image file, read with OpenCV;
- ``test://PATTERN?width=W&height=H&fps=F&frames=N``: a generated pattern (``ball``,
  ``gradient``, ``noise``); endless when ``frames`` is absent.

Video files and network streams decode on the CPU unless ``decoder`` asks for the GPU's hardware
decoder (NVDEC, see ``_nvdec``): then H.264 and HEVC frames come as NV12 tensors on that GPU.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Protocol, TypedDict, runtime_checkable
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from panoptes.core.errors import ConfigError, SourceError
from panoptes.media._av import AvReader
from panoptes.media._base import DecodedFrame, PacketTap, RealTimePacer
from panoptes.media._images import IMAGE_SUFFIXES, ImageSequenceReader
from panoptes.media._pattern import PATTERNS, PatternReader

__all__ = ["DecodedFrame", "FrameReader", "PacketTap", "RealTimePacer", "open_reader"]

NETWORK_SCHEMES = frozenset(
    {"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "rtp", "tcp", "srt"}
)
DEFAULT_IMAGE_FPS = 30.0
DEFAULT_PATTERN_SIZE_WH = (640, 360)
DEFAULT_PATTERN_FPS = 30.0

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_GLOB_CHARS = frozenset("*?[")

Decoder = Literal["auto", "cpu", "nvdec"]
"""Which decoder a video file or network stream gets: ``cpu`` (FFmpeg), ``nvdec`` (the GPU's
hardware decoder; the CPU, with a warning, where it cannot), ``auto`` (NVDEC where there is one
and it takes the stream, else quietly the CPU)."""


class _Playback(TypedDict):
    loop: bool
    real_time: bool
    drop_frame_interval: int


@runtime_checkable
class FrameReader(Protocol):
    """A source of decoded frames.

    Attributes (valid after :meth:`open`):
        uri: the URI it was made from (a password in it masked).
        name: the name used in errors and logs (passwords in a URI are masked).
        size_wh: (width, height) of the frames in pixels; (0, 0) before open.
        fps: frames per second of the stream, before ``drop_frame_interval`` (the output has
            ``fps / drop_frame_interval``); ``None`` if unknown.
        frame_count: frames in the stream, before ``drop_frame_interval``, from the container
            header or its duration (a header may count a few frames that do not decode);
            ``None`` when unknown, live or looping.
        is_live: True for a network stream that reports no duration.
        is_network: True for a source read over the network (it may be reconnected).
        corrupt_frames: packets or images that failed to decode and were skipped.
        memory: the kinds of memory its frames may come in (``{"cpu"}``, numpy BGR; with
            ``"cuda"``, NV12 tensors on ``tensor_device``), known before :meth:`open`.
        tensor_device: the torch device of its tensor frames, or None.
        warnings: what the pipeline should say on its bus (a fallback from NVDEC to the CPU),
            taken off as said.
    """

    uri: str
    name: str
    size_wh: tuple[int, int]
    fps: float | None
    frame_count: int | None
    is_live: bool
    is_network: bool
    corrupt_frames: int
    memory: frozenset[str]
    tensor_device: str | None
    warnings: list[str]

    def open(self) -> None:
        """Open the source; raises :class:`SourceError` naming the source and the cause."""

    def frames(self, stop: threading.Event | None = None) -> Iterator[DecodedFrame]:
        """Yield frames until the source ends; return early once ``stop`` is set."""

    def close(self) -> None:
        """Release the source."""

    def set_packet_tap(self, tap: PacketTap | None) -> bool:
        """Hand each compressed video packet to ``tap`` before it is decoded (``None``: stop);
        False when the source has none (image folders, test patterns). See ``PacketTap``."""

    def allow_yuv(self) -> None:
        """Let frames decoded on the CPU come as ``YuvImage`` (their planes, not yet converted
        to BGR) from now on, where the reader can; ``memory`` then includes ``cpu-yuv``."""


def open_reader(
    uri: str,
    *,
    name: str | None = None,
    loop: bool = False,
    real_time: bool = False,
    drop_frame_interval: int = 1,
    open_timeout_s: float = 10.0,
    read_timeout_s: float | None = None,
    base_dir: Path | None = None,
    fps: float | None = None,
    decoder: Decoder = "cpu",
    gpu_id: int = 0,
) -> FrameReader:
    """Make the reader for ``uri``; nothing is opened or read until :meth:`FrameReader.open`.

    Args:
        uri: see the module docstring for the kinds.
        name: name for errors and logs; defaults to the URI with any password masked.
        loop: restart at the end, seamlessly: ``index`` and ``pts_s`` keep increasing.
            Ignored for live streams.
        real_time: pace the output to the pts against a monotonic clock (files, folders,
            patterns; live streams are paced by their sender).
        drop_frame_interval: output only every Nth decoded frame (decoded frames 0, N, 2N, ...).
        open_timeout_s: seconds a network source may take to answer on open (and per read
            unless ``read_timeout_s`` is given).
        read_timeout_s: seconds a network source may send nothing while playing before
            reading fails (a stalled camera); defaults to ``open_timeout_s``.
        base_dir: folder that relative paths are resolved against; the working directory if
            ``None``.
        fps: frame rate of image folders and globs (default 30); ignored by other kinds.
        decoder: see :data:`Decoder`. ``nvdec`` where NVDEC cannot decode gives a CPU reader
            with the reason in its ``warnings``; image folders and patterns take ``auto`` as
            ``cpu`` and refuse ``nvdec``.
        gpu_id: the GPU whose NVDEC decodes.

    Raises:
        SourceError: the URI itself is malformed (unknown scheme, bad pattern parameters).
        ConfigError: ``decoder`` is ``nvdec`` for a source that is not video (place
            ``decoder``).
    """
    display_uri = mask_password(uri)
    name = name or display_uri
    if drop_frame_interval < 1:
        raise SourceError(f"drop_frame_interval must be 1 or more, not {drop_frame_interval}", name)
    if open_timeout_s <= 0:
        raise SourceError(f"open_timeout_s must be positive, not {open_timeout_s}", name)
    if fps is not None and fps <= 0:
        raise SourceError(f"fps must be positive, not {fps}", name)
    playback = _Playback(loop=loop, real_time=real_time, drop_frame_interval=drop_frame_interval)

    match = _SCHEME.match(uri)
    scheme = match.group(1).lower() if match else ("file" if uri.startswith("file:") else "")
    if scheme == "test":
        _no_video_to_decode(decoder, "a generated test pattern")
        return _pattern_reader(uri, name, playback)
    if scheme == "v4l2":
        _no_video_to_decode(decoder, "a V4L2 camera (raw frames)")
        return _camera_reader(uri, name, playback, open_timeout_s=open_timeout_s)
    if scheme in NETWORK_SCHEMES:
        return _video_reader(
            display_uri,
            name,
            decoder=decoder,
            gpu_id=gpu_id,
            target=uri,
            is_network=True,
            open_timeout_s=open_timeout_s,
            read_timeout_s=read_timeout_s or open_timeout_s,
            **playback,
        )
    if scheme == "file":
        path_text = _path_of_file_uri(uri)
    elif scheme:
        known = ", ".join(sorted({"file", "test", "v4l2", *NETWORK_SCHEMES}))
        raise SourceError(f"unknown URI scheme {scheme + '://'!r}; known: {known}", name)
    else:
        path_text = uri
    return _local_reader(
        uri,
        name,
        path_text,
        base_dir=base_dir,
        image_fps=fps or DEFAULT_IMAGE_FPS,
        open_timeout_s=open_timeout_s,
        playback=playback,
        decoder=decoder,
        gpu_id=gpu_id,
    )


def _video_reader(uri: str, name: str, *, decoder: Decoder, gpu_id: int, **kwargs: Any) -> AvReader:
    """The reader of a video file or network stream, on the decoder ``decoder`` asks for."""
    if decoder == "cpu":
        return AvReader(uri, name, **kwargs)
    # Only now: a pipeline that does not ask for the GPU never looks for it.
    from panoptes.media import _nvdec

    reason = _nvdec.BACKEND.unavailable_reason(gpu_id)
    if reason is None:
        return _nvdec.NvdecReader(uri, name, gpu_id=gpu_id, strict=decoder == "nvdec", **kwargs)
    reader = AvReader(uri, name, **kwargs)
    if decoder == "nvdec":
        reader.warnings.append(
            f"decoder 'nvdec' is not possible here: {reason}; decoding on the CPU"
        )
    return reader


def _local_reader(
    uri: str,
    name: str,
    path_text: str,
    *,
    base_dir: Path | None,
    image_fps: float,
    open_timeout_s: float,
    playback: _Playback,
    decoder: Decoder,
    gpu_id: int,
) -> FrameReader:
    path = Path(path_text).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    if path.is_dir():
        _no_video_to_decode(decoder, "a folder of images")
        return ImageSequenceReader(uri, name, folder=path, fps=image_fps, **playback)
    if not path.exists() and _GLOB_CHARS & set(path_text):
        _no_video_to_decode(decoder, "a set of images")
        return ImageSequenceReader(uri, name, pattern=str(path), fps=image_fps, **playback)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        _no_video_to_decode(decoder, "an image")
        return ImageSequenceReader(uri, name, image=path, fps=image_fps, **playback)
    return _video_reader(
        uri,
        name,
        decoder=decoder,
        gpu_id=gpu_id,
        target=str(path),
        is_network=False,
        open_timeout_s=open_timeout_s,
        **playback,
    )


def _no_video_to_decode(decoder: Decoder, what: str) -> None:
    """Refuse NVDEC asked by name for a source without video (``auto`` takes the CPU quietly)."""
    if decoder == "nvdec":
        raise ConfigError(
            f"'nvdec' decodes H.264 and HEVC video, and this source is {what}: "
            "leave decoder at 'cpu' (or set 'auto')",
            "decoder",
        )


def _path_of_file_uri(uri: str) -> str:
    """``file:///abs``, ``file:/abs`` and ``file://localhost/abs`` give ``/abs``.

    ``file://relative/x.mp4`` gives ``relative/x.mp4``, as DeepStream configurations write it.
    """
    rest = uri[len("file:") :]
    if rest.startswith("//"):
        rest = rest[2:]
        if rest.startswith("localhost/"):
            rest = rest[len("localhost") :]
    return unquote(rest.split("?", 1)[0])


def _pattern_reader(uri: str, name: str, playback: _Playback) -> FrameReader:
    parts = urlsplit(uri)
    pattern = parts.netloc or parts.path.strip("/")
    if pattern not in PATTERNS:
        raise SourceError(
            f"unknown test pattern {pattern!r}; known: {', '.join(sorted(PATTERNS))}", name
        )
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(params) - {"width", "height", "fps", "frames"})
    if unknown:
        raise SourceError(
            f"unknown test pattern parameter(s) {', '.join(unknown)}; "
            "known: width, height, fps, frames",
            name,
        )
    width = _positive_param(params, "width", name, integer=True)
    height = _positive_param(params, "height", name, integer=True)
    fps = _positive_param(params, "fps", name, integer=False)
    frames = _positive_param(params, "frames", name, integer=True)
    return PatternReader(
        uri,
        name,
        pattern=pattern,
        size_wh=(
            int(width or DEFAULT_PATTERN_SIZE_WH[0]),
            int(height or DEFAULT_PATTERN_SIZE_WH[1]),
        ),
        fps=fps or DEFAULT_PATTERN_FPS,
        frames=None if frames is None else int(frames),
        **playback,
    )


def _camera_reader(
    uri: str, name: str, playback: _Playback, *, open_timeout_s: float
) -> FrameReader:
    """``v4l2:///dev/videoN?width=W&height=H&fps=N/D``: FFmpeg's v4l2 input device."""
    parts = urlsplit(uri)
    device = unquote(parts.path)
    if parts.netloc or not device.startswith("/"):
        raise SourceError(
            f"expected v4l2:///dev/videoN (three slashes, then the device's path), got {uri!r}",
            name,
        )
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(params) - {"width", "height", "fps"})
    if unknown:
        raise SourceError(
            f"unknown camera parameter(s) {', '.join(unknown)}; known: width, height, fps", name
        )
    width = _positive_param(params, "width", name, integer=True, what="camera")
    height = _positive_param(params, "height", name, integer=True, what="camera")
    options: dict[str, str] = {}
    if (width is None) != (height is None):
        raise SourceError("give the camera's width and height together, or neither", name)
    if width is not None and height is not None:
        options["video_size"] = f"{int(width)}x{int(height)}"
    if "fps" in params:
        options["framerate"] = _frame_rate(params["fps"], name)
    return AvReader(
        uri,
        name,
        target=device,
        is_network=False,
        open_timeout_s=open_timeout_s,
        device_format="v4l2",
        device_options=options,
        **playback,
    )


def _frame_rate(text: str, name: str) -> str:
    """``30``, ``30/1`` or ``30000/1001`` as FFmpeg's ``framerate`` option."""
    numerator, _, denominator = text.partition("/")
    try:
        rate = int(numerator) / int(denominator or "1")
    except (ValueError, ZeroDivisionError):
        rate = 0
    if not rate > 0:
        raise SourceError(
            f"camera parameter fps={text!r} must be a positive rate such as 30 or 30000/1001",
            name,
        )
    return f"{int(numerator)}/{int(denominator or '1')}"


def _positive_param(
    params: dict[str, str], key: str, name: str, *, integer: bool, what: str = "test pattern"
) -> float | None:
    """The value of a test pattern's (or ``what``'s) parameter; ``None`` when absent."""
    if key not in params:
        return None
    try:
        value = int(params[key]) if integer else float(params[key])
    except ValueError:
        value = 0
    if not value > 0:
        kind = "integer" if integer else "number"
        raise SourceError(f"{what} parameter {key}={params[key]!r} must be a positive {kind}", name)
    return value


def mask_password(uri: str) -> str:
    """The URI with the password of its user info, if any, replaced by ``***``."""
    if not _SCHEME.match(uri):
        return uri
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    user_info, _, host_port = parts.netloc.rpartition("@")
    user = user_info.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host_port}"))
