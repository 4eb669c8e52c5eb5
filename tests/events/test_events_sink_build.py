"""Broker sinks at build time: clear errors for what cannot work, no error for a broker that is
merely down, and DeepStream's broker settings as sink properties."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
from event_brokers import build_sink, free_port, make_frame

from panoptes import Bus, ConfigError, MessageType, Pipeline
from panoptes.config.validate import check_config
from panoptes.core.frame import Batch
from panoptes.events import read_msgconv_config, sink_from_deepstream
from panoptes.events.payloads import AnalyticsModule, Place, Sensor

SOURCE = {"uri": "test://ball?frames=1"}


@pytest.mark.parametrize(
    ("sink", "message"),
    [
        ({"type": "mqtt", "payload": "xml"}, "sinks[0].payload: Input should be 'panoptes'"),
        ({"type": "redis", "mode": "tracks"}, "sinks[0].mode: Input should be 'objects'"),
        ({"type": "amqp"}, "unknown or missing sink type; known: fakesink, jsonl, file"),
        ({"type": "mqtt", "qos": 3}, "sinks[0].qos: Input should be 0, 1 or 2"),
        ({"type": "kafka", "min_interval_s": -1}, "sinks[0].min_interval_s: Input should be"),
    ],
)
def test_schema_errors_name_the_place(sink: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Pipeline({"sources": [SOURCE], "sinks": [sink]})


@pytest.mark.parametrize(
    ("kind", "props", "place", "message"),
    [
        ("mqtt", {"payload": "deepstream-full", "mode": "frames"}, "mode", "one object per"),
        ("redis", {"payload": "deepstream-minimal", "mode": "events"}, "mode", "no field for"),
        ("mqtt", {"topic": "cams/+/events"}, "topic", "must not be empty or hold the wildcards"),
        ("mqtt", {"topic": "cams/{camera}"}, "topic", "unknown placeholder {camera}; known"),
        ("redis", {"stream": "s:{source_id"}, "stream", "is not a valid template"),
        ("redis", {"url": "http://localhost"}, "url", "is not a redis://, rediss:// or unix://"),
        ("mqtt", {"ca_certs": "certs/missing.pem"}, "ca_certs", "no such file: "),
        ("mqtt", {"keyfile": "pipeline.yaml"}, "keyfile", "a client key needs its certificate"),
        ("mqtt", {"ca_certs": "pipeline.yaml"}, "ca_certs", "not a CA certificate file"),
        (
            "mqtt",
            {"certfile": "pipeline.yaml", "keyfile": "pipeline.yaml"},
            "certfile",
            "not a client certificate and key",
        ),
        ("kafka", {"config": {"linger.mss": 5}}, "config", "librdkafka refuses it"),
        ("kafka", {"config": {"acks": "several"}}, "config", "librdkafka refuses it"),
        ("redis", {"msg_conv_config": "msgconv.txt"}, "msg_conv_config", "no such file"),
        ("mqtt", {"outbox": "pipeline.yaml"}, "outbox", "is not a panoptes outbox"),
        ("mqtt", {"outbox": "."}, "outbox", "is a folder"),
    ],
)
def test_build_errors_name_the_place_and_the_fix(
    tmp_path: Path, kind: str, props: dict[str, Any], place: str, message: str
) -> None:
    (tmp_path / "pipeline.yaml").write_text("sources: []\n" * 50)
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        build_sink(kind, tmp_path, **{"outbox": None, **props})
    assert str(caught.value).startswith(f"sinks[0].{place}: ")


@pytest.mark.parametrize(
    ("kind", "module", "extra"),
    [
        ("mqtt", "paho.mqtt.client", "mqtt"),
        ("kafka", "confluent_kafka", "kafka"),
        ("redis", "redis", "redis"),
    ],
)
def test_a_missing_library_names_the_pip_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, module: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # what an absent package does to an import
    with pytest.raises(ConfigError, match=re.escape(f"pip install 'panoptes[{extra}]'")) as caught:
        build_sink(kind, tmp_path)
    assert str(caught.value).startswith("sinks[0].type: the")


def test_an_unreachable_broker_is_a_warning_and_events_wait(tmp_path: Path) -> None:
    bus = Bus()
    port = free_port()  # nothing listens there
    sink = build_sink("mqtt", tmp_path, bus, host="127.0.0.1", port=port, drain_timeout_s=0.5)
    try:
        for n in range(3):
            sink.process(Batch([make_frame(n, [1, 2])]))
        sink.drain()
    finally:
        sink.close()
    warnings = [m.text for m in bus.history if m.type is MessageType.WARNING]
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith(f"cannot deliver to the MQTT broker at 127.0.0.1:{port}")
    assert "events wait in the outbox" in warnings[0]
    assert warnings[1].startswith(f"6 events stay in the outbox {tmp_path / 'outbox-mqtt.sqlite'}")
    assert "they are sent at the next start" in warnings[1]
    assert not bus.errors()


def test_two_sinks_cannot_share_an_outbox(tmp_path: Path) -> None:
    pipeline = Pipeline(
        {
            "sources": [SOURCE],
            "sinks": [
                {"type": "redis", "outbox": "out/events.sqlite"},
                {"type": "mqtt", "name": "events", "outbox": "out/events.sqlite"},
            ],
        },
        base_dir=tmp_path,
    )
    with pytest.raises(ConfigError, match=re.escape("sinks[0].outbox: sinks[1] uses the same")):
        pipeline.build()


def test_validate_checks_broker_sinks_without_touching_anything(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        "sources: [{type: test-source, frames: 1}]\n"
        "sinks:\n"
        "  - {type: mqtt, host: 127.0.0.1, port: 9, ca_certs: ca.pem}\n"
        "  - {type: redis, payload: deepstream-minimal, mode: events}\n"
        "  - {type: kafka, brokers: '127.0.0.1:9'}\n"
    )
    problems = check_config(config)
    assert len(problems) == 2, problems
    assert problems[0].startswith("sinks[0].ca_certs: no such file")
    assert problems[1].startswith("sinks[1].mode: DeepStream's minimal schema has no field")
    assert not (tmp_path / "out").exists()  # no outbox made


# -- DeepStream ------------------------------------------------------------------------------------

LIB = "/opt/nvidia/deepstream/deepstream/lib/"


@pytest.mark.parametrize(
    ("args", "broker_config", "properties", "ignored"),
    [
        (
            (LIB + "libnvds_mqtt_proto.so", "broker.local;1883", "ds/events", 0),
            "[message-broker]\nusername=cam\npassword=secret\nclient-id=edge-7\n"
            "enable-tls=1\ntls-cafile=/etc/ca.pem\nkeep-alive=30\nshare-connection=1\n",
            {
                "type": "mqtt",
                "payload": "deepstream-full",
                "mode": "objects",
                "host": "broker.local",
                "port": 1883,
                "topic": "ds/events",
                "username": "cam",
                "password": "secret",
                "client_id": "edge-7",
                "keepalive_s": 30,
                "tls": True,
                "ca_certs": "/etc/ca.pem",
            },
            ["msg-broker-config share-connection"],
        ),
        (
            (LIB + "libnvds_kafka_proto.so", "kafka1;9092", "metadata", 1),
            '[message-broker]\nproto-cfg = "message.timeout.ms=2000;retries=5"\n'
            "partition-key = sensor.id\nconsumer-group-id = mygrp\n",
            {
                "type": "kafka",
                "payload": "deepstream-minimal",
                "mode": "objects",
                "brokers": "kafka1:9092",
                "topic": "metadata",
                "config": {"message.timeout.ms": "2000", "retries": "5"},
            },
            ["msg-broker-config consumer-group-id"],
        ),
        (
            ("libnvds_kafka_proto.so", "k1:9092,k2:9093", None, 0),
            None,
            {
                "type": "kafka",
                "payload": "deepstream-full",
                "mode": "objects",
                "brokers": "k1:9092,k2:9093",
            },
            [],
        ),
        (
            (LIB + "libnvds_redis_proto.so", None, "ds-stream", 0),
            "[message-broker]\nhostname=cache\nport=6380\npassword=p@ss\nstreamsize=10000\n"
            "payloadkey=metadata\nconsumergroup=grp\nmystery=1\n",
            {
                "type": "redis",
                "payload": "deepstream-full",
                "mode": "objects",
                "url": "redis://:p%40ss@cache:6380",
                "stream": "ds-stream",
                "maxlen": 10000,
                "payload_key": "metadata",
            },
            ["msg-broker-config consumergroup", "msg-broker-config mystery"],
        ),
    ],
)
def test_deepstream_broker_settings_become_sink_properties(
    tmp_path: Path,
    args: tuple[Any, ...],
    broker_config: str | None,
    properties: dict[str, Any],
    ignored: list[str],
) -> None:
    path = None
    if broker_config is not None:
        path = tmp_path / "cfg_broker.txt"
        path.write_text(broker_config)
    result = sink_from_deepstream(*args, broker_config=path)
    assert result.properties == properties
    assert [key for key, _ in result.ignored] == ignored
    # What it makes is a valid sink.
    Pipeline({"sources": [SOURCE], "sinks": [result.properties]})


@pytest.mark.parametrize(
    ("args", "place", "message"),
    [
        (("libnvds_amqp_proto.so", "h;5672", "t"), "msg-broker-proto-lib", "AMQP is not supported"),
        (("libfoo.so", "h;1", "t"), "msg-broker-proto-lib", "unknown adapter 'libfoo.so'"),
        (("libnvds_kafka_proto.so", "h;9092", "t", 257), "msg-conv-payload-type", "257 (custom"),
        (("libnvds_mqtt_proto.so", "h;port", "t"), "msg-broker-conn-str", "'port' is not a whole"),
    ],
)
def test_deepstream_settings_that_cannot_work(
    args: tuple[Any, ...], place: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        sink_from_deepstream(*args)
    assert caught.value.place == place


def test_deepstream_msgconv_config_describes_each_stream(tmp_path: Path) -> None:
    path = tmp_path / "msgconv.txt"
    path.write_text(
        "[sensor0]\nenable=1\ntype=Camera\nid=CAMERA_ID\nlocation=45.29;-75.83;48.15\n"
        "description=Aisle Camera\ncoordinate=5.2;10.1;11.2\n\n"
        "[sensor1]\nenable=0\nid=OFF\n\n"
        "[place0]\nenable=1\nid=0\ntype=intersection/road\nname=HWY_20\n"
        "location=30.32;-40.55;100.0\ncoordinate=1.0;2.0;3.0\nplace-sub-field1=C_127_158\n"
        "place-sub-field2=Lane 1\nplace-sub-field3=P1\n\n"
        "[analytics0]\nenable=1\nid=XYZ_1\ndescription=Vehicle Detection\nsource=OpenALR\n"
        "version=1.0\n"
    )
    scene = read_msgconv_config(path)
    assert scene.sensors == {
        0: Sensor("CAMERA_ID", "Camera", "Aisle Camera", (45.29, -75.83, 48.15), (5.2, 10.1, 11.2))
    }
    assert scene.places == {
        0: Place(
            "0",
            "HWY_20",
            "intersection/road",
            (30.32, -40.55, 100.0),
            (1.0, 2.0, 3.0),
            ("C_127_158", "Lane 1", "P1"),
        )
    }
    assert scene.analytics == {0: AnalyticsModule("XYZ_1", "Vehicle Detection", "OpenALR", "1.0")}
    bad = tmp_path / "bad.txt"
    bad.write_text("[sensor0]\nlocation=1;2\n")
    with pytest.raises(ConfigError, match=re.escape("bad.txt:2 [sensor0] location: needs 3")):
        read_msgconv_config(bad)
