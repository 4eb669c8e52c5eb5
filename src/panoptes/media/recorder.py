"""Smart recording: each stream's compressed packets kept in a ring, cut into clips without
re-encoding.

A reader hands each demuxed video packet to the tap made by :meth:`Recorder.add_stream`, before
decoding it. The ring keeps the last ``cache_s`` seconds as whole GOPs, so that it always starts
at a key frame (DeepStream's ``smart-rec-cache``). :meth:`Recorder.start` picks the key frame at
or before ``at_s - before_s``; the packets from there to ``at_s + after_s`` are remuxed by a
background thread into an mp4 or Matroska file whose timestamps start at 0. The bytes of the
stream are copied: nothing is decoded or encoded, so a clip costs almost no CPU.

Times are seconds of the reader's output timeline, the ``pts_s`` of the frames decoded from the
packets, so that a clip asked for at a frame's ``pts_s`` starts where that frame is.

A clip stays open until its consumer has passed its end (:meth:`Recorder.advance`): a reader
runs ahead of the pipeline, so a packet past the clip's end may come before the last event that
extends the clip. Overlapping requests extend one clip; they never open a second one.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
from av.video.stream import VideoStream

from panoptes.core.errors import PanoptesError
from panoptes.media._base import PacketTap

__all__ = ["CONTAINER_FORMATS", "RECORDABLE_CODECS", "RecordError", "Recorder", "Recording"]

RECORDABLE_CODECS = frozenset({"h264", "hevc"})
"""Codecs whose packets are recorded as they are."""

CONTAINER_FORMATS = {"mp4": "mp4", "mkv": "matroska"}
"""File suffix of each container, and FFmpeg's name of its muxer."""

TIME_TOLERANCE_S = 1e-6
"""Times closer than this are equal: ticks times a float time base are not exact (600000 ticks
of 1/200000 s are 3.0000000000000004 s)."""

MIN_KEY_FRAME_GAP_S = 60.0
"""A stream that sends no key frame for longer than this and twice ``cache_s`` has its ring
emptied (a warning says so): no clip could start in it, and memory must stay flat."""

FinishedCallback = Callable[["Recording"], None]
WarningCallback = Callable[[int, str, str], None]
"""Called as ``(source_id, source_name, text)``."""


class RecordError(PanoptesError, RuntimeError):
    """A clip cannot be started: unknown or unrecordable stream, or too soon after the last."""


@dataclass(frozen=True)
class Recording:
    """A clip that was finished (or that failed: ``error`` says why; no file is left then).

    ``start_s`` and ``end_s`` are stream times (the frames' ``pts_s``): the first frame of the
    file, a key frame, and the end of its last frame.
    """

    path: Path
    source_id: int
    source_name: str
    start_s: float
    end_s: float
    packets: int
    reasons: tuple[str, ...]
    error: str | None = None
    dropped: int = 0
    """Packets left out because their timestamp went back (a glitch of the source)."""

    @property
    def duration_s(self) -> float:
        return max(0.0, self.end_s - self.start_s)


@dataclass(frozen=True, slots=True)
class _Packet:
    """One compressed packet; times in ticks of the stream's time base, on the output
    timeline."""

    seq: int
    data: bytes
    pts: int
    dts: int | None
    duration: int
    is_keyframe: bool
    wall_s: float
    """``time.time()`` when it was demuxed."""

    @property
    def decode_ticks(self) -> int:
        return self.pts if self.dts is None else self.dts


class _CodecParameters:
    """The codec parameters of an input stream, kept past the closing of its container.

    PyAV makes an output stream from another *stream* (``add_stream_from_template`` reads the
    template's AVStream), and a reader closes its container when it ends, reconnects or loops:
    the copy lives in the single stream of an output container that is never written.
    """

    def __init__(self, stream: Any) -> None:
        self._holder = av.open(io.BytesIO(), "w", format="matroska")
        self.stream = self._holder.add_stream_from_template(stream, opaque=True)
        context = stream.codec_context
        self.codec_name: str = context.name
        self.time_base: Fraction = stream.time_base
        self.identity = (
            self.codec_name,
            context.width,
            context.height,
            bytes(context.extradata or b""),
            self.time_base,
        )
        """What must stay the same for packets of a new container to continue a clip."""


@dataclass(eq=False)
class _Clip:
    """A clip being recorded. The fields above ``output`` are the stream's (under the
    recorder's lock); ``output`` and below belong to the writer thread."""

    path: Path
    source_id: int
    source_name: str
    end_s: float
    """Packets that decode before this stream time belong to the clip."""
    after_s: float
    reasons: list[str]
    params: _CodecParameters | None = None
    """None while waiting for the stream's first key frame."""
    origin: int = 0
    """pts of its first packet (a key frame), in ticks: time 0 of the file."""
    last_seq: int = -1
    """``seq`` of the last packet handed to the writer."""
    fed_end_s: float | None = None
    """Stream time at the end of the latest frame handed to the writer."""
    complete: bool = False
    """A packet past ``end_s`` came: nothing more is written unless the clip is extended."""
    output: Any = None
    out_stream: Any = None
    written: int = 0
    dropped: int = 0
    last_dts: int | None = None
    end_ticks: int = 0
    error: str | None = None


class _StreamRing:
    """One stream's ring of packets and its clip; guarded by the recorder's lock."""

    def __init__(self, source_id: int, name: str) -> None:
        self.source_id = source_id
        self.name = name
        self.gops: deque[list[_Packet]] = deque()
        self.params: _CodecParameters | None = None
        self.input_stream: object | None = None
        self.tick_s = 0.0
        self.offset_s = 0.0
        self.offset_ticks = 0
        self.seq = itertools.count()
        self.latest_s: float | None = None
        """Largest pts seen, in seconds: where the stream is now."""
        self.last_decode_s: float | None = None
        self.clip: _Clip | None = None
        self.last_end_s: float | None = None
        """End of the stream's last finished clip."""
        self.last_path: Path | None = None
        self.last_start_s = 0.0
        self.refused: str | None = None
        """Why the stream cannot be recorded, once known."""
        self.closed = False
        self.warned: set[str] = set()

    def seconds(self, ticks: int) -> float:
        return ticks * self.tick_s

    def packets_after(self, seq: int) -> list[_Packet]:
        """The ring's packets after ``seq``, from the first key frame when the one right after
        ``seq`` is gone (a GOP without its start cannot be decoded)."""
        packets = [p for gop in self.gops for p in gop if p.seq > seq]
        if packets and packets[0].seq != seq + 1:
            keys = [i for i, p in enumerate(packets) if p.is_keyframe]
            packets = packets[keys[0] :] if keys else []
        return packets


class Recorder:
    """Keeps each stream's last ``cache_s`` seconds of packets and writes clips of them.

    Thread-safe: taps run in the source threads, :meth:`start` and the rest in any thread, and
    the files are written by one background thread of the recorder's own.

    Args:
        directory: the folder of the clips (it must exist).
        prefix: start of each file name: ``PREFIX_SOURCE_YYYYmmdd-HHMMSS_NNNN.mp4``.
        container: ``"mp4"`` or ``"mkv"``.
        cache_s: seconds of packets kept per stream.
        default_duration_s: length after the event of a clip asked for with ``after_s=0``
            (recorded until :meth:`stop`, or this long).
        min_interval_s: least stream time from the end of a stream's clip to the event of its
            next clip; a request sooner raises :class:`RecordError` (unless it extends a clip).
        on_finished: called with each :class:`Recording`, in the writer thread.
        on_warning: called as ``(source_id, name, text)`` once per stream and kind of problem
            (an unrecordable codec, no key frames, a failing tap).
    """

    def __init__(
        self,
        directory: Path,
        *,
        prefix: str = "rec",
        container: str = "mp4",
        cache_s: float = 20.0,
        default_duration_s: float = 30.0,
        min_interval_s: float = 0.0,
        on_finished: FinishedCallback | None = None,
        on_warning: WarningCallback | None = None,
    ) -> None:
        if container not in CONTAINER_FORMATS:
            known = ", ".join(CONTAINER_FORMATS)
            raise ValueError(f"unknown container {container!r}; known: {known}")
        self.directory = Path(directory)
        self.prefix = prefix
        self.container = container
        self.cache_s = cache_s
        self.default_duration_s = default_duration_s
        self.min_interval_s = min_interval_s
        self._on_finished = on_finished
        self._on_warning = on_warning
        self._lock = threading.Lock()
        self._streams: dict[int, _StreamRing] = {}
        self._counter = itertools.count(1)
        self._jobs: queue.SimpleQueue[tuple[_Clip, list[_Packet] | None] | threading.Event | None]
        self._jobs = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._closed = False
        self.callback_failures = 0
        """Exceptions raised by ``on_finished`` or ``on_warning``: counted, never passed on."""

    # -- streams -------------------------------------------------------------------------------

    def add_stream(self, source_id: int, name: str) -> PacketTap:
        """Start keeping the packets of a stream; returns the tap to give its reader."""
        ring = _StreamRing(source_id, name)
        with self._lock:
            previous = self._streams.get(source_id)
            if previous is not None:
                self._close_stream(previous)
            self._streams[source_id] = ring

        def tap(packet: av.Packet[VideoStream], offset_s: float) -> None:
            self._on_packet(ring, packet, offset_s)

        return tap

    def refuse_stream(self, source_id: int, name: str, reason: str) -> None:
        """Note a stream that cannot be recorded: :meth:`start` on it raises with ``reason``."""
        ring = _StreamRing(source_id, name)
        ring.refused = reason
        with self._lock:
            self._streams[source_id] = ring

    def records(self, source_id: int) -> bool:
        """Whether the stream was added (recordable or not)."""
        return source_id in self._streams

    def end_stream(self, source_id: int) -> None:
        """The stream ended or was removed: finish its clip and free its ring."""
        with self._lock:
            ring = self._streams.pop(source_id, None)
            if ring is not None:
                self._close_stream(ring)

    def _close_stream(self, ring: _StreamRing) -> None:
        ring.closed = True
        self._finish(ring)
        ring.gops.clear()

    # -- clips ---------------------------------------------------------------------------------

    def start(
        self,
        source_id: int,
        *,
        at_s: float | None = None,
        before_s: float,
        after_s: float,
        reason: str = "request",
    ) -> Path:
        """Record the stream from ``before_s`` seconds before ``at_s`` (a frame's ``pts_s``;
        None: the newest packet) to ``after_s`` after it; ``after_s=0``: until :meth:`stop` or
        ``default_duration_s``. Returns the clip's path, which is written in the background.

        The clip starts at the key frame at or before ``at_s - before_s`` (later when the cache
        does not reach back that far). A request while a clip of the stream is open extends it
        and returns its path.

        A request that the stream's last clip covers entirely returns that clip's path.

        Raises:
            RecordError: the stream is unknown, cannot be recorded, its last clip ended less
                than ``min_interval_s`` before ``at_s``, or the cache no longer holds
                ``at_s + after_s``.
        """
        if not before_s >= 0 or not after_s >= 0:
            raise ValueError(f"before_s and after_s must be 0 or more, not {before_s}, {after_s}")
        with self._lock:
            ring = self._streams.get(source_id)
            if ring is None or ring.closed:
                known = ", ".join(str(i) for i in sorted(self._streams)) or "none"
                raise RecordError(
                    f"no stream with source id {source_id} is recorded (recorded: {known})"
                )
            if ring.refused is not None:
                raise RecordError(f"{ring.name} cannot be recorded: {ring.refused}")
            if at_s is None:
                at_s = ring.latest_s if ring.latest_s is not None else 0.0
            end_s = at_s + (after_s if after_s > 0 else self.default_duration_s)
            clip = ring.clip
            if clip is not None:
                if at_s - before_s <= clip.end_s:
                    self._extend(ring, clip, end_s, reason)
                    return clip.path
                self._finish(ring)
            wanted_s = at_s - before_s
            if ring.last_end_s is not None:
                if (
                    ring.last_path is not None
                    and ring.last_start_s <= at_s
                    and end_s <= ring.last_end_s
                ):
                    return ring.last_path  # the last clip has it all
                gap_s = at_s - ring.last_end_s
                if self.min_interval_s > 0 and gap_s < self.min_interval_s:
                    raise RecordError(
                        f"{ring.name}: its last clip ended {gap_s:.1f} s before, less than "
                        f"min_interval_s ({self.min_interval_s:g} s)"
                    )
                wanted_s = max(wanted_s, ring.last_end_s)  # what the last clip has is not repeated
            gop = self._gop_at(ring, wanted_s)
            if gop and end_s <= ring.seconds(gop[0].pts):
                raise RecordError(
                    f"{ring.name}: {at_s:.2f} s is no longer in the cache, which starts at "
                    f"{ring.seconds(gop[0].pts):.2f} s (raise cache_s)"
                )
            wall_s = gop[0].wall_s if gop else time.time()
            clip = _Clip(
                path=self._path_for(ring.name, wall_s),
                source_id=source_id,
                source_name=ring.name,
                end_s=end_s,
                after_s=after_s if after_s > 0 else self.default_duration_s,
                reasons=[reason],
            )
            ring.clip = clip
            if gop:
                self._begin(ring, clip, gop[0])
                self._feed(ring, clip, ring.packets_after(gop[0].seq - 1))
            return clip.path

    def stop(self, source_id: int) -> Path | None:
        """Finish the stream's open clip now; its path, or None when none was open."""
        with self._lock:
            ring = self._streams.get(source_id)
            if ring is None or ring.clip is None:
                return None
            path = ring.clip.path
            self._finish(ring)
            return path

    def advance(self, source_id: int, pts_s: float | None) -> None:
        """The consumer reached ``pts_s`` of the stream: a clip that it has passed the end of,
        and whose packets are all there, can no longer be extended by an event, and is closed."""
        if pts_s is None:
            return
        with self._lock:
            ring = self._streams.get(source_id)
            clip = None if ring is None else ring.clip
            if ring is not None and clip is not None and clip.complete and pts_s >= clip.end_s:
                self._finish(ring)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Finish every open clip and wait until the files are written; False on timeout."""
        with self._lock:
            for ring in self._streams.values():
                self._finish(ring)
            if self._writer is None:
                return True
            done = threading.Event()
            self._jobs.put(done)
        return done.wait(timeout_s)

    def close(self, timeout_s: float | None = None) -> None:
        """Finish every clip, write it, and stop the writer thread. Closing twice is fine."""
        self.flush(timeout_s)
        with self._lock:
            self._closed = True
            for ring in self._streams.values():
                ring.closed = True
                ring.gops.clear()
            writer, self._writer = self._writer, None
            if writer is not None:
                self._jobs.put(None)
        if writer is not None:
            writer.join(timeout_s)

    # -- what the taps do (source threads) -----------------------------------------------------

    def _on_packet(
        self, ring: _StreamRing, packet: av.Packet[VideoStream], offset_s: float
    ) -> None:
        warnings: list[str] = []
        try:
            if ring.closed or ring.refused is not None:
                return
            new_container = packet.stream is not ring.input_stream or offset_s != ring.offset_s
            if new_container and not self._new_segment(ring, packet, offset_s, warnings):
                return
            pts, dts = packet.pts, packet.dts
            if pts is None:
                self._refuse(
                    ring, "its packets carry no timestamps (a raw H.264/HEVC stream?)", warnings
                )
                return
            offset = ring.offset_ticks
            record = _Packet(
                seq=next(ring.seq),
                data=bytes(packet),
                pts=pts + offset,
                dts=None if dts is None else dts + offset,
                duration=packet.duration or 0,
                is_keyframe=packet.is_keyframe,
                wall_s=time.time(),
            )
            with self._lock:
                if not ring.closed:
                    self._keep(ring, record, warnings)
                    clip = ring.clip
                    if clip is not None and not clip.complete:
                        if clip.params is None and record.is_keyframe:
                            self._begin(ring, clip, record)
                        if clip.params is not None:
                            self._feed(ring, clip, [record])
        except Exception as error:  # a bug here must not stop the stream: say so, once
            self._warn_once(ring, "tap", f"recording failed on a packet: {error!r}", warnings)
        finally:
            for text in warnings:
                self._call(self._on_warning, ring.source_id, ring.name, text)

    def _new_segment(
        self,
        ring: _StreamRing,
        packet: av.Packet[VideoStream],
        offset_s: float,
        warnings: list[str],
    ) -> bool:
        """A new container (the stream opened, reconnected or looped): copy its codec
        parameters; when they or the timeline do not carry on, finish the clip, empty the ring."""
        stream = packet.stream
        context = stream.codec_context
        codec = getattr(context, "name", None) or "unknown"
        if codec not in RECORDABLE_CODECS:
            self._refuse(
                ring,
                f"its codec is {codec}: only H.264 and HEVC are recorded, as they are, "
                "without re-encoding",
                warnings,
            )
            return False
        params = (
            ring.params if stream is ring.input_stream and ring.params else _CodecParameters(stream)
        )
        tick_s = float(params.time_base)
        offset_ticks = round(offset_s / tick_s)
        first = packet.dts if packet.dts is not None else packet.pts
        first_s = None if first is None else (first + offset_ticks) * tick_s
        with self._lock:
            carries_on = (
                ring.params is not None
                and ring.params.identity == params.identity
                and first_s is not None
                and ring.last_decode_s is not None
                and first_s > ring.last_decode_s
            )
            if not carries_on:
                self._finish(ring)
                ring.gops.clear()
                ring.latest_s = ring.last_decode_s = ring.last_end_s = None
                ring.last_path = None
            ring.input_stream = stream
            ring.params = params
            ring.tick_s = tick_s
            ring.offset_s, ring.offset_ticks = offset_s, offset_ticks
        return True

    def _refuse(self, ring: _StreamRing, reason: str, warnings: list[str]) -> None:
        with self._lock:
            ring.refused = reason
            self._finish(ring)
            ring.gops.clear()
        warnings.append(f"cannot be recorded: {reason}")

    def _keep(self, ring: _StreamRing, packet: _Packet, warnings: list[str]) -> None:
        """Add a packet to the ring (under the lock) and drop the GOPs older than ``cache_s``."""
        if packet.is_keyframe:
            ring.gops.append([packet])
        elif ring.gops:
            ring.gops[-1].append(packet)
        # else: before the stream's first key frame, where no clip can start
        pts_s = ring.seconds(packet.pts)
        ring.latest_s = pts_s if ring.latest_s is None else max(ring.latest_s, pts_s)
        ring.last_decode_s = ring.seconds(packet.decode_ticks)
        horizon_s = ring.latest_s - self.cache_s
        gops = ring.gops
        while len(gops) >= 2 and ring.seconds(gops[1][0].pts) <= horizon_s:
            gops.popleft()
        if len(gops) == 1:
            span_s = ring.latest_s - ring.seconds(gops[0][0].pts)
            if span_s > max(MIN_KEY_FRAME_GAP_S, 2 * self.cache_s):
                gops.clear()
                self._warn_once(
                    ring,
                    "key frames",
                    f"no key frame for {span_s:.0f} s: no clip can start until one comes",
                    warnings,
                )

    def _warn_once(self, ring: _StreamRing, kind: str, text: str, warnings: list[str]) -> None:
        if kind not in ring.warned:
            ring.warned.add(kind)
            warnings.append(text)

    # -- clip bookkeeping (under the lock) ------------------------------------------------------

    def _gop_at(self, ring: _StreamRing, wanted_s: float) -> list[_Packet] | None:
        """The latest GOP starting at or before ``wanted_s``; the oldest when none does (the
        cache does not reach back so far); None when there is no key frame yet."""
        chosen = ring.gops[0] if ring.gops else None
        for gop in ring.gops:
            if ring.seconds(gop[0].pts) > wanted_s + TIME_TOLERANCE_S:
                break
            chosen = gop
        return chosen

    def _begin(self, ring: _StreamRing, clip: _Clip, key_frame: _Packet) -> None:
        assert ring.params is not None
        clip.params = ring.params
        clip.origin = key_frame.pts
        clip.last_seq = key_frame.seq - 1
        # A clip that waited for a key frame records at least ``after_s`` from it.
        clip.end_s = max(clip.end_s, ring.seconds(key_frame.pts) + clip.after_s)

    def _feed(self, ring: _StreamRing, clip: _Clip, packets: list[_Packet]) -> None:
        """Hand the writer the packets that belong to the clip; mark it complete at the first
        one past its end."""
        batch: list[_Packet] = []
        for packet in packets:
            if packet.seq <= clip.last_seq:
                continue
            if ring.seconds(packet.decode_ticks) >= clip.end_s - TIME_TOLERANCE_S:
                clip.complete = True
                break
            batch.append(packet)
            clip.last_seq = packet.seq
            end_s = ring.seconds(packet.pts + packet.duration)
            clip.fed_end_s = end_s if clip.fed_end_s is None else max(clip.fed_end_s, end_s)
        if batch:
            self._submit(clip, batch)

    def _extend(self, ring: _StreamRing, clip: _Clip, end_s: float, reason: str) -> None:
        if reason not in clip.reasons:
            clip.reasons.append(reason)
        if end_s <= clip.end_s:
            return
        clip.end_s = end_s
        if clip.complete and clip.params is not None:
            clip.complete = False
            self._feed(ring, clip, ring.packets_after(clip.last_seq))

    def _finish(self, ring: _StreamRing) -> None:
        clip, ring.clip = ring.clip, None
        if clip is None:
            return
        if clip.fed_end_s is not None:
            ring.last_end_s, ring.last_path = clip.fed_end_s, clip.path
            ring.last_start_s = ring.seconds(clip.origin)
        self._submit(clip, None)

    def _submit(self, clip: _Clip, packets: list[_Packet] | None) -> None:
        if self._writer is None and not self._closed:
            self._writer = threading.Thread(target=self._write_loop, name="record", daemon=True)
            self._writer.start()
        self._jobs.put((clip, packets))

    def _path_for(self, name: str, wall_s: float) -> Path:
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "stream"
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(wall_s))
        while True:
            path = self.directory / f"{self.prefix}_{safe}_{stamp}_{next(self._counter):04d}"
            path = path.with_name(f"{path.name}.{self.container}")
            if not path.exists():
                return path

    # -- the writer thread ---------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if isinstance(job, threading.Event):
                job.set()
                continue
            clip, packets = job
            if clip.error is not None:
                continue  # it failed: the rest of it is dropped
            try:
                if packets is None:
                    self._close_clip(clip)
                else:
                    self._mux(clip, packets)
            except Exception as error:  # a full or failing disk: this clip only
                self._fail(clip, error)

    def _mux(self, clip: _Clip, packets: list[_Packet]) -> None:
        assert clip.params is not None
        time_base = clip.params.time_base
        if clip.output is None:
            clip.output = av.open(str(clip.path), "w", format=CONTAINER_FORMATS[self.container])
            clip.out_stream = clip.output.add_stream_from_template(clip.params.stream, opaque=True)
        for record in packets:
            dts = None if record.dts is None else record.dts - clip.origin
            if dts is not None and clip.last_dts is not None and dts <= clip.last_dts:
                clip.dropped += 1  # a muxer refuses a timestamp going back
                continue
            packet = av.Packet(record.data)
            packet.pts = record.pts - clip.origin
            packet.dts = dts
            packet.duration = record.duration
            packet.time_base = time_base
            packet.is_keyframe = record.is_keyframe
            packet.stream = clip.out_stream
            clip.output.mux(packet)
            clip.written += 1
            clip.last_dts = dts if dts is not None else clip.last_dts
            clip.end_ticks = max(clip.end_ticks, record.pts + record.duration - clip.origin)

    def _close_clip(self, clip: _Clip) -> None:
        if clip.output is None:
            self._fail(clip, None)
            return
        clip.output.close()
        clip.output = None
        self._call(self._on_finished, self._recording(clip))

    def _fail(self, clip: _Clip, error: BaseException | None) -> None:
        if error is None:
            clip.error = "nothing recorded: no key frame of the stream came before its end"
        else:
            clip.error = getattr(error, "strerror", None) or str(error) or repr(error)
        if clip.output is not None:
            # The file is given up (and removed): a failure to write its trailer changes nothing.
            with contextlib.suppress(Exception):
                clip.output.close()
            clip.output = None
        with contextlib.suppress(OSError):
            clip.path.unlink(missing_ok=True)
        self._call(self._on_finished, self._recording(clip))

    @staticmethod
    def _recording(clip: _Clip) -> Recording:
        tick_s = float(clip.params.time_base) if clip.params is not None else 0.0
        return Recording(
            path=clip.path,
            source_id=clip.source_id,
            source_name=clip.source_name,
            start_s=clip.origin * tick_s,
            end_s=(clip.origin + clip.end_ticks) * tick_s,
            packets=clip.written,
            reasons=tuple(clip.reasons),
            error=clip.error,
            dropped=clip.dropped,
        )

    def _call(self, callback: Callable[..., None] | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            self.callback_failures += 1
