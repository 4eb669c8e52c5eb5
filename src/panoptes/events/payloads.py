"""The payload schemas: panoptes' own JSON and DeepStream's two (nvmsgconv's ``PAYLOAD_DEEPSTREAM``
and ``PAYLOAD_DEEPSTREAM_MINIMAL``), built from a frame's metadata.

Each builder returns a JSON-ready dict. Boxes are in original-frame pixels. The DeepStream schemas
follow ``nvmsgconv/deepstream_schema/dsmeta_payload.cpp`` field for field (see docs/events.md),
with one addition: the minimal schema carries ``messageid``, the unique id every panoptes event
has, because its ``id`` is the frame number and cannot tell two messages apart.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from panoptes.core.frame import Frame
from panoptes.core.meta import NO_ID, AnalyticsEvent

PANOPTES_SCHEMA_VERSION = 1
"""``version`` of the panoptes payload; raised when a field changes meaning or goes away."""

DEEPSTREAM_UNTRACKED_ID = 2**64 - 1
"""DeepStream's ``UNTRACKED_OBJECT_ID`` (an all-ones ``guint64``): the ``object.id`` of an object
no tracker has seen, as nvmsgconv prints it."""

DEEPSTREAM_EVENT_TYPES: Mapping[str, str] = {"entered": "entry", "exited": "exit"}
"""Analytics event kinds that have a DeepStream ``NvDsEventType`` name; others keep their own."""

XYZ = tuple[float, float, float]


@dataclass(frozen=True)
class Sensor:
    """A DeepStream ``[sensorN]`` group: the camera of stream N."""

    id: str
    type: str = "Camera"
    description: str = ""
    location: XYZ = (0.0, 0.0, 0.0)
    """(lat, lon, alt)."""
    coordinate: XYZ = (0.0, 0.0, 0.0)
    """(x, y, z)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "description": self.description,
            "location": _lat_lon_alt(self.location),
            "coordinate": _xyz(self.coordinate),
        }


@dataclass(frozen=True)
class Place:
    """A DeepStream ``[placeN]`` group: where stream N's camera is."""

    id: str = ""
    name: str = ""
    type: str = ""
    location: XYZ = (0.0, 0.0, 0.0)
    coordinate: XYZ = (0.0, 0.0, 0.0)
    sub_fields: tuple[str, str, str] = ("", "", "")
    """``place-sub-field1..3``: written as the sub-place's id, name and level."""

    def to_dict(self) -> dict[str, Any]:
        sub_id, sub_name, sub_level = self.sub_fields
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "location": _lat_lon_alt(self.location),
            "place-sub-field": {
                "id": sub_id,
                "name": sub_name,
                "level": sub_level,
                "coordinate": _xyz(self.coordinate),
            },
        }


@dataclass(frozen=True)
class AnalyticsModule:
    """A DeepStream ``[analyticsN]`` group: what made stream N's metadata."""

    id: str = ""
    description: str = ""
    source: str = "panoptes"
    version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "description": self.description,
            "source": self.source,
            "version": self.version,
        }


@dataclass(frozen=True)
class Scene:
    """Per stream (by ``source_id``): its sensor, place and analytics module, as DeepStream's
    ``msg-conv-config`` describes them. A stream with no entry gets a sensor named after the
    stream and empty place and module fields."""

    sensors: Mapping[int, Sensor] = field(default_factory=dict)
    places: Mapping[int, Place] = field(default_factory=dict)
    analytics: Mapping[int, AnalyticsModule] = field(default_factory=dict)
    _dicts: dict[tuple[int, str], tuple[dict[str, Any], ...]] = field(
        default_factory=dict, compare=False, repr=False
    )
    """Per stream, its place, sensor and module as JSON-ready dicts, made once: every message
    of the full schema carries them. They are only read."""

    def dicts(self, frame: Frame) -> tuple[dict[str, Any], ...]:
        """(place, sensor, analyticsModule) of the full schema for ``frame``'s stream."""
        key = (frame.source_id, frame.source_name)
        found = self._dicts.get(key)
        if found is None:
            found = self._dicts[key] = (
                self.place(frame.source_id).to_dict(),
                self.sensor(frame).to_dict(),
                self.module(frame.source_id).to_dict(),
            )
        return found

    def sensor(self, frame: Frame) -> Sensor:
        return self.sensors.get(frame.source_id) or Sensor(id=frame.source_name)

    def place(self, source_id: int) -> Place:
        return self.places.get(source_id) or Place()

    def module(self, source_id: int) -> AnalyticsModule:
        return self.analytics.get(source_id) or AnalyticsModule(version=_panoptes_version())


def rfc3339_ms(time_s: float) -> str:
    """``2024-05-01T12:00:00.123Z``: UTC to the millisecond, as nvmsgconv writes ``@timestamp``."""
    seconds = int(time_s)
    millis = int((time_s - seconds) * 1000)  # truncated, as nvmsgconv does
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


# -- panoptes -------------------------------------------------------------------------------------


def panoptes_header(frame: Frame, event_id: str, kind: str, timestamp: str) -> dict[str, Any]:
    """The fields every panoptes payload starts with."""
    return {
        "id": event_id,
        "version": PANOPTES_SCHEMA_VERSION,
        "type": kind,
        "timestamp": timestamp,
        "source_id": frame.source_id,
        "source": frame.source_name,
        "frame_num": frame.frame_num,
        "pts_s": None if frame.pts_s is None else round(frame.pts_s, 6),
    }


def panoptes_object(header: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    return {**header, "object": row}


def panoptes_frame(
    header: dict[str, Any], frame: Frame, rows: list[dict[str, Any]]
) -> dict[str, Any]:
    payload = {**header, "objects": rows}
    if frame.meta.analytics:
        payload["analytics"] = frame.meta.analytics
    if frame.meta.events:
        payload["events"] = [event.to_dict() for event in frame.meta.events]
    return payload


def panoptes_event(
    header: dict[str, Any], event: AnalyticsEvent, row: dict[str, Any] | None
) -> dict[str, Any]:
    payload = {**header, "event": event.to_dict()}
    if row is not None:
        payload["object"] = row
    return payload


# -- DeepStream -----------------------------------------------------------------------------------


def deepstream_track_id(track_id: int | None) -> str:
    return str(DEEPSTREAM_UNTRACKED_ID if track_id is None or track_id == NO_ID else track_id)


def deepstream_object(
    row: dict[str, Any] | None,
    xyxy: Sequence[float],
    classifier_names: Mapping[int, str],
    *,
    track_id: int | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    """``object`` of the full schema from a row of ``Objects.to_dicts()`` and its unrounded box;
    without a row (an event about a track not on this frame), the id and label given and a
    zero box."""
    if row is not None:
        track_id, label = row["track_id"], row["label"]
    detail: dict[str, Any] = {"confidence": 0.0 if row is None else row["confidence"]}
    for classification in row.get("classifications", ()) if row is not None else ():
        name = classifier_names.get(
            classification["component_id"], f"classifier{classification['component_id']}"
        )
        detail[name] = classification["label"]
    x1, y1, x2, y2 = xyxy if row is not None else (0, 0, 0, 0)
    return {
        "id": deepstream_track_id(track_id),
        "speed": 0.0,
        "direction": 0.0,
        "orientation": 0.0,
        label or "object": detail,
        # nvmsgconv stores the box with json_object_set_int_member: truncated to whole pixels.
        "bbox": {
            "topleftx": int(x1),
            "toplefty": int(y1),
            "bottomrightx": int(x2),
            "bottomrighty": int(y2),
        },
        "location": {},
        "coordinate": {},
    }


def deepstream_full(
    frame: Frame,
    event_id: str,
    timestamp: str,
    scene: Scene,
    obj: dict[str, Any],
    event: dict[str, Any],
) -> dict[str, Any]:
    """nvmsgconv's full schema (``msg-conv-payload-type=0``), one object per message."""
    place, sensor, module = scene.dicts(frame)
    return {
        "messageid": event_id,
        "mdsversion": "1.0",
        "@timestamp": timestamp,
        "place": place,
        "sensor": sensor,
        "analyticsModule": module,
        "object": obj,
        "event": event,
        "videoPath": "",
    }


def deepstream_event(event_id: str, event: AnalyticsEvent) -> dict[str, Any]:
    """``event`` of the full schema for an analytics event: DeepStream's type name where there is
    one (entered → entry, exited → exit), the rule and the event's other fields beside it."""
    detail = {
        key: value
        for key, value in event.to_dict().items()
        if key not in ("kind", "track_id", "label", "class_id")
    }
    return {"id": event_id, "type": DEEPSTREAM_EVENT_TYPES.get(event.kind, event.kind), **detail}


def deepstream_minimal_object(row: dict[str, Any], xyxy: Sequence[float]) -> str:
    """``trackid|x1|y1|x2|y2|label`` (then ``|#|class labels...|confidence`` when secondary
    classifiers labelled it) from a row of ``Objects.to_dicts()`` and its unrounded box, numbers
    printed as C++ streams print them (6 significant digits)."""
    x1, y1, x2, y2 = xyxy
    text = f"{deepstream_track_id(row['track_id'])}|{x1:g}|{y1:g}|{x2:g}|{y2:g}|{row['label']}"
    classifications = row.get("classifications")
    if classifications:
        labels = "|".join(c["label"] for c in classifications)
        text += f"|#|{labels}|{row['confidence']:g}"
    return text


def deepstream_minimal(
    frame: Frame, event_id: str, timestamp: str, scene: Scene, objects: list[str]
) -> dict[str, Any]:
    """nvmsgconv's minimal schema (``msg-conv-payload-type=1``), plus ``messageid``."""
    return {
        "version": "4.0",
        "id": str(frame.frame_num),
        "@timestamp": timestamp,
        "sensorId": scene.sensor(frame).id,
        "objects": objects,
        "messageid": event_id,
    }


def _lat_lon_alt(values: XYZ) -> dict[str, float]:
    return {"lat": values[0], "lon": values[1], "alt": values[2]}


def _xyz(values: XYZ) -> dict[str, float]:
    return {"x": values[0], "y": values[1], "z": values[2]}


@functools.cache
def _panoptes_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("panoptes")
    except PackageNotFoundError:
        return ""
