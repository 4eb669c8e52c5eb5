"""The message converter on synthetic batches: modes, payload schemas, intervals, ids."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import numpy as np
import pytest
from event_brokers import make_frame

from panoptes import ConfigError, FinishedTrack
from panoptes.core.frame import Batch, StreamEvent
from panoptes.core.meta import AnalyticsEvent
from panoptes.events import MODES, PAYLOADS, EventConverter, payload_mode_problem
from panoptes.events.payloads import Scene, Sensor, rfc3339_ms

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")

ENTERED = AnalyticsEvent("entered", "door", 0, 5, track_id=1, label="person", class_id=0, count=3)
CROWDED = AnalyticsEvent("overcrowded", "hall", 0, 5, count=7, extra={"limit": 5})


def payloads(converter: EventConverter, *frames: Any) -> list[dict[str, Any]]:
    messages = converter.convert(Batch(list(frames)))
    return [json.loads(message.payload) for message in messages]


SUPPORTED = [
    (payload, mode)
    for payload, mode in itertools.product(PAYLOADS, MODES)
    if payload_mode_problem(payload, mode) is None
]


@pytest.mark.parametrize(("payload", "mode"), SUPPORTED)
def test_every_message_has_a_unique_id_in_its_payload(payload: str, mode: str) -> None:
    converter = EventConverter(payload, mode)
    frames = [make_frame(n, [1, 2, None], events=[ENTERED]) for n in range(3)]
    messages = converter.convert(Batch(frames))
    assert len(messages) == {"objects": 9, "frames": 3, "events": 3}[mode]
    ids = [message.event_id for message in messages]
    assert len(set(ids)) == len(ids) and all(UUID.fullmatch(i) for i in ids)
    key = {"panoptes": "id", "deepstream-full": "messageid", "deepstream-minimal": "messageid"}
    assert [json.loads(m.payload)[key[payload]] for m in messages] == ids


@pytest.mark.parametrize(
    ("payload", "mode", "problem"),
    [
        ("deepstream-full", "frames", "one object per message"),
        ("deepstream-minimal", "events", "no field for an event's type"),
        ("protobuf", "objects", "unknown payload 'protobuf'; known: panoptes"),
        ("panoptes", "tracks", "unknown mode 'tracks'; known: objects, frames, events"),
    ],
)
def test_what_cannot_be_written_is_refused(payload: str, mode: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)):
        EventConverter(payload, mode)


def test_panoptes_objects_carry_the_jsonl_object() -> None:
    frame = make_frame(7, [3, None], name="door")
    (first, second) = payloads(EventConverter(), frame)
    rows = frame.meta.objects.to_dicts()
    assert first["object"] == rows[0] and second["object"] == rows[1]
    assert {k: first[k] for k in ("version", "type", "source_id", "source", "frame_num")} == {
        "version": 1,
        "type": "object",
        "source_id": 0,
        "source": "door",
        "frame_num": 7,
    }
    assert first["pts_s"] == 0.7 and TIMESTAMP.fullmatch(first["timestamp"])
    assert first["timestamp"] == rfc3339_ms(frame.capture_time_s)


def test_panoptes_frames_carry_objects_analytics_and_events() -> None:
    frame = make_frame(4, [1, 2], events=[ENTERED, CROWDED])
    frame.meta.analytics["door"] = {"count": 3}
    (payload,) = payloads(EventConverter(mode="frames"), frame)
    assert payload["type"] == "frame"
    assert payload["objects"] == frame.meta.objects.to_dicts()
    assert payload["analytics"] == {"door": {"count": 3}}
    assert payload["events"] == [ENTERED.to_dict(), CROWDED.to_dict()]


def test_frames_mode_skips_empty_frames_unless_asked() -> None:
    empty = make_frame(0)
    assert payloads(EventConverter(mode="frames"), empty) == []
    (payload,) = payloads(EventConverter(mode="frames", empty_frames=True), empty)
    assert payload["objects"] == []


def test_panoptes_events_carry_the_event_and_its_object() -> None:
    frame = make_frame(5, [1, 2], events=[ENTERED, CROWDED])
    entered, crowded = payloads(EventConverter(mode="events"), frame)
    assert entered["type"] == "event" and entered["event"] == ENTERED.to_dict()
    assert entered["object"] == frame.meta.objects.to_dicts()[0]
    assert crowded["event"] == {"kind": "overcrowded", "rule": "hall", "count": 7, "limit": 5}
    assert "object" not in crowded


def test_events_mode_sends_only_analytics_events() -> None:
    converter = EventConverter(mode="events", frame_interval=10, min_interval_s=60)
    # Events are never skipped, whatever the intervals.
    assert len(payloads(converter, make_frame(3, [1]), make_frame(4, [1], events=[ENTERED]))) == 1
    assert len(payloads(converter, make_frame(5, [1], events=[ENTERED]))) == 1


def test_deepstream_full_schema_fields() -> None:
    frame = make_frame(9, [12], name="gate")
    frame.meta.objects.classifications[0].append((2, "red", 0.8))
    scene = Scene(sensors={0: Sensor("CAM-7", description="gate", location=(45.3, -75.8, 48.2))})
    converter = EventConverter("deepstream-full", classifier_names={2: "color"}, scene=scene)
    (payload,) = payloads(converter, frame)
    assert list(payload) == [
        "messageid",
        "mdsversion",
        "@timestamp",
        "place",
        "sensor",
        "analyticsModule",
        "object",
        "event",
        "videoPath",
    ]
    assert payload["mdsversion"] == "1.0" and TIMESTAMP.fullmatch(payload["@timestamp"])
    assert payload["sensor"] == {
        "id": "CAM-7",
        "type": "Camera",
        "description": "gate",
        "location": {"lat": 45.3, "lon": -75.8, "alt": 48.2},
        "coordinate": {"x": 0.0, "y": 0.0, "z": 0.0},
    }
    assert set(payload["place"]) == {"id", "name", "type", "location", "place-sub-field"}
    assert set(payload["analyticsModule"]) == {"id", "description", "source", "version"}
    x1, y1, x2, y2 = frame.meta.objects.xyxy[0].tolist()
    assert payload["object"] == {
        "id": "12",
        "speed": 0.0,
        "direction": 0.0,
        "orientation": 0.0,
        "person": {"confidence": pytest.approx(0.9), "color": "red"},
        "bbox": {
            "topleftx": int(x1),
            "toplefty": int(y1),
            "bottomrightx": int(x2),
            "bottomrighty": int(y2),
        },
        "location": {},
        "coordinate": {},
    }
    assert payload["event"] == {"id": payload["messageid"], "type": ""}
    assert payload["videoPath"] == ""


def test_deepstream_full_events_name_the_event_type() -> None:
    frame = make_frame(5, [1], events=[ENTERED, CROWDED])
    entered, crowded = payloads(EventConverter("deepstream-full", "events"), frame)
    assert entered["event"] == {
        "id": entered["messageid"],
        "type": "entry",
        "rule": "door",
        "count": 3,
    }
    assert entered["object"]["id"] == "1" and "person" in entered["object"]
    assert crowded["event"]["type"] == "overcrowded"
    # A zone-wide event concerns no object: DeepStream's untracked id and an empty box.
    assert crowded["object"]["id"] == str(2**64 - 1)
    assert crowded["object"]["bbox"] == dict.fromkeys(
        ("topleftx", "toplefty", "bottomrightx", "bottomrighty"), 0
    )


def test_deepstream_minimal_schema_fields() -> None:
    frame = make_frame(11, [4, None], name="dock")
    frame.meta.objects.classifications[0].append((2, "sedan", 0.7))
    (payload,) = payloads(EventConverter("deepstream-minimal", "frames"), frame)
    assert list(payload) == ["version", "id", "@timestamp", "sensorId", "objects", "messageid"]
    assert payload["version"] == "4.0" and payload["id"] == "11"
    assert payload["sensorId"] == "dock"
    tracked, untracked = payload["objects"]
    x1, y1, x2, y2 = frame.meta.objects.xyxy[0].tolist()
    assert tracked == f"4|{x1:g}|{y1:g}|{x2:g}|{y2:g}|person|#|sedan|0.9"
    assert untracked.startswith(f"{2**64 - 1}|") and untracked.endswith("|person")


def test_min_interval_per_stream_and_track() -> None:
    converter = EventConverter(min_interval_s=1.0)
    sent: list[tuple[int, int, int | None]] = []
    for n in range(25):  # 10 fps: 2.5 s
        frames = [make_frame(n, [1, 2, None], source_id=s) for s in (0, 1)]
        for payload in payloads(converter, *frames):
            sent.append((payload["source_id"], payload["frame_num"], payload["object"]["track_id"]))
    for source in (0, 1):
        for track in (1, 2):
            assert [f for s, f, t in sent if (s, t) == (source, track)] == [0, 10, 20]
        # Untracked objects cannot be told apart over time: every one is sent.
        assert len([f for s, f, t in sent if (s, t) == (source, None)]) == 25


def test_min_interval_starts_again_when_time_goes_back() -> None:
    converter = EventConverter(min_interval_s=1.0)
    assert len(payloads(converter, make_frame(30, [1]))) == 1
    assert len(payloads(converter, make_frame(31, [1]))) == 0
    assert len(payloads(converter, make_frame(0, [1]))) == 1  # a looping file starts over


def test_stream_end_and_terminated_tracks_free_their_state() -> None:
    converter = EventConverter(min_interval_s=100.0)
    converter.convert(Batch([make_frame(0, [1, 2]), make_frame(0, [1], source_id=1)]))
    ended = FinishedTrack(2, 0, 0, 0, 0, 1, (0, 0, 1, 1), "lost", source_id=0, label="person")
    converter.convert(
        Batch([], terminated_tracks=[ended], events=[StreamEvent("ended", 1, "cam1")])
    )
    # Track 2 of stream 0 and everything of stream 1 are new again; track 1 of stream 0 is not.
    again = payloads(converter, make_frame(1, [1, 2]), make_frame(1, [1], source_id=1))
    assert [(p["source_id"], p["object"]["track_id"]) for p in again] == [(0, 2), (1, 1)]


def test_min_interval_state_stays_flat_with_new_tracks() -> None:
    converter = EventConverter(min_interval_s=0.5)
    for n in range(3000):
        converter.convert(Batch([make_frame(n, [n])]))
    # Only the tracks of the last half second or so are remembered.
    assert len(converter._last_sent_s[0]) < 1100


def test_frame_interval_keeps_every_nth_frame() -> None:
    converter = EventConverter(mode="frames", frame_interval=5)
    frames = [make_frame(n, [1]) for n in range(12)]
    assert [p["frame_num"] for p in payloads(converter, *frames)] == [0, 5, 10]


def test_numpy_values_in_metadata_become_json() -> None:
    frame = make_frame(0, [1])
    frame.meta.objects.user_meta[0] = {"embedding": np.arange(3, dtype=np.float32)}
    frame.meta.analytics["zone"] = {"count": np.int64(2)}
    (payload,) = payloads(EventConverter(mode="frames"), frame)
    assert payload["objects"][0]["user_meta"] == {"embedding": [0.0, 1.0, 2.0]}
    assert payload["analytics"] == {"zone": {"count": 2}}


@pytest.mark.parametrize(
    ("time_s", "text"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1_700_000_000.9999, "2023-11-14T22:13:20.999Z"),
        (1_700_000_000.5, "2023-11-14T22:13:20.500Z"),
    ],
)
def test_timestamps_are_utc_to_the_millisecond(time_s: float, text: str) -> None:
    assert rfc3339_ms(time_s) == text
