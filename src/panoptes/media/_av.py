"""Files, network streams and V4L2 cameras decoded by FFmpeg through PyAV."""

from __future__ import annotations

import errno
import functools
import itertools
import socket
import struct
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import av
import av.container
import av.error
import av.video.frame
import av.video.stream

from panoptes.core.errors import SourceError
from panoptes.core.negotiation import CPU_YUV
from panoptes.media._base import BaseReader, ImageMaker, PacketTap
from panoptes.media.yuv import YuvImage, yuv_image_of

if TYPE_CHECKING:
    import av.packet
    import numpy as np

    VideoPacket = av.packet.Packet[av.video.stream.VideoStream]

#: Below this share of the header's frame count, a file that ends is reported as truncated. Real
#: files miss a few frames of their header (person-bicycle-car-detection.mp4 decodes 459 of 467).
TRUNCATED_BELOW = 0.9

#: Demuxer errors in a row after which a damaged file is given up on.
MAX_DEMUX_ERRORS_IN_A_ROW = 100

RTSP_TRANSPORTS = ("tcp", "udp", "udp_multicast", "http", "https")


class AvReader(BaseReader):
    """Decodes the best video stream of a local file or a network URI; audio is never decoded.

    Args:
        target: a local file path, or a URL FFmpeg opens (rtsp, http(s), ...).
        is_network: whether ``target`` is a URL; network sources get open and read timeouts.
        open_timeout_s: seconds to wait for a network source to answer on open.
        read_timeout_s: seconds a network source may send nothing while playing (a stall).
        device_format: an FFmpeg input device that reads ``target`` (``v4l2`` for a camera's
            ``/dev/videoN``), with ``device_options`` (``video_size``, ``framerate``); a device
            is live and never ends.
    """

    def __init__(
        self,
        uri: str,
        name: str,
        *,
        target: str,
        is_network: bool,
        open_timeout_s: float,
        read_timeout_s: float | None = None,
        loop: bool,
        real_time: bool,
        drop_frame_interval: int,
        device_format: str | None = None,
        device_options: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            uri, name, loop=loop, real_time=real_time, drop_frame_interval=drop_frame_interval
        )
        self._device_format = device_format
        self._open_timeout_s = open_timeout_s
        self._read_timeout_s = read_timeout_s or open_timeout_s
        self.is_network = is_network
        self._url, self._options = (
            # The socket timeout is the longer of the two: PyAV's own deadlines enforce each.
            network_url_and_options(target, max(open_timeout_s, self._read_timeout_s), source=name)
            if is_network
            else (target, dict(device_options or {}))
        )
        self._container: av.container.InputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._packet_tap: PacketTap | None = None
        self._tap_offset_s = 0.0
        self._yuv = False
        """Whether 4:2:0 pictures come as ``YuvImage`` (see :meth:`allow_yuv`)."""

    def set_packet_tap(self, tap: PacketTap | None) -> bool:
        self._packet_tap = tap
        return True

    def _open(self) -> None:
        if not self.is_network:
            path = Path(self._url)
            if not path.exists():
                what = "device" if self._device_format else "file"
                raise SourceError(f"no such {what}: {path}", source=self.name)
        container, stream = self._open_container()
        self._container, self._stream = container, stream
        self._tap_offset_s = 0.0
        self.size_wh = (stream.codec_context.width, stream.codec_context.height)
        rate = stream.guessed_rate or stream.average_rate
        self._native_fps = float(rate) if rate else None
        duration_s = _duration_s(container, stream)
        self.is_live = self._device_format is not None or (self.is_network and duration_s is None)
        if stream.frames > 0:
            self._native_frame_count = stream.frames
        elif duration_s is not None and self._native_fps is not None:
            self._native_frame_count = round(duration_s * self._native_fps)
        else:
            self._native_frame_count = None

    def _open_container(
        self,
    ) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
        started_s = time.monotonic()
        try:
            container = av.open(
                self._url,
                format=self._device_format,
                options=self._options,
                timeout=(self._open_timeout_s, self._read_timeout_s) if self.is_network else None,
            )
        except (av.error.FFmpegError, OSError) as exc:
            reason = self._explain_open_error(exc, time.monotonic() - started_s)
            raise SourceError(reason, source=self.name) from exc
        stream = container.streams.best("video")
        if not isinstance(stream, av.video.stream.VideoStream):
            kinds = ", ".join(
                f"{other.type} {getattr(other.codec_context, 'name', '?')}"
                for other in container.streams
            )
            container.close()
            raise SourceError(f"no video stream (it has: {kinds or 'no streams'})", self.name)
        if stream.codec_context is None:
            container.close()
            raise SourceError("no decoder for its video codec in this FFmpeg build", self.name)
        # Frame and slice threads: HEVC at 1080p decodes several times faster.
        stream.thread_type = "AUTO"
        return container, stream

    def _explain_open_error(self, exc: BaseException, elapsed_s: float) -> str:
        strerror = getattr(exc, "strerror", None) or str(exc)
        if self.is_network:
            host = _host_of(self._url)
            # FFmpeg reports a timeout as ETIMEDOUT, as an interrupt (PyAV's own deadline) or,
            # for RTSP, as invalid data once the deadline cut the exchange short.
            if isinstance(exc, av.error.TimeoutError | av.error.ExitError) or (
                elapsed_s >= 0.9 * self._open_timeout_s
            ):
                return f"no answer from {host} within {self._open_timeout_s:g} s (timed out)"
            if isinstance(exc, ConnectionRefusedError):
                return f"connection refused by {host}: is the server or camera running?"
            if isinstance(exc, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError):
                return f"{host} refused access ({strerror}): check the credentials in the URI"
            if isinstance(exc, av.error.HTTPNotFoundError):
                return f"{host} has no such stream ({strerror}): check the path in the URI"
            if isinstance(exc, av.error.InvalidDataError):
                return f"what {host} sends is not a stream FFmpeg can read"
            if not _resolves(self._url):
                # FFmpeg reports a failed name lookup as a bare input/output error.
                return f"cannot resolve the host name {urlsplit(self._url).hostname!r}"
            return f"cannot open the stream at {host}: {strerror}"
        path = Path(self._url)
        if self._device_format is not None:
            return self._explain_device_error(exc, strerror)
        if isinstance(exc, PermissionError):
            return f"permission denied: {path}"
        if isinstance(exc, av.error.InvalidDataError):
            return diagnose_unreadable_file(path)
        return f"cannot open {path}: {strerror}"

    def _explain_device_error(self, exc: BaseException, strerror: str) -> str:
        device = self._url
        if isinstance(exc, PermissionError):
            return f"permission denied: {device} (is the user in the 'video' group?)"
        if getattr(exc, "errno", None) == errno.EBUSY:
            return f"{device} is busy: another program is capturing from it"
        asked = ", ".join(f"{key} {value}" for key, value in self._options.items())
        hint = f"; check that the camera offers {asked}" if asked else ""
        return f"cannot capture from {device} ({self._device_format}): {strerror}{hint}"

    def _decode_pass(self) -> Iterator[tuple[float | None, ImageMaker]]:
        assert self._container is not None and self._stream is not None
        container, stream = self._container, self._stream
        decoded_in_pass = 0
        anchor_pts_s: float | None = None
        frames_since_anchor = 0
        corrupt_before_pass = self.corrupt_frames
        demux_errors_in_a_row = 0
        self._begin_pass()
        finished = False
        while not finished:
            try:
                # Demuxing only the video stream keeps audio packets away from any decoder.
                # None after the last packet: the decoder gives back the pictures it holds.
                for packet in itertools.chain(container.demux(stream), [None]):
                    if packet is not None:
                        demux_errors_in_a_row = 0
                        tap = self._packet_tap
                        if tap is not None and packet.size:  # size 0: FFmpeg's flush packet
                            tap(packet, self._tap_offset_s)
                    for pts_s, make_image in self._decode_packet(packet, decoded_in_pass):
                        if pts_s is not None:
                            anchor_pts_s, frames_since_anchor = pts_s, 0
                        elif self._native_fps:
                            # Raw elementary streams (.h264, .h265) carry no timestamps: count
                            # frames from the last timestamp seen (or the start) instead.
                            frames_since_anchor += 1
                            pts_s = (
                                decoded_in_pass / self._native_fps
                                if anchor_pts_s is None
                                else anchor_pts_s + frames_since_anchor / self._native_fps
                            )
                        decoded_in_pass += 1
                        yield pts_s, make_image
                finished = True
            except av.error.InvalidDataError as exc:
                self.corrupt_frames += 1
                demux_errors_in_a_row += 1
                if demux_errors_in_a_row >= MAX_DEMUX_ERRORS_IN_A_ROW:
                    raise SourceError(
                        f"unreadable after {decoded_in_pass} frames: {demux_errors_in_a_row} "
                        "damaged packets in a row",
                        source=self.name,
                    ) from exc
            except (av.error.TimeoutError, av.error.ExitError) as exc:
                raise SourceError(
                    f"no data for {self._read_timeout_s:g} s after {decoded_in_pass} frames "
                    "(stalled)",
                    source=self.name,
                ) from exc
            except (av.error.FFmpegError, OSError) as exc:
                if isinstance(exc, SourceError):  # a decoder's own, already explained
                    raise
                strerror = getattr(exc, "strerror", None) or str(exc)
                raise SourceError(
                    f"reading failed after {decoded_in_pass} frames: {strerror}", source=self.name
                ) from exc
        expected = self._native_frame_count
        # Damaged packets arrived too: only frames that never came mean a cut-short file.
        arrived = decoded_in_pass + self.corrupt_frames - corrupt_before_pass
        if not self.is_live and expected and arrived < TRUNCATED_BELOW * expected:
            raise SourceError(
                f"ended after {arrived} of {expected} frames: the file looks truncated",
                source=self.name,
            )

    def _begin_pass(self) -> None:
        """Called before each pass through the stream (a decoder keeping state per pass)."""

    def _decode_packet(
        self, packet: VideoPacket | None, decoded: int
    ) -> list[tuple[float | None, ImageMaker]]:
        """The pictures ``packet`` completes, as ``(pts_s or None, make_image)``; ``packet``
        None once the stream has ended. ``decoded``: pictures so far in this pass."""
        if packet is None:
            return []  # FFmpeg's own flush packet, demuxed last, has drained the decoder
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            # A damaged packet: FFmpeg rejected it; the next keyframe resyncs.
            self.corrupt_frames += 1
            return []
        pictures: list[tuple[float | None, ImageMaker]] = []
        for frame in frames:
            if self.size_wh == (0, 0):
                self.size_wh = (frame.width, frame.height)
            make_image: ImageMaker = functools.partial(frame.to_ndarray, format="bgr24")
            if self._yuv:
                make_image = functools.partial(_yuv_or_bgr, frame)
            pictures.append((frame.time, make_image))
        return pictures

    def allow_yuv(self) -> None:
        self._yuv = True
        self.memory = self.memory | {CPU_YUV}

    def _rewind(self) -> None:
        # Reopening, rather than seeking, restarts every container and codec the same way
        # (raw elementary streams cannot seek by time; a drained decoder needs a reset).
        self._close()
        self._container, self._stream = self._open_container()
        if self._next_pass_start_s is not None:
            # The frames of the new pass will be shifted to carry on from the last one (see
            # ``_output_pts``); its packets get the same shift, from the stream's first time.
            start, time_base = self._stream.start_time, self._stream.time_base
            first_s = float(start * time_base) if start is not None and time_base else 0.0
            self._tap_offset_s = self._next_pass_start_s - first_s

    def _close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container, self._stream = None, None


def _yuv_or_bgr(frame: av.video.frame.VideoFrame) -> YuvImage | np.ndarray:
    """``frame`` kept in its planes when they are 4:2:0, else converted to BGR."""
    image = yuv_image_of(frame)
    return frame.to_ndarray(format="bgr24") if image is None else image


def _duration_s(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def network_url_and_options(
    url: str, timeout_s: float, *, source: str
) -> tuple[str, dict[str, str]]:
    """FFmpeg URL and options for a network URI: timeouts, and RTSP over TCP unless asked.

    ``?transport=udp`` on an rtsp URI picks the RTSP transport (``tcp``, ``udp``,
    ``udp_multicast``, ``http``, ``https``); it is taken off the URL sent to the server.
    """
    timeout_us = str(round(timeout_s * 1_000_000))
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("rtsp", "rtsps"):
        query = parse_qsl(parts.query, keep_blank_values=True)
        transports = [value for key, value in query if key == "transport"]
        transport = transports[-1].lower() if transports else "tcp"
        if transport not in RTSP_TRANSPORTS:
            raise SourceError(
                f"unknown RTSP transport {transport!r}; "
                f"expected one of {', '.join(RTSP_TRANSPORTS)}",
                source=source,
            )
        kept = urlencode([(key, value) for key, value in query if key != "transport"])
        # FFmpeg >= 5 reads the RTSP `timeout` as the socket I/O timeout in microseconds.
        options = {"rtsp_transport": transport, "timeout": timeout_us}
        return urlunsplit(parts._replace(query=kept)), options
    if scheme in ("http", "https"):
        return url, {"timeout": timeout_us, "rw_timeout": timeout_us}
    return url, {"rw_timeout": timeout_us}


def _resolves(url: str) -> bool:
    hostname = urlsplit(url).hostname
    if not hostname:
        return True
    try:
        socket.getaddrinfo(hostname, None)
    except (OSError, UnicodeError):
        return False
    return True


def _host_of(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or url
    return f"{host}:{parts.port}" if parts.port else host


def diagnose_unreadable_file(path: Path) -> str:
    """Explain why FFmpeg found no container it could read in an existing file."""
    size = path.stat().st_size
    if size == 0:
        return f"the file is empty: {path}"
    with path.open("rb") as file:
        head = file.read(8)
    if head[4:8] != b"ftyp":
        return f"not a video file FFmpeg can read (unknown or unsupported container): {path}"
    boxes, cut_inside = _mp4_top_level_boxes(path, size)
    if "moov" not in boxes and cut_inside is not None:
        return (
            f"the file looks truncated or corrupt: it ends inside its {cut_inside!r} box after "
            f"{size} bytes, before the 'moov' index that an MP4 needs: {path}"
        )
    if "moov" not in boxes and boxes[-1] in ("mdat", "free", "skip", "wide"):
        return f"the MP4 has no 'moov' index (a recording that was not finished?): {path}"
    return f"the file looks corrupt: FFmpeg cannot parse its MP4 structure: {path}"


def _mp4_top_level_boxes(path: Path, size: int) -> tuple[list[str], str | None]:
    """Names of an MP4's top-level boxes, and the box the file ends inside of (if it does).

    The walk stops at the first box whose header is not a plausible one (damaged bytes).
    """
    names: list[str] = []
    offset = 0
    with path.open("rb") as file:
        while offset + 8 <= size:
            file.seek(offset)
            header = file.read(16)
            box_size, kind = struct.unpack(">I4s", header[:8])
            if not all(0x20 <= byte < 0x7F for byte in kind):
                return names, None
            name = kind.decode("ascii")
            if box_size == 1 and len(header) == 16:
                (box_size,) = struct.unpack(">Q", header[8:16])
            elif box_size == 0:  # the box runs to the end of the file
                box_size = size - offset
            names.append(name)
            if box_size < 8:
                return names, None
            if offset + box_size > size:
                return names, name
            offset += box_size
    return names, None
