"""Events from a real pipeline (the shared clip, yolox-nano, the tracker) to real brokers, compared
with the jsonl output of the same run; and a crash of ``panoptes run`` while the broker is down."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from event_brokers import (
    MqttCollector,
    Server,
    first_seen,
    free_port,
    mosquitto_server,
    read_kafka,
    read_redis,
)

from cli_tools import PANOPTES, panoptes
from panoptes import Bus, MessageType, Pipeline
from panoptes.events.payloads import DEEPSTREAM_UNTRACKED_ID

VIDEOS = Path(__file__).resolve().parents[2].parent / "shared" / "assets" / "videos"
CLIP = VIDEOS / "one-by-one-person-detection.mp4"
FRAMES = 120
"""Frames of each stream: the first person walks in at about frame 64."""


def jsonl_objects(path: Path) -> dict[str, list[tuple[int, dict[str, Any]]]]:
    """Per stream name, (frame_num, object) of every object the jsonl sink wrote, in order."""
    objects: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        record = json.loads(line)
        for obj in record["objects"]:
            objects[record["source"]].append((record["frame_num"], obj))
    return dict(objects)


def test_a_pipeline_delivers_to_every_broker_what_jsonl_writes(
    tmp_path: Path, mosquitto: Server, redis: Server, kafka: str
) -> None:
    collector = MqttCollector(mosquitto.port, "cams/#")
    redis_url = f"redis://127.0.0.1:{redis.port}/0"
    bus = Bus()
    pipeline = Pipeline(
        {
            "sources": [
                {"uri": str(CLIP), "name": name, "max_frames": FRAMES}
                for name in ("cam-a", "cam-b")
            ],
            "infer": [{"model": "yolox-nano"}],
            "tracker": {"type": "bytetrack"},
            "sinks": [
                {"type": "jsonl", "path": "out/meta.jsonl"},
                {
                    "type": "mqtt",
                    "host": "127.0.0.1",
                    "port": mosquitto.port,
                    "topic": "cams/{source_name}/objects",
                },
                {
                    "type": "redis",
                    "url": redis_url,
                    "stream": "ds:{source_id}",
                    "payload": "deepstream-full",
                },
                {
                    "type": "kafka",
                    "brokers": kafka,
                    "topic": "frames",
                    "payload": "deepstream-minimal",
                    "mode": "frames",
                },
            ],
            "perf": {"interval_s": 0},
        },
        base_dir=tmp_path,
        bus=bus,
    )
    try:
        summary = pipeline.run()
        expected = jsonl_objects(tmp_path / "out" / "meta.jsonl")
        count = sum(len(objects) for objects in expected.values())
        deadline = time.monotonic() + 10
        while len(collector.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # anything more than expected would come now
        mqtt = collector.payloads()
    finally:
        collector.close()
    assert summary.ok and summary.frames == 2 * FRAMES, summary.errors
    assert set(expected) == {"cam-a", "cam-b"} and count >= 60
    assert not bus.errors() and not [m for m in bus.history if m.type is MessageType.WARNING]
    for outbox in (tmp_path / "out").glob("outbox-*.sqlite"):
        with sqlite3.connect(outbox) as connection:
            assert connection.execute("SELECT COUNT(*) FROM events").fetchone() == (0,)
        connection.close()

    # MQTT, panoptes schema: each object once, exactly as jsonl wrote it, in order per stream.
    assert len(mqtt) == count and len({p["id"] for p in mqtt}) == count
    by_stream: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for topic, body in collector.messages:
        payload = json.loads(body)
        assert topic == f"cams/{payload['source']}/objects"
        by_stream[payload["source"]].append((payload["frame_num"], payload["object"]))
    assert by_stream == expected

    # Redis, DeepStream's full schema: one message per object, stream per source id.
    names = {0: "cam-a", 1: "cam-b"}
    for source_id, name in names.items():
        full = read_redis(redis_url, f"ds:{source_id}")
        assert len({p["messageid"] for p in full}) == len(full) == len(expected[name])
        for payload, (_, obj) in zip(full, expected[name], strict=True):
            assert payload["sensor"]["id"] == name and payload["mdsversion"] == "1.0"
            track = obj["track_id"]
            assert payload["object"]["id"] == str(
                DEEPSTREAM_UNTRACKED_ID if track is None else track
            )
            assert payload["object"][obj["label"]]["confidence"] == obj["confidence"]
            box = payload["object"]["bbox"]
            corners = [box[k] for k in ("topleftx", "toplefty", "bottomrightx", "bottomrighty")]
            assert all(abs(c - v) <= 1 for c, v in zip(corners, obj["bbox"], strict=True))
            assert set(payload) >= {"@timestamp", "place", "analyticsModule", "event", "videoPath"}

    # Kafka, DeepStream's minimal schema: one message per frame with objects, keyed by stream.
    frames_expected = sum(len({f for f, _ in objects}) for objects in expected.values())
    messages = read_kafka(kafka, "frames", frames_expected)
    assert len(messages) == frames_expected
    for name in names.values():
        minimal = [json.loads(m.value()) for m in messages if m.key() == name.encode()]
        assert len({p["messageid"] for p in minimal}) == len(minimal)
        assert [int(p["id"]) for p in minimal] == sorted({f for f, _ in expected[name]})
        strings = [(int(p["id"]), s) for p in minimal for s in p["objects"]]
        for (frame_num, text), (expected_frame, obj) in zip(strings, expected[name], strict=True):
            track, *corners, label = text.split("|")
            assert frame_num == expected_frame and label == obj["label"]
            assert track == str(
                DEEPSTREAM_UNTRACKED_ID if obj["track_id"] is None else obj["track_id"]
            )
            assert [float(c) for c in corners] == pytest.approx(obj["bbox"], abs=0.06)


@pytest.mark.slow
def test_a_pipeline_run_through_a_broker_restart(tmp_path: Path) -> None:
    """mosquitto stops (SIGTERM) at frame 150 of a run and starts again at frame 250; the
    broker keeps sessions on disk and the subscriber, with a persistent session, stays away
    until the run is over: every object the jsonl sink wrote arrives, in order."""
    server = mosquitto_server(tmp_path / "mosquitto", persistent=True)
    server.start()
    collector = MqttCollector(server.port, "door/#", client_id="restart", clean_session=False)
    bus = Bus()
    pipeline = Pipeline(
        {
            "sources": [{"uri": str(CLIP), "name": "door", "max_frames": 400}],
            "infer": [{"model": "yolox-nano"}],
            "tracker": {"type": "bytetrack", "name": "tracker"},
            "sinks": [
                {"type": "jsonl", "path": "out/meta.jsonl"},
                {
                    "type": "mqtt",
                    "host": "127.0.0.1",
                    "port": server.port,
                    "topic": "door/objects",
                    "retry_max_s": 0.5,
                },
            ],
            "perf": {"interval_s": 0},
        },
        base_dir=tmp_path,
        bus=bus,
    )

    def restart_broker(batch: Any) -> None:
        for frame in batch.frames:
            if frame.frame_num == 150:
                server.stop()
                collector.pause()
            elif frame.frame_num == 250:
                server.start()

    pipeline.add_probe("tracker", restart_broker)
    try:
        summary = pipeline.run()
        collector.resume()
        expected = jsonl_objects(tmp_path / "out" / "meta.jsonl")["door"]
        deadline = time.monotonic() + 20
        while len({p["id"] for p in collector.payloads()}) < len(expected):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        payloads = collector.payloads()
    finally:
        collector.close()
        server.stop()
    assert summary.ok, summary.errors
    assert [(p["frame_num"], p["object"]) for p in first_seen(payloads)] == expected
    warnings = [m.text for m in bus.history if m.type is MessageType.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("cannot deliver to the MQTT broker")


def read_outbox(path: Path, while_created: bool = False) -> list[str]:
    """Event ids in the outbox, oldest first (recovering what a killed process left).

    ``while_created``: the sink may be between creating the file and its table; none yet.
    """
    with sqlite3.connect(path) as connection:
        try:
            rows = connection.execute("SELECT event_id FROM events ORDER BY seq").fetchall()
        except sqlite3.OperationalError as error:
            if not (while_created and "no such table" in str(error)):
                raise
            rows = []
    connection.close()
    return [event_id for (event_id,) in rows]


def test_a_crash_while_the_broker_is_down_loses_nothing(tmp_path: Path) -> None:
    """``panoptes run`` with the broker down, killed with SIGKILL; then the broker starts, and
    the next ``panoptes run`` sends what the first left in the outbox, first and in order."""
    port = free_port()
    (tmp_path / "pipeline.yaml").write_text(
        f"""
sources:
  - uri: {CLIP}
    name: door
infer:
  - model: yolox-nano
tracker: {{type: bytetrack}}
sinks:
  - type: mqtt
    name: events
    host: 127.0.0.1
    port: {port}
    topic: crash/{{source_name}}
    retry_max_s: 0.5
"""
    )
    outbox = tmp_path / "out" / "outbox-events.sqlite"
    with (tmp_path / "first.log").open("w") as log:
        first = subprocess.Popen(
            [*PANOPTES, "run", "pipeline.yaml"],
            cwd=tmp_path,
            stdout=log,
            stderr=log,
            env=os.environ.copy(),
        )
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and first.poll() is None:
                if outbox.exists() and len(read_outbox(outbox, while_created=True)) >= 40:
                    break
                time.sleep(0.1)
            assert first.poll() is None, (tmp_path / "first.log").read_text()
            first.send_signal(signal.SIGKILL)
        finally:
            first.kill()
            first.wait(30)
    assert first.returncode == -signal.SIGKILL
    left = read_outbox(outbox)
    assert len(left) >= 40
    assert "cannot deliver to the MQTT broker" in (tmp_path / "first.log").read_text()

    server = mosquitto_server(tmp_path / "mosquitto", port=port)
    server.start()
    collector = MqttCollector(port, "crash/#")
    try:
        # A short second run: the first frames have nobody in them, so it adds no events.
        second = panoptes("run", "pipeline.yaml", "--set", "sources[0].max_frames=20", cwd=tmp_path)
        deadline = time.monotonic() + 10
        while len(collector.messages) < len(left) and time.monotonic() < deadline:
            time.sleep(0.05)
        payloads = collector.payloads()
    finally:
        collector.close()
        server.stop()
    assert second.returncode == 0, second.stdout + second.stderr
    assert "stay in the outbox" not in second.stdout + second.stderr
    assert [p["id"] for p in first_seen(payloads)] == left
    assert read_outbox(outbox) == []
