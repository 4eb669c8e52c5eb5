"""Serving video files over RTSP, looped at their real speed: what ``panoptes serve`` does.

H.264 clips go out as they are (demuxed, converted to Annex B, paced by their timestamps);
clips in other codecs (HEVC, MPEG-4, ...) are decoded and encoded to H.264 on the way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import FrameType

import av
import av.bitstream
import av.container
import av.error
import av.packet
import av.video.stream

from panoptes.core.errors import SourceError
from panoptes.media._av import diagnose_unreadable_file
from panoptes.media.rtsp.encoder import H264Encoder
from panoptes.media.rtsp.server import DEFAULT_PORT, H264Mount, RtspServer, normalize_path

__all__ = ["Clip", "FileFeeder", "probe_clip", "serve_files"]

#: The preset of clips that must be transcoded: the fastest, as serving is real time.
TRANSCODE_PRESET = "ultrafast"
#: Seconds the feeder may fall behind the clip's clock (a transcode slower than real time)
#: before it stops trying to catch up, rather than sending the backlog in a burst.
MAX_LAG_S = 1.0
#: Frame rate assumed for a stream that states none.
FALLBACK_FPS = 25.0

_POLL_S = 0.25


@dataclass(frozen=True)
class Clip:
    """A video file checked to be servable.

    Attributes:
        path: the file.
        codec: FFmpeg's name of its video codec (``"h264"``, ``"hevc"``, ...).
        size_wh: (width, height) in pixels.
        fps: frame rate (the stream's, or :data:`FALLBACK_FPS` when it states none).
    """

    path: Path
    codec: str
    size_wh: tuple[int, int]
    fps: float

    @property
    def transcode(self) -> bool:
        """Whether the clip is encoded to H.264 on the way (it is not H.264 already)."""
        return self.codec != "h264"

    @property
    def mount_path(self) -> str:
        """The RTSP path it is served at: ``/`` and the file name without its extension."""
        return normalize_path("/" + self.path.stem)


def probe_clip(path: str | Path) -> Clip:
    """Check that ``path`` is a video file that can be served, and describe it.

    Raises:
        SourceError: no such file, not readable, no video stream, or no decoder for its codec;
            the error names the file.
    """
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise SourceError("no such file", source=source)
    if path.is_dir():
        raise SourceError("a folder, not a video file", source=source)
    try:
        container = av.open(source)
    except PermissionError as exc:
        raise SourceError("permission denied", source=source) from exc
    except av.error.InvalidDataError as exc:
        reason = diagnose_unreadable_file(path).removesuffix(f": {path}")
        raise SourceError(reason, source=source) from exc
    except (av.error.FFmpegError, OSError) as exc:
        strerror = getattr(exc, "strerror", None) or str(exc)
        raise SourceError(f"cannot open: {strerror}", source=source) from exc
    with container:
        stream = container.streams.best("video")
        if not isinstance(stream, av.video.stream.VideoStream):
            raise SourceError("no video stream", source=source)
        context = stream.codec_context
        if context is None:
            raise SourceError(
                f"no decoder for its video codec ({stream.codec.name}) in this FFmpeg build",
                source=source,
            )
        rate = stream.guessed_rate or stream.average_rate
        return Clip(
            path=path,
            codec=context.name,
            size_wh=(context.width, context.height),
            fps=float(rate) if rate else FALLBACK_FPS,
        )


class FileFeeder:
    """Pushes a clip into a mount from a thread of its own, looped, at the clip's real speed.

    Timestamps keep increasing across loops: each pass starts where the previous one ended, so
    a client sees one endless stream. Raw elementary streams (``.h264``) carry no timestamps:
    their frames are timed in decode order at the stream's frame rate, which for a stream with
    B-frames makes the presentation times approximate.

    Attributes:
        error: what stopped the feeder, a :class:`SourceError` naming the file; ``None`` while it
            runs or when it was stopped.
        frames_pushed: access units pushed so far.
        loops: passes over the clip completed.
        corrupt_packets: packets the decoder rejected (transcoded clips only), skipped.
    """

    def __init__(self, clip: Clip, mount: H264Mount, *, loop: bool = True) -> None:
        self.clip = clip
        self.mount = mount
        self.loop = loop
        self.error: SourceError | None = None
        self.frames_pushed = 0
        self.loops = 0
        self.corrupt_packets = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._clock_origin_s: float | None = None
        self._encoder: H264Encoder | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"the feeder of {self.clip.path} was started before")
        self._thread = threading.Thread(
            target=self._run, name=f"rtsp-feeder-{self.clip.path.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Ask the feeder to stop; :meth:`join` waits for it."""
        self._stop.set()

    def join(self, timeout_s: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            offset_s = 0.0
            while not self._stop.is_set():
                pushed_before = self.frames_pushed
                offset_s = self._feed_pass(offset_s)
                if self.frames_pushed == pushed_before and not self._stop.is_set():
                    raise SourceError("no frame in the whole file", str(self.clip.path))
                self.loops += 1
                if not self.loop:
                    break
        except SourceError as exc:
            self.error = exc
        except Exception as exc:
            # A push refused by a server stopped before its feeders is how stopping can look.
            if not (self._stop.is_set() and isinstance(exc, RuntimeError)):
                strerror = getattr(exc, "strerror", None) or str(exc) or repr(exc)
                self.error = SourceError(
                    f"serving stopped after {self.frames_pushed} frames: {strerror}",
                    source=str(self.clip.path),
                )

    def _feed_pass(self, offset_s: float) -> float:
        """Push the whole clip once, its timestamps moved by ``offset_s``; returns where the
        next pass starts (the end of this one's last frame)."""
        with av.open(str(self.clip.path)) as container:
            stream = container.streams.best("video")
            assert isinstance(stream, av.video.stream.VideoStream)
            if self.clip.transcode:
                return self._transcode_pass(container, stream, offset_s)
            return self._copy_pass(container, stream, offset_s)

    def _copy_pass(
        self,
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        offset_s: float,
    ) -> float:
        # MP4 and MKV hold H.264 with length prefixes and the SPS and PPS in the header; the
        # filter turns it into Annex B with the SPS and PPS before every IDR.
        annexb = av.bitstream.BitStreamFilterContext("h264_mp4toannexb", stream)
        timeline = _Timeline(offset_s, self.clip.fps)
        for packet in container.demux(stream):
            if packet.dts is None and packet.pts is None and packet.size == 0:
                continue  # the demuxer's flush packet
            for unit in annexb.filter(packet):
                pts_s, send_s = timeline.place(unit)
                if not self._wait_until(send_s):
                    return timeline.end_s
                self.mount.push(bytes(unit), pts_s=pts_s, keyframe=unit.is_keyframe)
                self.frames_pushed += 1
        return timeline.end_s

    def _transcode_pass(
        self,
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        offset_s: float,
    ) -> float:
        stream.thread_type = "AUTO"  # frame and slice threads: HEVC decodes several times faster
        if self._encoder is None:
            width, height = self.clip.size_wh
            self._encoder = H264Encoder(width, height, self.clip.fps, preset=TRANSCODE_PRESET)
        encoder = self._encoder
        frame_s = 1 / self.clip.fps
        first_s: float | None = None
        end_s = offset_s
        decoded = 0
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                self.corrupt_packets += 1  # a damaged packet; the next key frame resyncs
                continue
            for frame in frames:
                time_s = frame.time if frame.time is not None else decoded * frame_s
                decoded += 1
                if first_s is None:
                    first_s = time_s
                pts_s = offset_s + time_s - first_s
                end_s = max(end_s, pts_s + frame_s)
                if not self._wait_until(pts_s):
                    return end_s
                for access_unit, keyframe in encoder.encode_frame(frame):
                    self.mount.push(access_unit, pts_s=pts_s, keyframe=keyframe)
                    self.frames_pushed += 1
        return end_s

    def _wait_until(self, media_s: float) -> bool:
        """Sleep until the clip's clock reaches ``media_s``; False once asked to stop."""
        now = time.monotonic()
        if self._clock_origin_s is None:
            self._clock_origin_s = now - media_s
        delay_s = self._clock_origin_s + media_s - now
        if delay_s < -MAX_LAG_S:
            self._clock_origin_s -= delay_s
        elif delay_s > 0:
            return not self._stop.wait(delay_s)
        return not self._stop.is_set()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<FileFeeder {str(self.clip.path)!r} -> {self.mount.path} {state}>"


class _Timeline:
    """Places a pass's packets on the stream's clock: presentation time and the time to send
    (decode order), both from the pass's first packet, moved by the pass's offset."""

    def __init__(self, offset_s: float, fps: float) -> None:
        self.offset_s = offset_s
        self.end_s = offset_s
        self._frame_s = 1 / fps
        self._first_s: float | None = None
        self._count = 0

    def place(self, packet: av.packet.Packet[av.video.stream.VideoStream]) -> tuple[float, float]:
        time_base = packet.time_base or Fraction(1, 90_000)
        pts = packet.pts if packet.pts is not None else packet.dts
        if pts is None:
            # Raw elementary streams carry no timestamps: count frames.
            pts_s = send_s = self._count * self._frame_s
        else:
            pts_s = float(pts * time_base)
            send_s = float(packet.dts * time_base) if packet.dts is not None else pts_s
        self._count += 1
        if self._first_s is None:
            # B-frames put the first decode time before the first presentation time.
            self._first_s = min(pts_s, send_s)
        duration_s = float(packet.duration * time_base) if packet.duration else self._frame_s
        pts_s += self.offset_s - self._first_s
        send_s += self.offset_s - self._first_s
        self.end_s = max(self.end_s, pts_s + duration_s)
        return pts_s, send_s


def serve_files(
    paths: Sequence[str | Path],
    *,
    host: str = "0.0.0.0",
    port: int = DEFAULT_PORT,
    show_url: Callable[[str], None] | None = None,
    show_note: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Serve each file, looped at its real speed, at ``rtsp://HOST:PORT/<file stem>`` until
    ``stop`` is set or, called from the main thread, until SIGINT or SIGTERM.

    Every file is checked before the server starts. Returns 0 once stopped, 1 when a file
    failed while being served (the error is shown).

    Args:
        show_url: called with each URL once the server is up (default: a line on stdout).
        show_note: called with notes (transcoding, stopping, errors) (default: stderr).

    Raises:
        SourceError: a file is missing, unreadable or has no video; two files share a stem.
        RtspServerError: the server cannot listen on ``host:port``.
    """
    show_url = show_url or _print_stdout
    show_note = show_note or _print_stderr
    if not paths:
        raise SourceError("no files to serve")
    clips = [probe_clip(path) for path in paths]
    by_mount: dict[str, Clip] = {}
    for clip in clips:
        other = by_mount.setdefault(clip.mount_path, clip)
        if other is not clip:
            raise SourceError(
                f"{other.path} and {clip.path} would both be served at {clip.mount_path}: "
                "rename one",
                source=str(clip.path),
            )
    stop = stop or threading.Event()
    server = RtspServer(host, port)
    server.start()
    feeders: list[FileFeeder] = []
    try:
        for clip in clips:
            if clip.transcode:
                show_note(
                    f"{clip.path.name}: {clip.codec} video is transcoded to H.264 "
                    f"(libx264 {TRANSCODE_PRESET}, {clip.size_wh[0]}x{clip.size_wh[1]})"
                )
            feeder = FileFeeder(clip, server.mount(clip.mount_path))
            feeder.start()
            feeders.append(feeder)
        for clip in clips:
            show_url(server.url(clip.mount_path))
        with _stop_on_signals(stop, show_note):
            while not stop.wait(_POLL_S):
                if any(feeder.error is not None for feeder in feeders):
                    break
    finally:
        for feeder in feeders:
            feeder.stop()
        for feeder in feeders:
            feeder.join()
        server.stop()
    failures = [feeder.error for feeder in feeders if feeder.error is not None]
    for error in failures:
        show_note(f"error: {error}")
    if not failures:
        show_note("stopped")
    return 1 if failures else 0


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event, show_note: Callable[[str], None]) -> Iterator[None]:
    """Set ``stop`` on SIGINT or SIGTERM (main thread only); a second signal exits at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[str] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signal.Signals(signum).name)
        if len(received) > 1:
            os._exit(130)
        stop.set()

    previous = {signum: signal.signal(signum, on_signal) for signum in _STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        show_note(f"{received[0]}: stopping")


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _print_stdout(text: str) -> None:
    print(text, flush=True)


def _print_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
