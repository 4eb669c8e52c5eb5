"""``record``: saves clips of a stream around events, without re-encoding (smart record).

DeepStream's smart record: on an analytics event, a probe's ``frame.request_recording()`` or a
:meth:`RecordElement.start` call, a clip from ``before_s`` before to ``after_s`` after, copied
from the stream's H.264/HEVC packets; its path goes into the events and a bus message.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from panoptes.core.bus import Message, MessageType
from panoptes.core.element import BuildContext, Element, ElementProperties
from panoptes.core.errors import ConfigError
from panoptes.core.frame import Batch, Frame
from panoptes.core.meta import AnalyticsEvent
from panoptes.core.negotiation import ANY_MEMORY
from panoptes.media.recorder import Recorder, RecordError, Recording

__all__ = ["RecordElement", "RecordError", "RecordProperties", "Recording"]


class RecordProperties(ElementProperties):
    """The ``record`` section; DeepStream's ``smart-rec-*`` keys in brackets."""

    name: str | None = Field(None, description="Element name.")
    dir: str = Field(
        "out/records",
        description="Folder of the clips, relative to the config's folder (smart-rec-dir-path).",
    )
    prefix: str = Field(
        "rec",
        description="Start of each clip's file name, which goes on with the stream's name, the "
        "wall-clock time of its first frame and a counter: "
        "rec_cam1_20250131-142501_0001.mp4 (smart-rec-file-prefix).",
    )
    container: Literal["mp4", "mkv"] = Field(
        "mp4", description="File format (smart-rec-container: 0 = mp4, 1 = mkv)."
    )
    cache_s: float = Field(
        20.0,
        gt=0,
        description="Seconds of each stream's compressed video kept in memory, in whole GOPs "
        "(smart-rec-cache): how far back a clip can start. Keep it above before_s by a GOP.",
    )
    before_s: float = Field(
        5.0, ge=0, description="Seconds recorded before the event (smart-rec-start-time)."
    )
    after_s: float = Field(
        10.0,
        ge=0,
        description="Seconds recorded after the event (smart-rec-duration); 0 = until stop() "
        "or default_duration_s.",
    )
    default_duration_s: float = Field(
        30.0,
        gt=0,
        description="Seconds recorded after an event that asks for after_s 0, unless stop() "
        "comes first (smart-rec-default-duration).",
    )
    min_interval_s: float = Field(
        0.0,
        ge=0,
        description="Least stream time between the end of a stream's clip and the event of its "
        "next one; events sooner start no clip, unless they extend one (smart-rec-interval).",
    )
    event_kinds: list[str] | None = Field(
        None,
        description="Kinds of analytics events that start a clip ('entered', 'crossed', "
        "'overcrowded'...); null = every kind, [] = none (only probes' requests and start()).",
    )
    sources: list[int | str] | None = Field(
        None,
        description="Streams to record, by source id or name; null = every stream. The others "
        "keep no packets in memory.",
    )

    @model_validator(mode="after")
    def _before_within_cache(self) -> RecordProperties:
        if self.before_s > self.cache_s:
            raise ValueError(
                f"before_s ({self.before_s:g}) is more than cache_s ({self.cache_s:g}): a clip "
                "reaches back only as far as the cache; raise cache_s"
            )
        return self


class RecordElement(Element):
    """Smart recording (see :class:`RecordProperties` for the settings).

    What starts a clip:

    - an analytics event on a frame (``frame.meta.events``) whose kind is in ``event_kinds``
      (every kind by default): the event gets the clip's path in ``extra["video_path"]``, which
      message converters send on (DeepStream's ``videoPath``);
    - a probe's ``frame.request_recording(before_s, after_s)``: an event of kind
      ``"recording"`` (rule ``"request"``) with the path is added to the frame;
    - :meth:`start`, from any thread (a REST handler); :meth:`stop` ends a clip early.

    A clip starts at the key frame at or before the wanted start, so up to one GOP earlier, and
    reaches back at most ``cache_s``. Events during a clip extend it instead of opening another.
    Each finished clip is announced on the bus (INFO; data: ``path``, ``source_id``,
    ``source``, ``start_s``, ``end_s``, ``reasons``); a clip that cannot be written is an ERROR
    for that clip only. At end of stream, on stop and when a stream ends or is removed, clips in
    progress are finished so that they play.

    Only streams of H.264 or HEVC packets are recorded (files and network streams decoded by
    FFmpeg); for the others (image folders, test patterns, other codecs) a warning says so once
    per stream. That is no error at build time: streams come and go at run time, and a file's or
    a camera's codec is known only once it is open.

    The element is the last of the processing chain, after every element that raises events and
    before the branch to the sinks; the pipeline calls :meth:`attach_source` for each stream when
    it starts, and the in-band end of the stream lets it go.
    """

    kind = "record"
    Properties = RecordProperties
    memory = ANY_MEMORY  # compressed packets, never pixels: frames may stay on the GPU

    props: RecordProperties

    def __init__(self, props: ElementProperties, *, name: str, context: BuildContext) -> None:
        super().__init__(props, name=name, context=context)
        self._recorder: Recorder | None = None
        self._sources: dict[int, Any] = {}
        self.clips = 0
        """Clips finished and written."""
        self.skipped = 0
        """Events and requests that started no clip (an unrecordable stream, min_interval_s)."""

    def build(self) -> None:
        directory = Path(self.props.dir).expanduser()
        if not directory.is_absolute():
            directory = self.context.base_dir / directory
        place = f"{self.context.place or 'record'}.dir"
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(
                f"cannot create the folder {directory}: {error.strerror or error}", place
            ) from error
        if not os.access(directory, os.W_OK | os.X_OK):
            raise ConfigError(f"cannot write into {directory}", place)
        self.directory = directory
        self._recorder = Recorder(
            directory,
            prefix=self.props.prefix,
            container=self.props.container,
            cache_s=self.props.cache_s,
            default_duration_s=self.props.default_duration_s,
            min_interval_s=self.props.min_interval_s,
            on_finished=self._on_finished,
            on_warning=self._on_warning,
        )

    @property
    def recorder(self) -> Recorder:
        if self._recorder is None:
            raise RecordError(f"{self.name}: not built yet (Pipeline.build() or start())")
        return self._recorder

    # -- the API -------------------------------------------------------------------------------

    def start(
        self,
        source_id: int,
        before_s: float | None = None,
        after_s: float | None = None,
        reason: str = "request",
    ) -> Path:
        """Record a clip of stream ``source_id`` around now (its newest packet). Thread-safe.

        Args:
            before_s: seconds before now; None = the section's ``before_s``.
            after_s: seconds after now; None = the section's ``after_s``; 0 = until
                :meth:`stop` or ``default_duration_s``.
            reason: why, kept with the clip and in its bus message (``"rest"``, an operator...).

        Returns:
            The path of the clip, written in the background; the bus announces it when it is
            finished. A call while a clip of the stream is being recorded extends that clip and
            returns its path.

        Raises:
            RecordError: no such stream, it cannot be recorded (not H.264/HEVC, or not in
                ``sources``), or its last clip ended less than ``min_interval_s`` ago.
            ValueError: a negative ``before_s`` or ``after_s``.
        """
        return self.recorder.start(
            source_id,
            at_s=None,
            before_s=self.props.before_s if before_s is None else before_s,
            after_s=self.props.after_s if after_s is None else after_s,
            reason=reason,
        )

    def stop(self, source_id: int) -> Path | None:
        """Finish the stream's clip now (DeepStream's NvDsSRStop); its path, or None when no
        clip was being recorded. Thread-safe."""
        return self.recorder.stop(source_id)

    def attach_source(self, source_id: int, name: str, source: Any) -> None:
        """Called by the pipeline when a stream starts, before its source opens: keep its
        packets when it is to be recorded. Thread-safe."""
        wanted = self.props.sources
        if wanted is not None and source_id not in wanted and name not in wanted:
            return
        recorder = self.recorder
        set_tap: Callable[[Any], bool] | None = getattr(source, "set_packet_tap", None)
        if set_tap is not None and set_tap(recorder.add_stream(source_id, name)):
            self._sources[source_id] = source
            return
        reason = (
            "it is not a compressed video stream (an image folder or a test pattern): only "
            "H.264 and HEVC streams are recorded, as they are, without re-encoding"
        )
        recorder.refuse_stream(source_id, name, reason)
        self._on_warning(source_id, name, f"cannot be recorded: {reason}")

    # -- the pipeline's side -------------------------------------------------------------------

    def process(self, batch: Batch) -> Batch:
        recorder = self.recorder
        kinds = self.props.event_kinds
        for frame in batch.frames:
            if not recorder.records(frame.source_id):
                continue
            for event in frame.meta.events:
                if kinds is None or event.kind in kinds:
                    path = self._record(frame, None, None, event.kind)
                    if path is not None:
                        event.extra["video_path"] = str(path)
            request = frame.meta.recording_request
            if request is not None:
                path = self._record(frame, request.before_s, request.after_s, "request")
                if path is not None:
                    frame.meta.events.append(
                        AnalyticsEvent(
                            kind="recording",
                            rule="request",
                            source_id=frame.source_id,
                            frame_num=frame.frame_num,
                            extra={"video_path": str(path)},
                        )
                    )
            recorder.advance(frame.source_id, frame.pts_s)
        for stream_event in batch.events:
            if stream_event.kind in ("ended", "removed"):
                self._release(stream_event.source_id)
        return batch

    def _record(
        self, frame: Frame, before_s: float | None, after_s: float | None, reason: str
    ) -> Path | None:
        try:
            return self.recorder.start(
                frame.source_id,
                at_s=frame.pts_s,
                before_s=self.props.before_s if before_s is None else before_s,
                after_s=self.props.after_s if after_s is None else after_s,
                reason=reason,
            )
        except RecordError:
            # An unrecordable stream was reported once when it started; min_interval_s was
            # asked for; an event older than the cache is a pipeline far behind. Counted.
            self.skipped += 1
            return None

    def _release(self, source_id: int) -> None:
        """The stream ended or was removed: finish its clip, free its ring, drop the tap."""
        self.recorder.end_stream(source_id)
        source = self._sources.pop(source_id, None)
        if source is not None:
            source.set_packet_tap(None)

    def drain(self) -> list[Batch]:
        # Every clip in progress is finished and written before the pipeline reports EOS.
        self.recorder.flush()
        return []

    def close(self) -> None:
        for source in self._sources.values():
            source.set_packet_tap(None)
        self._sources.clear()
        if self._recorder is not None:
            self._recorder.close()

    # -- bus messages (from the recorder's threads) ---------------------------------------------

    def _on_finished(self, recording: Recording) -> None:
        data = {
            "path": str(recording.path),
            "source_id": recording.source_id,
            "source": recording.source_name,
            "start_s": round(recording.start_s, 6),
            "end_s": round(recording.end_s, 6),
            "duration_s": round(recording.duration_s, 6),
            "reasons": list(recording.reasons),
        }
        if recording.error is not None:
            self.bus.error(
                self.name,
                f"{recording.source_name}: clip {recording.path} not written: {recording.error}",
                **data,
            )
            return
        self.clips += 1
        self.bus.post(
            Message(
                MessageType.INFO,
                self.name,
                f"{recording.source_name}: recorded {recording.path} "
                f"({recording.duration_s:.1f} s from {recording.start_s:.2f} s)",
                data,
            )
        )

    def _on_warning(self, source_id: int, name: str, text: str) -> None:
        self.bus.warning(self.name, f"{name}: {text}", source_id=source_id)
