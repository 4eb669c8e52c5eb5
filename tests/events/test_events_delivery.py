"""Broker sinks delivering to real brokers: mosquitto, redis-server, librdkafka's mock cluster.

Events are read back by real consumers and checked: each arrived (once, when nothing went
wrong), in order per stream, with the payload that was produced. The outage tests stop and
start mosquitto under a running sink.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from event_brokers import (
    MqttCollector,
    Server,
    batches,
    build_sink,
    first_seen,
    free_port,
    make_certificates,
    make_frame,
    mosquitto_server,
    read_kafka,
    read_redis,
)

from panoptes import Bus, MessageType
from panoptes.core.frame import Batch
from panoptes.core.meta import AnalyticsEvent


def expected_objects(sent: list[Batch]) -> dict[int, list[tuple[int, int]]]:
    """Per stream, (frame_num, track_id) of every object, in the order sent."""
    order: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for batch in sent:
        for frame in batch.frames:
            for track in frame.meta.objects.track_id.tolist():
                order[frame.source_id].append((frame.frame_num, track))
    return dict(order)


def arrived_objects(payloads: list[dict[str, Any]]) -> dict[int, list[tuple[int, int]]]:
    order: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for payload in payloads:
        order[payload["source_id"]].append((payload["frame_num"], payload["object"]["track_id"]))
    return dict(order)


def messages_of(bus: Bus, kind: MessageType) -> list[str]:
    return [message.text for message in bus.history if message.type is kind]


def deliver(sink: Any, sent: list[Batch]) -> None:
    try:
        for batch in sent:
            sink.process(batch)
        sink.drain()
    finally:
        sink.close()


def test_mqtt_delivers_every_event_once_in_order(tmp_path: Path, mosquitto: Server) -> None:
    collector = MqttCollector(mosquitto.port, "cams/#")
    bus = Bus()
    sink = build_sink(
        "mqtt", tmp_path, bus, host="127.0.0.1", port=mosquitto.port, topic="cams/{source_name}"
    )
    sent = batches(60, tracks_per_frame=3, sources=2)
    try:
        deliver(sink, sent)
        collector.wait_for([], timeout_s=0)
        deadline = time.monotonic() + 10
        while len(collector.messages) < 360 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        collector.close()
    payloads = collector.payloads()
    assert len(payloads) == 360 and len({p["id"] for p in payloads}) == 360
    assert arrived_objects(payloads) == expected_objects(sent)
    assert {topic for topic, _ in collector.messages} == {"cams/cam0", "cams/cam1"}
    assert all(topic == f"cams/{json.loads(body)['source']}" for topic, body in collector.messages)
    assert sink.sender is not None and sink.sender.delivered == 360
    assert len(sink.outbox or []) == 0 and not bus.errors()
    assert not messages_of(bus, MessageType.WARNING)


def test_mqtt_over_tls_and_a_broker_it_cannot_trust(tmp_path: Path) -> None:
    tls = make_certificates(tmp_path / "certs")
    server = mosquitto_server(tmp_path / "mosquitto", tls=tls)
    server.start()
    collector = MqttCollector(server.port, "panoptes/#", ca_certs=tls.ca)
    try:
        trusted = build_sink(
            "mqtt", tmp_path, host="127.0.0.1", port=server.port, ca_certs=str(tls.ca)
        )
        deliver(trusted, batches(10))
        deadline = time.monotonic() + 10
        while len(collector.messages) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(collector.payloads()) == 20
        # A broker whose certificate another CA signed is not a build error: the events wait.
        other = make_certificates(tmp_path / "other", "other")
        bus = Bus()
        untrusted = build_sink(
            "mqtt",
            tmp_path,
            bus,
            host="127.0.0.1",
            port=server.port,
            ca_certs=str(other.ca),
            outbox=str(tmp_path / "untrusted.sqlite"),
            drain_timeout_s=0.5,
        )
        deliver(untrusted, batches(2))
    finally:
        collector.close()
        server.stop()
    warning = next(m for m in messages_of(bus, MessageType.WARNING) if "cannot deliver" in m)
    assert "certificate verify failed" in warning
    assert len(untrusted.outbox or []) == 4


def test_redis_delivers_every_event_once_in_order(tmp_path: Path, redis: Server) -> None:
    url = f"redis://127.0.0.1:{redis.port}/0"
    bus = Bus()
    sink = build_sink("redis", tmp_path, bus, url=url, stream="objects:{source_id}")
    sent = batches(60, tracks_per_frame=3, sources=2)
    deliver(sink, sent)
    streams = {s: read_redis(url, f"objects:{s}") for s in (0, 1)}
    assert sum(len(p) for p in streams.values()) == 360
    assert arrived_objects(streams[0] + streams[1]) == expected_objects(sent)
    assert not bus.errors() and not messages_of(bus, MessageType.WARNING)


def test_kafka_delivers_every_event_once_in_order(tmp_path: Path, kafka: str) -> None:
    bus = Bus()
    sink = build_sink("kafka", tmp_path, bus, brokers=kafka, topic="objects")
    sent = batches(60, tracks_per_frame=3, sources=2)
    deliver(sink, sent)
    messages = read_kafka(kafka, "objects", 360)
    assert len(messages) == 360
    payloads = [json.loads(m.value()) for m in messages]
    assert len({p["id"] for p in payloads}) == 360
    # Keyed by stream: each stream's events are in one partition, in order.
    assert {m.key(): {m.partition()} for m in messages} == {
        key: {m.partition() for m in messages if m.key() == key} for key in (b"cam0", b"cam1")
    }
    assert arrived_objects(payloads) == expected_objects(sent)
    assert not bus.errors() and not messages_of(bus, MessageType.WARNING)


def test_kafka_refused_events_are_reported_and_the_rest_delivered(
    tmp_path: Path, kafka: str
) -> None:
    bus = Bus()
    sink = build_sink(
        "kafka",
        tmp_path,
        bus,
        brokers=kafka,
        topic="frames",
        mode="frames",
        config={"message.max.bytes": 2000},
    )
    crowded = make_frame(1, list(range(40)))  # a payload larger than the broker takes
    deliver(sink, [Batch([make_frame(0, [1])]), Batch([crowded]), Batch([make_frame(2, [1])])])
    payloads = [json.loads(m.value()) for m in read_kafka(kafka, "frames", 2)]
    assert [p["frame_num"] for p in payloads] == [0, 2]
    (error,) = messages_of(bus, MessageType.ERROR)
    assert "refused event #2 for good" in error and "it is dropped (1 so far)" in error
    assert len(sink.outbox or []) == 0


def test_frames_and_events_modes_through_redis(tmp_path: Path, redis: Server) -> None:
    url = f"redis://127.0.0.1:{redis.port}/0"
    entered = AnalyticsEvent("entered", "door", 0, 3, track_id=1, label="person", count=1)
    crossed = AnalyticsEvent("crossed", "line", 0, 5, track_id=2, direction="in", count=4)
    sent = [Batch([make_frame(n, [1, 2], events=[entered] if n == 3 else [])]) for n in range(4)]
    sent.append(Batch([make_frame(5, [2], events=[crossed])]))
    frames = build_sink(
        "redis",
        tmp_path,
        url=url,
        stream="frames",
        payload="deepstream-minimal",
        mode="frames",
        outbox=str(tmp_path / "frames.sqlite"),
        maxlen=1000,
    )
    events = build_sink(
        "redis",
        tmp_path,
        url=url,
        stream="events",
        payload="deepstream-full",
        mode="events",
        outbox=str(tmp_path / "events.sqlite"),
        payload_key="data",
    )
    deliver(frames, sent)
    deliver(events, sent)
    minimal = read_redis(url, "frames")
    assert [p["id"] for p in minimal] == ["0", "1", "2", "3", "5"]
    assert all(len(p["objects"]) == 2 for p in minimal[:4]) and len(minimal[4]["objects"]) == 1
    assert minimal[0]["objects"][0].startswith("1|") and minimal[0]["objects"][0].endswith(
        "|person"
    )
    full = read_redis(url, "events", payload_key="data")
    assert [(p["event"]["type"], p["object"]["id"]) for p in full] == [
        ("entry", "1"),
        ("crossed", "2"),
    ]
    assert full[1]["event"] == {
        "id": full[1]["messageid"],
        "type": "crossed",
        "rule": "line",
        "direction": "in",
        "count": 4,
    }


def test_redis_maxlen_trims_the_stream(tmp_path: Path, redis: Server) -> None:
    import redis as redis_py

    url = f"redis://127.0.0.1:{redis.port}/0"
    deliver(build_sink("redis", tmp_path, url=url, stream="trimmed", maxlen=10), batches(300))
    client = redis_py.Redis.from_url(url)
    try:
        # Approximate trimming (MAXLEN ~) keeps at least 10 and far fewer than the 600 sent.
        assert 10 <= client.xlen("trimmed") < 600
    finally:
        client.close()


def test_a_broker_that_comes_up_later_gets_everything(tmp_path: Path) -> None:
    server = mosquitto_server(tmp_path / "mosquitto")
    bus = Bus()
    sink = build_sink(
        "mqtt",
        tmp_path,
        bus,
        host="127.0.0.1",
        port=server.port,
        retry_max_s=0.2,
        drain_timeout_s=20,
    )
    sent = batches(20)
    try:
        for batch in sent[:10]:
            sink.process(batch)
        assert sink.outbox is not None
        deadline = time.monotonic() + 10
        while not messages_of(bus, MessageType.WARNING) and time.monotonic() < deadline:
            time.sleep(0.02)
        server.start()
        collector = MqttCollector(server.port, "panoptes/#")
        try:
            for batch in sent[10:]:
                sink.process(batch)
            sink.drain()
            sink.close()
            collector.wait_for([], timeout_s=0)
            deadline = time.monotonic() + 10
            while len(collector.messages) < 40 and time.monotonic() < deadline:
                time.sleep(0.05)
            payloads = collector.payloads()
        finally:
            collector.close()
    finally:
        sink.close()
        server.stop()
    assert arrived_objects(first_seen(payloads)) == expected_objects(sent)
    (warning,) = messages_of(bus, MessageType.WARNING)
    assert warning.startswith(f"cannot deliver to the MQTT broker at 127.0.0.1:{server.port}")
    back = [m for m in messages_of(bus, MessageType.INFO) if "is back" in m]
    assert len(back) == 1 and back[0].startswith(f"the MQTT broker at 127.0.0.1:{server.port}")


def test_max_events_bounds_the_outbox_during_an_outage(tmp_path: Path) -> None:
    server = mosquitto_server(tmp_path / "mosquitto")
    bus = Bus()
    sink = build_sink(
        "mqtt",
        tmp_path,
        bus,
        host="127.0.0.1",
        port=server.port,
        max_events=10,
        retry_max_s=0.2,
        drain_timeout_s=20,
    )
    sent = batches(30, tracks_per_frame=1)
    try:
        for batch in sent:
            sink.process(batch)
        server.start()
        collector = MqttCollector(server.port, "panoptes/#")
        try:
            sink.drain()
            sink.close()
            deadline = time.monotonic() + 10
            while len(collector.messages) < 10 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.2)
            payloads = collector.payloads()
        finally:
            collector.close()
    finally:
        sink.close()
        server.stop()
    # The newest ten are kept; the twenty oldest were dropped, counted and said.
    assert [p["frame_num"] for p in first_seen(payloads)] == list(range(20, 30))
    assert sink.outbox is not None and sink.outbox.dropped == 20
    full = [m for m in messages_of(bus, MessageType.WARNING) if "is full" in m]
    assert full[0].endswith("1 of the oldest events dropped so far")
    assert full[-1].endswith("20 of the oldest events dropped so far")


def test_mqtt_outage_in_the_middle_of_a_run_loses_nothing(tmp_path: Path) -> None:
    """mosquitto is stopped (SIGTERM) while events flow and started again on the same port.

    The broker keeps sessions on disk and the subscriber has a persistent session (QoS 1,
    clean_session=False), so what reaches the broker while the subscriber is away waits for it.
    The subscriber stays away from the broker's stop until the sink has delivered everything:
    every event the sink produced must then arrive, in order per stream once repeats are
    dropped, whatever the timing of the sink's retries.
    """
    server = mosquitto_server(tmp_path / "mosquitto", persistent=True)
    server.start()
    collector = MqttCollector(
        server.port, "events/#", client_id="outage-collector", clean_session=False
    )
    bus = Bus()
    sink = build_sink(
        "mqtt",
        tmp_path,
        bus,
        host="127.0.0.1",
        port=server.port,
        topic="events/{source_id}",
        retry_max_s=0.3,
        drain_timeout_s=30,
    )
    sent = batches(150, tracks_per_frame=2, sources=2)
    try:
        for index, batch in enumerate(sent):
            if index == 50:
                server.stop()
                collector.pause()
            if index == 100:
                server.start()
            sink.process(batch)
            time.sleep(0.01 if index < 50 or index >= 100 else 0.03)
        sink.drain()
        sink.close()
        assert (tmp_path / "mosquitto" / "mosquitto.db").exists()  # sessions were saved
        collector.resume()
        deadline = time.monotonic() + 20
        while len({p["id"] for p in collector.payloads()}) < 600 and time.monotonic() < deadline:
            time.sleep(0.1)
        payloads = collector.payloads()
    finally:
        collector.close()
        sink.close()
        server.stop()
    unique = first_seen(payloads)
    assert len(unique) == 600
    assert arrived_objects(unique) == expected_objects(sent)
    repeats: dict[str, bytes] = {}
    for payload in payloads:  # a repeat is the same event, byte for byte
        body = json.dumps(payload, sort_keys=True).encode()
        assert repeats.setdefault(payload["id"], body) == body
    (warning,) = messages_of(bus, MessageType.WARNING)
    assert warning.startswith(f"cannot deliver to the MQTT broker at 127.0.0.1:{server.port}")
    assert len([m for m in messages_of(bus, MessageType.INFO) if "is back" in m]) == 1
    assert sink.sender is not None and sink.sender.outages == 1
    assert len(sink.outbox or []) == 0 and not bus.errors()


@pytest.mark.parametrize("kind", ["mqtt", "redis", "kafka"])
def test_an_outbox_left_by_an_earlier_run_is_sent_first(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    outbox = str(tmp_path / "left.sqlite")
    port = free_port()  # nothing listens there
    unreachable: dict[str, dict[str, Any]] = {
        "mqtt": {"host": "127.0.0.1", "port": port},
        "redis": {"url": f"redis://127.0.0.1:{port}", "stream": "left"},
        "kafka": {"brokers": f"127.0.0.1:{port}", "topic": "left"},
    }
    down = unreachable[kind]
    bus = Bus()
    first = build_sink(
        kind, tmp_path, bus, outbox=outbox, drain_timeout_s=0, connect_timeout_s=0.5, **down
    )
    deliver(first, batches(5))  # the broker is down: all ten events stay in the outbox
    # The sender's warning and the drain's, in either order (drain_timeout_s is 0).
    warnings = sorted(messages_of(bus, MessageType.WARNING))
    assert len(warnings) == 2 and warnings[1].startswith("cannot deliver to the")
    assert warnings[0].startswith(f"10 events stay in the outbox {outbox}")
    collector = None
    if kind == "mqtt":
        server: Server = request.getfixturevalue("mosquitto")
        collector = MqttCollector(server.port, "panoptes/#")
        up: dict[str, Any] = {"host": "127.0.0.1", "port": server.port}
    elif kind == "redis":
        url = f"redis://127.0.0.1:{request.getfixturevalue('redis').port}/0"
        up = {"url": url, "stream": "left"}
    else:
        bootstrap = request.getfixturevalue("kafka")
        up = {"brokers": bootstrap, "topic": "left"}
    deliver(build_sink(kind, tmp_path, outbox=outbox, **up), batches(3, start=5))
    if collector is not None:
        deadline = time.monotonic() + 10
        while len(collector.messages) < 16 and time.monotonic() < deadline:
            time.sleep(0.05)
        collector.close()
        payloads = collector.payloads()
    elif kind == "redis":
        payloads = read_redis(url, "left")
    else:
        payloads = [json.loads(m.value()) for m in read_kafka(bootstrap, "left", 16)]
    assert [p["frame_num"] for p in payloads] == [n for n in range(8) for _ in range(2)]
