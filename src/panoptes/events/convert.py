"""The message converter (DeepStream's nvmsgconv): a batch's metadata in, event messages out.

Three modes choose what one message is about:

- ``objects``: one message per object per frame, at most one per ``min_interval_s`` for each
  tracked object (per stream and track id);
- ``frames``: one message per frame, with all its objects;
- ``events``: one message per analytics event (``frame.meta.events``: entered, exited, crossed,
  overcrowded ...).

and three payload schemas how it is written: ``panoptes`` (see docs/events.md),
``deepstream-full`` and ``deepstream-minimal`` (see :mod:`panoptes.events.payloads`). Every
message gets a unique id (a random UUID), written into its payload, so that consumers can drop the
duplicates an at-least-once delivery may bring.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from panoptes.core.errors import ConfigError
from panoptes.core.frame import Batch, Frame
from panoptes.core.meta import NO_ID, AnalyticsEvent
from panoptes.events import payloads
from panoptes.events.payloads import Scene

Payload = Literal["panoptes", "deepstream-full", "deepstream-minimal"]
Mode = Literal["objects", "frames", "events"]
PAYLOADS: tuple[str, ...] = get_args(Payload)
MODES: tuple[str, ...] = get_args(Mode)

UNSUPPORTED: Mapping[tuple[str, str], str] = {
    ("deepstream-full", "frames"): "DeepStream's full schema holds one object per message; use "
    "mode 'objects' with it, or payload 'deepstream-minimal' or 'panoptes' for one message per "
    "frame",
    ("deepstream-minimal", "events"): "DeepStream's minimal schema has no field for an event's "
    "type; use payload 'panoptes' or 'deepstream-full' for analytics events",
}
"""Payload and mode pairs that cannot be written, with the reason and the fix."""

_PRUNE_EVERY_FRAMES = 1000
"""How often (in frames of a stream) ``min_interval_s`` forgets tracks it would send again
anyway, so that its memory stays flat over days of new track ids."""


def payload_mode_problem(payload: str, mode: str) -> str | None:
    """Why ``payload`` cannot be written in ``mode``, or None when it can."""
    if payload not in PAYLOADS:
        return f"unknown payload {payload!r}; known: {', '.join(PAYLOADS)}"
    if mode not in MODES:
        return f"unknown mode {mode!r}; known: {', '.join(MODES)}"
    return UNSUPPORTED.get((payload, mode))


@dataclass(frozen=True, slots=True)
class EventMessage:
    """One converted event, ready for the outbox."""

    event_id: str
    source_id: int
    source_name: str
    payload: bytes
    """UTF-8 JSON."""


class EventConverter:
    """Turns batches into :class:`EventMessage` lists; keeps per-stream state for
    ``min_interval_s``, freed when a stream ends or a track terminates.

    Args:
        payload: the schema, one of :data:`PAYLOADS`.
        mode: what a message is about, one of :data:`MODES`.
        min_interval_s: ``objects`` mode: at least this long (stream time: the frame's
            ``pts_s``, else its capture time) between two messages about one tracked object.
            Untracked objects are sent on every frame.
        frame_interval: ``objects`` and ``frames`` modes: only frames whose number is a multiple
            of it (DeepStream's ``msg-conv-frame-interval``). Analytics events are never skipped.
        empty_frames: ``frames`` mode: also send frames without objects or events.
        scene: sensors, places and analytics modules for the DeepStream schemas.
        classifier_names: name of each secondary classifier by ``component_id``, the keys of its
            labels in the DeepStream full schema's object.
        new_id: makes event ids; a random UUID by default.

    Raises:
        ConfigError: an unknown payload or mode, a pair that cannot be written, or a negative
            interval.
    """

    def __init__(
        self,
        payload: str = "panoptes",
        mode: str = "objects",
        *,
        min_interval_s: float = 0.0,
        frame_interval: int = 1,
        empty_frames: bool = False,
        scene: Scene | None = None,
        classifier_names: Mapping[int, str] | None = None,
        new_id: Callable[[], str] | None = None,
    ) -> None:
        problem = payload_mode_problem(payload, mode)
        if problem:
            raise ConfigError(problem, "payload" if payload not in PAYLOADS else "mode")
        if min_interval_s < 0:
            raise ConfigError(f"must be 0 or more, not {min_interval_s}", "min_interval_s")
        if frame_interval < 1:
            raise ConfigError(f"must be 1 or more, not {frame_interval}", "frame_interval")
        self.payload = payload
        self.mode = mode
        self.min_interval_s = min_interval_s
        self.frame_interval = frame_interval
        self.empty_frames = empty_frames
        self.scene = scene or Scene()
        self.classifier_names = dict(classifier_names or {})
        self._new_id = new_id or _random_id
        self._last_sent_s: dict[int, dict[int, float]] = {}
        """Per stream, per track id: stream time of the last message about it."""
        self._frames_since_prune: dict[int, int] = {}

    def convert(self, batch: Batch) -> list[EventMessage]:
        """The messages for every frame of ``batch``, in frame order."""
        messages: list[EventMessage] = []
        for frame in batch.frames:
            messages.extend(self.convert_frame(frame))
        for track in batch.terminated_tracks:
            if track.source_id is not None:
                self._last_sent_s.get(track.source_id, {}).pop(track.track_id, None)
        for stream_event in batch.events:
            if stream_event.kind in ("ended", "removed"):
                self.forget(stream_event.source_id)
        return messages

    def convert_frame(self, frame: Frame) -> list[EventMessage]:
        """The messages of one frame (stream ends and terminated tracks come with batches)."""
        if self.mode == "events":
            return [self._event_message(frame, event) for event in frame.meta.events]
        if frame.frame_num % self.frame_interval:
            return []
        if self.mode == "frames":
            message = self._frame_message(frame)
            return [] if message is None else [message]
        return self._object_messages(frame)

    def forget(self, source_id: int) -> None:
        """Drop the state kept for a stream (it ended or was removed)."""
        self._last_sent_s.pop(source_id, None)
        self._frames_since_prune.pop(source_id, None)

    # -- modes ----------------------------------------------------------------------------------

    def _object_messages(self, frame: Frame) -> list[EventMessage]:
        objects = frame.meta.objects
        if not len(objects):
            return []
        due = self._due_rows(frame, objects.track_id)
        if not due:
            return []
        rows = objects.to_dicts()
        boxes = objects.xyxy.tolist()
        timestamp = payloads.rfc3339_ms(frame.capture_time_s)
        messages = []
        for index in due:
            row = rows[index]
            event_id = self._new_id()
            body: dict[str, Any]
            if self.payload == "panoptes":
                header = payloads.panoptes_header(frame, event_id, "object", timestamp)
                body = payloads.panoptes_object(header, row)
            elif self.payload == "deepstream-full":
                obj = payloads.deepstream_object(row, boxes[index], self.classifier_names)
                event = {"id": event_id, "type": ""}
                body = payloads.deepstream_full(frame, event_id, timestamp, self.scene, obj, event)
            else:
                strings = [payloads.deepstream_minimal_object(row, boxes[index])]
                body = payloads.deepstream_minimal(frame, event_id, timestamp, self.scene, strings)
            messages.append(_message(frame, event_id, body))
        return messages

    def _frame_message(self, frame: Frame) -> EventMessage | None:
        meta = frame.meta
        if not (len(meta.objects) or meta.events or self.empty_frames):
            return None
        rows = meta.objects.to_dicts()
        event_id = self._new_id()
        timestamp = payloads.rfc3339_ms(frame.capture_time_s)
        body: dict[str, Any]
        if self.payload == "panoptes":
            header = payloads.panoptes_header(frame, event_id, "frame", timestamp)
            body = payloads.panoptes_frame(header, frame, rows)
        else:
            boxes = meta.objects.xyxy.tolist()
            strings = [
                payloads.deepstream_minimal_object(row, xyxy)
                for row, xyxy in zip(rows, boxes, strict=True)
            ]
            body = payloads.deepstream_minimal(frame, event_id, timestamp, self.scene, strings)
        return _message(frame, event_id, body)

    def _event_message(self, frame: Frame, event: AnalyticsEvent) -> EventMessage:
        row, xyxy = _track_row(frame, event.track_id)
        event_id = self._new_id()
        timestamp = payloads.rfc3339_ms(frame.capture_time_s)
        body: dict[str, Any]
        if self.payload == "panoptes":
            header = payloads.panoptes_header(frame, event_id, "event", timestamp)
            body = payloads.panoptes_event(header, event, row)
        else:
            obj = payloads.deepstream_object(
                row, xyxy, self.classifier_names, track_id=event.track_id, label=event.label
            )
            detail = payloads.deepstream_event(event_id, event)
            body = payloads.deepstream_full(frame, event_id, timestamp, self.scene, obj, detail)
        return _message(frame, event_id, body)

    def _due_rows(self, frame: Frame, track_ids: np.ndarray) -> list[int]:
        """Rows to send on this frame: every row without ``min_interval_s``; else the untracked
        ones and the tracks not sent for ``min_interval_s`` of stream time."""
        if self.min_interval_s <= 0:
            return list(range(len(track_ids)))
        now_s = frame.pts_s if frame.pts_s is not None else frame.capture_time_s
        last_sent = self._last_sent_s.setdefault(frame.source_id, {})
        due = []
        for index, track_id in enumerate(track_ids.tolist()):
            if track_id == NO_ID:
                due.append(index)
                continue
            previous_s = last_sent.get(track_id)
            # A time that goes back (a looping file) starts the interval again.
            if previous_s is None or not 0 <= now_s - previous_s < self.min_interval_s:
                last_sent[track_id] = now_s
                due.append(index)
        seen = self._frames_since_prune.get(frame.source_id, 0) + 1
        self._frames_since_prune[frame.source_id] = seen
        if seen >= _PRUNE_EVERY_FRAMES:
            self._frames_since_prune[frame.source_id] = 0
            # A track whose interval has passed would be sent again anyway: forgetting it
            # changes nothing.
            for track_id in [
                t
                for t, sent_s in last_sent.items()
                if not 0 <= now_s - sent_s < self.min_interval_s
            ]:
                del last_sent[track_id]
        return due


def _track_row(
    frame: Frame, track_id: int | None
) -> tuple[dict[str, Any] | None, tuple[float, ...]]:
    """The frame's object with ``track_id`` as a ``to_dicts`` row and its unrounded box, or
    (None, a zero box)."""
    objects = frame.meta.objects
    if track_id is None or not np.any(objects.track_id == track_id):
        return None, (0.0, 0.0, 0.0, 0.0)
    row = int(np.flatnonzero(objects.track_id == track_id)[0])
    return objects.to_dicts()[row], tuple(objects.xyxy[row].tolist())


def _message(frame: Frame, event_id: str, body: dict[str, Any]) -> EventMessage:
    payload = _ENCODER.encode(body).encode()
    return EventMessage(event_id, frame.source_id, frame.source_name, payload)


def _random_id() -> str:
    return str(uuid.uuid4())


def _json_default(value: Any) -> Any:
    """numpy values and other objects in metadata: numbers and lists, else their repr."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return repr(value)


_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_json_default)
"""Compact JSON; made once, as ``json.dumps`` with a ``default`` makes one per call."""
