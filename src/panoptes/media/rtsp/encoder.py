"""Encoding frames into H.264 access units for live streaming (libx264 through PyAV)."""

from __future__ import annotations

import os
from fractions import Fraction

import av
import av.video.codeccontext
import av.video.frame
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, ColorTrc

from panoptes.media.writer import MAX_THREADS, PRESETS, frame_rate, yuv420_frame

__all__ = ["H264Encoder"]

#: Constant quality when neither a bitrate nor a CRF is asked for: libx264's own default.
DEFAULT_CRF = 23

# FFmpeg's AVColorSpace for the BT.601 matrix (libavutil/pixfmt.h); PyAV names only swscale's.
_AVCOL_SPC_SMPTE170M = 6


def check_stream_settings(
    width: int,
    height: int,
    fps: float,
    bitrate_kbps: int | None,
    crf: int | None,
    gop: int | None,
) -> tuple[Fraction, int]:
    """A live encoder's settings checked (ValueError naming the one out of range); returns the
    frame rate as a fraction and the GOP (default: one second of frames)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"the frame size must be positive, not {width}x{height}")
    if bitrate_kbps is not None and bitrate_kbps <= 0:
        raise ValueError(f"bitrate_kbps must be positive, not {bitrate_kbps}")
    if crf is not None and not 0 <= crf <= 51:
        raise ValueError(f"crf must be 0-51, not {crf}")
    rate = frame_rate(fps)
    gop = gop if gop is not None else max(1, round(rate))
    if gop < 1:
        raise ValueError(f"gop must be 1 or more frames, not {gop}")
    return rate, gop


class H264Encoder:
    """Frames in, H.264 access units out, with no delay: a frame's access unit comes back from
    the call that encodes it (``tune=zerolatency``: no B-frames, no lookahead, sliced threads).

    Access units are in Annex B format and every key frame (an IDR) carries its SPS and PPS, so
    a client that joins at any key frame can decode.

    Args:
        width, height: frame size in pixels; images of another size are resized to it. An odd
            size is padded by one pixel (repeating the edge): 4:2:0 chroma needs even sizes.
        fps: frame rate of the stream.
        bitrate_kbps: target bitrate in kbit/s, held within a one-second buffer (what a network
            link needs); unused when ``None``.
        crf: constant quality, 0-51 (lower is better); the default when no bitrate is given
            is 23.
        preset: libx264 speed preset (one of ``panoptes.media.writer.PRESETS``).
        gop: frames from one key frame to the next; a new client waits for a key frame, so this
            bounds how long it waits. Default: one second of frames.
        threads: encoder threads; default the CPU count up to 4.

    Raises:
        ValueError: a size, rate, bitrate, CRF or GOP out of range, or an unknown preset.
    """

    def __init__(
        self,
        width: int,
        height: int,
        fps: float,
        *,
        bitrate_kbps: int | None = None,
        crf: int | None = None,
        preset: str = "ultrafast",
        gop: int | None = None,
        threads: int | None = None,
    ) -> None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        self.rate, self.gop = check_stream_settings(width, height, fps, bitrate_kbps, crf, gop)
        self.size_wh = (width, height)
        self.encoded_size_wh = (width + width % 2, height + height % 2)
        self.frames_encoded = 0
        self._closed = False
        self._tagged = False

        context = av.CodecContext.create("libx264", "w")
        assert isinstance(context, av.video.codeccontext.VideoCodecContext)
        context.width, context.height = self.encoded_size_wh
        context.pix_fmt = "yuv420p"
        context.time_base = 1 / self.rate
        context.framerate = self.rate
        context.gop_size = self.gop
        context.thread_count = threads or min(MAX_THREADS, os.cpu_count() or 1)
        # repeat-headers: SPS and PPS before every IDR, where a client may join; annexb: start
        # codes, as RTP packetization and the SDP expect (both are libx264's defaults without a
        # global header, stated so that no flag elsewhere can turn them off).
        options = {
            "preset": preset,
            "tune": "zerolatency",
            "x264-params": "repeat-headers=1:annexb=1",
        }
        if bitrate_kbps is not None:
            context.bit_rate = bitrate_kbps * 1000
            # A one-second VBV buffer keeps the rate steady enough for a network link.
            options["maxrate"] = f"{bitrate_kbps}k"
            options["bufsize"] = f"{bitrate_kbps}k"
        else:
            options["crf"] = str(crf if crf is not None else DEFAULT_CRF)
        context.options = options
        self._context = context

    def encode(self, image_bgr: np.ndarray) -> list[tuple[bytes, bool]]:
        """Encode one frame: ``image_bgr`` is HWC uint8 BGR, of any size (resized to
        ``size_wh``). Returns ``(access unit, is key frame)`` pairs, one per frame in practice.
        """
        frame = yuv420_frame(image_bgr, self.size_wh, self.encoded_size_wh)
        if not self._tagged:
            # What yuv420_frame makes: BT.601 matrix, limited range, sRGB's (BT.709)
            # primaries and curve. Untagged, players guess by resolution and shift colours.
            self._tag(_AVCOL_SPC_SMPTE170M, ColorRange.MPEG, ColorPrimaries.BT709, ColorTrc.BT709)
        return self._encode(frame)

    def encode_frame(self, frame: av.VideoFrame) -> list[tuple[bytes, bool]]:
        """Encode a decoded frame as it is, in YUV: no trip through BGR, which costs more than
        the encoding at 1080p. Frames of another size or pixel format are converted."""
        if not self._tagged:
            # The frames keep their source's colours: the stream says which those are.
            self._tag(frame.colorspace, frame.color_range, frame.color_primaries, frame.color_trc)
        width, height = self.encoded_size_wh
        if (frame.width, frame.height, frame.format.name) != (width, height, "yuv420p"):
            frame = frame.reformat(width, height, "yuv420p")
        return self._encode(frame)

    def flush(self) -> list[tuple[bytes, bool]]:
        """Drain the encoder (nothing is held back with zerolatency) and close it. Idempotent."""
        if self._closed:
            return []
        self._closed = True
        if self.frames_encoded == 0:
            return []  # the codec never opened: there is nothing to drain
        return [(bytes(packet), packet.is_keyframe) for packet in self._context.encode(None)]

    def _tag(self, colorspace: int, color_range: int, primaries: int, trc: int) -> None:
        context = self._context
        context.colorspace, context.color_range = colorspace, color_range
        context.color_primaries, context.color_trc = primaries, trc
        self._tagged = True

    def _encode(self, frame: av.VideoFrame) -> list[tuple[bytes, bool]]:
        if self._closed:
            raise ValueError("the encoder was flushed: make a new one")
        # The encoder's clock counts frames; the caller keeps the stream's own timestamps.
        frame.pts = self.frames_encoded
        frame.time_base = self._context.time_base
        # A decoded frame keeps its source's picture type, and libx264 would make every source
        # I-frame a key frame: the encoder's GOP decides instead.
        frame.pict_type = av.video.frame.PictureType.NONE
        packets = self._context.encode(frame)
        self.frames_encoded += 1
        return [(bytes(packet), packet.is_keyframe) for packet in packets]

    def __repr__(self) -> str:
        width, height = self.size_wh
        return f"<H264Encoder {width}x{height} @ {self.rate} fps, gop {self.gop}>"
