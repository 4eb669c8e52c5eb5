"""Encoding BGR frames into H.264 or H.265 video files (mp4, mov, mkv) with PyAV."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import av
import av.container
import av.video.stream
import cv2
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, ColorTrc

Codec = Literal["h264", "h265"]

#: Container formats by file extension (lower case).
CONTAINER_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}

ENCODERS: dict[Codec, str] = {"h264": "libx264", "h265": "libx265"}

#: The speed presets libx264 and libx265 share.
PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)

#: Encoder threads per file. The encoders would take 1.5 threads per core each, which many
#: files at once (one per camera) turn into hundreds of threads on a machine that also decodes
#: and runs models.
MAX_THREADS = 4

# FFmpeg's AVColorSpace for the BT.601 matrix (libavutil/pixfmt.h); PyAV names only swscale's.
_AVCOL_SPC_SMPTE170M = 6

# Rates other than NTSC's, as ratios of small numbers (12.5 → 25/2).
_RATE_DENOMINATOR_LIMIT = 1001


def container_format(path: str | Path) -> str | None:
    """The FFmpeg muxer for ``path``'s extension (``"mp4"``, ``"mov"``, ``"matroska"``), or None."""
    return CONTAINER_FORMATS.get(Path(path).suffix.lower())


def encoder_available(codec: Codec) -> bool:
    """Whether the FFmpeg that PyAV loaded has ``codec``'s encoder (PyAV's wheels have both)."""
    return ENCODERS[codec] in av.codecs_available


def frame_rate(fps: float) -> Fraction:
    """``fps`` as an exact ratio: 15.0 → 15, 12.5 → 25/2, 29.97 (or 29.97003) → 30000/1001."""
    if fps <= 0:
        raise ValueError(f"the frame rate must be positive, not {fps}")
    # NTSC rates are written rounded (29.97, 59.94, 23.976); the file should say 30000/1001.
    ntsc = round(fps * 1.001)
    if abs(fps * 1.001 - ntsc) < 1e-3 and abs(fps - round(fps)) > 1e-3:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(fps).limit_denominator(_RATE_DENOMINATOR_LIMIT)


class EncodedFile(ABC):
    """What the writers of an encoded video file share besides writing: whether it is closed,
    use as a context manager (closed on leaving), and a description. A subclass sets ``path``,
    ``codec``, ``size_wh``, ``rate``, ``frames_written`` and ``_closed``, and has ``close()``."""

    path: Path
    codec: str
    size_wh: tuple[int, int]
    rate: Fraction
    frames_written: int
    _closed: bool

    @abstractmethod
    def close(self) -> None:
        """Finish the file; later calls do nothing."""

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        width, height = self.size_wh
        state = "closed" if self._closed else "open"
        return (
            f"<{type(self).__name__} {str(self.path)!r} {self.codec} {width}x{height} @ "
            f"{self.rate} fps, {self.frames_written} frames, {state}>"
        )


class VideoWriter(EncodedFile):
    """An open video file that takes BGR frames, at a constant frame rate.

    PyAV creates the file with the first frame (a writer closed without frames leaves none),
    and the file is complete, playable, once :meth:`close` returns; use the writer as a context
    manager to close it on errors too.

    Args:
        path: output file; its extension picks the container (.mp4, .mov or .mkv).
        size_wh: frame size (width, height) in pixels. Frames of another size are resized to
            it. An odd width or height is padded by one pixel (repeating the edge) in the file,
            because 4:2:0 chroma needs even sizes.
        fps: frame rate of the file.
        codec: ``"h264"`` (libx264) or ``"h265"`` (libx265).
        crf: constant quality, 0-51 (lower is better); unused when ``bitrate_kbps`` is given.
        bitrate_kbps: target average bitrate in kbit/s, instead of constant quality.
        preset: encoder speed preset (one of :data:`PRESETS`).
        threads: encoder threads; default the CPU count up to :data:`MAX_THREADS`.

    Raises:
        ValueError: an unknown extension, codec or preset, or a size or rate that is not positive.
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
        threads: int | None = None,
    ) -> None:
        self.path = Path(path)
        muxer = container_format(self.path)
        if muxer is None:
            allowed = ", ".join(CONTAINER_FORMATS)
            raise ValueError(f"{self.path}: unknown video file extension; use one of {allowed}")
        if codec not in ENCODERS:
            raise ValueError(f"unknown codec {codec!r}; known: {', '.join(ENCODERS)}")
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        width, height = size_wh
        if width <= 0 or height <= 0:
            raise ValueError(f"the frame size must be positive, not {width}x{height}")
        self.size_wh = (width, height)
        self.encoded_size_wh = (width + width % 2, height + height % 2)
        self.rate = frame_rate(fps)
        self.codec: Codec = codec
        self.frames_written = 0
        self._closed = False
        self._failed = False

        # faststart moves the index to the front when the file is closed, so a browser or a
        # player reading over HTTP starts at once instead of fetching the end of the file first.
        options = {"movflags": "+faststart"} if muxer in ("mp4", "mov") else {}
        self._container: av.container.OutputContainer = av.open(
            str(self.path), "w", format=muxer, options=options
        )
        try:
            self._stream = self._add_stream(crf, bitrate_kbps, preset, threads, muxer)
        except BaseException:
            self._container.close()
            raise

    def _add_stream(
        self,
        crf: int | None,
        bitrate_kbps: int | None,
        preset: str,
        threads: int | None,
        muxer: str,
    ) -> av.video.stream.VideoStream:
        stream = self._container.add_stream(ENCODERS[self.codec], rate=self.rate)
        assert isinstance(stream, av.video.stream.VideoStream)
        stream.width, stream.height = self.encoded_size_wh
        stream.pix_fmt = "yuv420p"
        context = stream.codec_context
        context.time_base = 1 / self.rate
        thread_count = threads or min(MAX_THREADS, os.cpu_count() or 1)
        options = {"preset": preset}
        if bitrate_kbps is not None:
            context.bit_rate = bitrate_kbps * 1000
        elif crf is not None:
            options["crf"] = str(crf)
        context.thread_count = thread_count
        if self.codec == "h265":
            # FFmpeg's thread count only sets x265's frame threads: its worker pool would take
            # every core, and it prints a banner unless told otherwise.
            options["x265-params"] = f"pools={thread_count}:log-level=error"
            if muxer in ("mp4", "mov"):
                stream.codec_tag = "hvc1"  # what Apple's players require for HEVC in mp4
        context.options = options
        # The file says how its YUV was made (see write): BT.601 matrix, limited range, sRGB's
        # (BT.709) primaries and curve. Untagged, players guess by resolution and shift colours.
        context.colorspace = _AVCOL_SPC_SMPTE170M
        context.color_range = ColorRange.MPEG
        context.color_primaries = ColorPrimaries.BT709
        context.color_trc = ColorTrc.BT709
        return stream

    def write(self, image: np.ndarray) -> None:
        """Encode one frame: ``image`` is HWC uint8 BGR, of any size (resized to ``size_wh``).

        Raises ``OSError`` when the file cannot be created or written (PyAV's
        ``av.error.OSError``: no such folder, permission denied, disk full).
        """
        if self._closed or self._failed:
            state = "closed" if self._closed else "failed on an earlier frame"
            raise ValueError(f"{self.path} is {state}")
        frame = yuv420_frame(image, self.size_wh, self.encoded_size_wh)
        # Constant frame rate from the count of frames written, not the frames' own pts: sources
        # drop frames, restart (loop) and jitter, and the file must still have exactly the
        # frames it was given, at the rate it states.
        frame.pts = self.frames_written
        frame.time_base = self._stream.codec_context.time_base
        try:
            self._container.mux(self._stream.encode(frame))
        except BaseException:
            self._failed = True
            raise
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder, write the container's index and close the file. Idempotent.

        The file is closed even when flushing fails (the error is raised after). After a failed
        write, the file is closed without flushing: it keeps what the disk took.
        """
        if self._closed:
            return
        self._closed = True
        try:
            # Muxing again after the muxer failed (ENOSPC into an mp4) crashes the process with
            # PyAV 18.1 and FFmpeg 8, so a failed writer only closes its container.
            if not self._failed:
                self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()


def yuv420_frame(
    image_bgr: np.ndarray, size_wh: tuple[int, int], encoded_size_wh: tuple[int, int]
) -> av.VideoFrame:
    """An encoder's input frame from an HWC uint8 BGR image: resized to ``size_wh`` when it is
    another size, padded (edge pixels repeated) to the even ``encoded_size_wh`` that 4:2:0
    needs, in BT.601 limited-range I420.

    Raises:
        ValueError: the image is not HWC uint8 BGR.
    """
    if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(
            f"expected an HWC uint8 BGR image, got {image_bgr.dtype} {image_bgr.shape}"
        )
    width, height = size_wh
    if image_bgr.shape[:2] != (height, width):
        shrinking = image_bgr.shape[1] > width
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        image_bgr = cv2.resize(image_bgr, (width, height), interpolation=interpolation)
    pad_w, pad_h = encoded_size_wh[0] - width, encoded_size_wh[1] - height
    if pad_w or pad_h:
        image_bgr = cv2.copyMakeBorder(image_bgr, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE)
    # OpenCV converts to BT.601 limited-range I420 in a third of the time swscale takes
    # (1 ms against 3-4 ms at 720p, a fifth of the whole encode at preset veryfast).
    i420 = np.asarray(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2YUV_I420), dtype=np.uint8)
    return av.VideoFrame.from_ndarray(i420, format="yuv420p")
