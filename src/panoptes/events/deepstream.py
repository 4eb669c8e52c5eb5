"""DeepStream's message converter and broker settings, as panoptes sink properties.

- :func:`read_msgconv_config`: nvmsgconv's ``msg-conv-config`` file (``[sensorN]``, ``[placeN]``,
  ``[analyticsN]`` groups, INI or YAML) as a :class:`~panoptes.events.payloads.Scene`;
- :func:`sink_from_deepstream`: a deepstream-app ``[sinkN] type=6`` group's
  ``msg-broker-proto-lib``, ``msg-broker-conn-str``, ``topic``, ``msg-conv-payload-type`` and
  ``msg-broker-config`` as the properties of an ``mqtt``, ``kafka`` or ``redis`` sink.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from panoptes.core.errors import ConfigError
from panoptes.events.payloads import XYZ, AnalyticsModule, Place, Scene, Sensor

if TYPE_CHECKING:
    from panoptes.config.deepstream.keyfile import Group, KeyFile

PROTO_LIBS: dict[str, str] = {
    "libnvds_mqtt_proto.so": "mqtt",
    "libnvds_kafka_proto.so": "kafka",
    "libnvds_redis_proto.so": "redis",
}
"""DeepStream protocol adapters and the panoptes sink kind that replaces each."""

UNSUPPORTED_PROTO_LIBS: dict[str, str] = {
    "libnvds_amqp_proto.so": "AMQP",
    "libnvds_azure_proto.so": "Azure IoT Hub",
    "libnvds_azure_edge_proto.so": "Azure IoT Edge",
}

PAYLOAD_TYPES: dict[int, str] = {0: "deepstream-full", 1: "deepstream-minimal"}
"""``msg-conv-payload-type`` (``NvDsPayloadType``) and the panoptes ``payload``."""

_UNSUPPORTED_PAYLOAD_TYPES = {
    2: "2 (protobuf)",
    256: "256 (reserved)",
    257: "257 (custom, from a msg2p library)",
}

_DEFAULT_PORTS = {"mqtt": 1883, "kafka": 9092, "redis": 6379}

_NOT_NEEDED = "has no equivalent and is not needed: panoptes makes one connection per sink"


@dataclass
class DeepStreamSink:
    """What :func:`sink_from_deepstream` made: the sink's properties, and the settings it read
    but cannot honour, as (key, reason) for the translator to report."""

    properties: dict[str, Any]
    ignored: list[tuple[str, str]] = field(default_factory=list)


def sink_from_deepstream(
    proto_lib: str,
    conn_str: str | None,
    topic: str | None = None,
    payload_type: int = 0,
    *,
    broker_config: str | os.PathLike[str] | None = None,
    conv_config: str | os.PathLike[str] | None = None,
    frame_interval: int | None = None,
    name: str | None = None,
) -> DeepStreamSink:
    """The properties of the sink that does what a deepstream-app message broker sink did.

    Args:
        proto_lib: ``msg-broker-proto-lib``; only the file name matters
            (``/opt/nvidia/deepstream/deepstream/lib/libnvds_kafka_proto.so``).
        conn_str: ``msg-broker-conn-str``: ``host;port`` (Kafka also ``host:port,host:port``).
        topic: ``topic`` (the stream key for Redis).
        payload_type: ``msg-conv-payload-type``: 0 full schema, 1 minimal.
        broker_config: ``msg-broker-config``, the adapter's ``[message-broker]`` file (absolute,
            or relative to the working folder).
        conv_config: ``msg-conv-config``: sensors, places and analytics modules per stream.
        frame_interval: ``msg-conv-frame-interval``.
        name: the sink's name (the group's, ``sink1``).

    Raises:
        ConfigError: whose ``place`` is the DeepStream key at fault, for an adapter panoptes does
            not have, a payload type it cannot write, or a malformed value.
    """
    library = PurePath(proto_lib).name
    kind = PROTO_LIBS.get(library)
    if kind is None:
        what = UNSUPPORTED_PROTO_LIBS.get(library)
        known = ", ".join(PROTO_LIBS)
        reason = f"{what} is not supported" if what else f"unknown adapter {library!r}"
        raise ConfigError(f"{reason}; supported: {known}", "msg-broker-proto-lib")
    payload = PAYLOAD_TYPES.get(payload_type)
    if payload is None:
        what = _UNSUPPORTED_PAYLOAD_TYPES.get(payload_type, str(payload_type))
        raise ConfigError(
            f"payload type {what} is not supported; use 0 (full) or 1 (minimal)",
            "msg-conv-payload-type",
        )
    result = DeepStreamSink({"type": kind, "payload": payload, "mode": "objects"})
    props = result.properties
    if name:
        props["name"] = name
    if frame_interval is not None:
        if frame_interval < 1:
            raise ConfigError(f"must be 1 or more, not {frame_interval}", "msg-conv-frame-interval")
        props["frame_interval"] = frame_interval
    if conv_config is not None:
        props["msg_conv_config"] = str(conv_config)
    settings = _broker_settings(broker_config)
    hosts = _hosts(conn_str, kind) if conn_str else []
    if kind == "mqtt":
        _mqtt(result, hosts, topic, settings)
    elif kind == "kafka":
        _kafka(result, hosts, topic, settings)
    else:
        _redis(result, hosts, topic, settings)
    for key in settings:
        result.ignored.append((f"msg-broker-config {key}", "unknown to this adapter; not used"))
    return result


def read_msgconv_config(path: str | os.PathLike[str]) -> Scene:
    """The sensors, places and analytics modules of a ``msg-conv-config`` file, by stream.

    ``[sensor0]`` describes stream 0 (``id``, ``type``, ``description``, ``location`` as
    ``lat;lon;alt``, ``coordinate`` as ``x;y;z``); ``[place0]`` its place (``id``, ``name``,
    ``type``, ``location``, ``coordinate``, ``place-sub-field1..3``); ``[analytics0]`` what
    analysed it (``id``, ``description``, ``source``, ``version``). Groups with ``enable=0`` are
    skipped.

    Raises:
        ConfigError: the file cannot be read or a value is malformed, naming file, line and key.
    """
    from panoptes.config.deepstream.yaml_forms import read_config_file

    config = read_config_file(path)
    sensors: dict[int, Sensor] = {}
    places: dict[int, Place] = {}
    modules: dict[int, AnalyticsModule] = {}
    for number, group in _enabled(config, "sensor"):
        sensors[number] = Sensor(
            id=group.get_string("id", str(number)),
            type=group.get_string("type", "Camera"),
            description=group.get_string("description", ""),
            location=_triple(group, "location"),
            coordinate=_triple(group, "coordinate"),
        )
    for number, group in _enabled(config, "place"):
        places[number] = Place(
            id=group.get_string("id", ""),
            name=group.get_string("name", ""),
            type=group.get_string("type", ""),
            location=_triple(group, "location"),
            coordinate=_triple(group, "coordinate"),
            sub_fields=(
                group.get_string("place-sub-field1", ""),
                group.get_string("place-sub-field2", ""),
                group.get_string("place-sub-field3", ""),
            ),
        )
    for number, group in _enabled(config, "analytics"):
        modules[number] = AnalyticsModule(
            id=group.get_string("id", ""),
            description=group.get_string("description", ""),
            source=group.get_string("source", ""),
            version=group.get_string("version", ""),
        )
    return Scene(sensors, places, modules)


# -- adapters -------------------------------------------------------------------------------------


def _mqtt(
    result: DeepStreamSink,
    hosts: list[tuple[str, int]],
    topic: str | None,
    settings: dict[str, str],
) -> None:
    props = result.properties
    if hosts:
        props["host"], props["port"] = hosts[0]
    if topic:
        props["topic"] = topic
    if "username" in settings:
        props["username"] = settings.pop("username")
    if "password" in settings:
        props["password"] = settings.pop("password")
    client_id = settings.pop("client-id", None) or settings.pop("client_id", None)
    if client_id:
        props["client_id"] = client_id
    if "keep-alive" in settings:
        props["keepalive_s"] = _integer(settings.pop("keep-alive"), "msg-broker-config keep-alive")
    if _flag(settings.pop("enable-tls", "0")):
        props["tls"] = True
    for key, prop in (
        ("tls-cafile", "ca_certs"),
        ("tls-certfile", "certfile"),
        ("tls-keyfile", "keyfile"),
    ):
        if settings.get(key):
            props[prop] = settings.pop(key)
    if settings.pop("tls-capath", None):
        result.ignored.append(
            ("msg-broker-config tls-capath", "a folder of CA files is not supported; name one file")
        )
    for key in ("share-connection", "loop-timeout", "set-threaded"):
        if settings.pop(key, None) is not None:
            result.ignored.append((f"msg-broker-config {key}", _NOT_NEEDED))


def _kafka(
    result: DeepStreamSink,
    hosts: list[tuple[str, int]],
    topic: str | None,
    settings: dict[str, str],
) -> None:
    props = result.properties
    if hosts:
        props["brokers"] = ",".join(f"{host}:{port}" for host, port in hosts)
    if topic:
        props["topic"] = topic
    proto_cfg = settings.pop("proto-cfg", "").strip().strip('"')
    config: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in proto_cfg.split(";"))):
        key, equals, value = item.partition("=")
        if not equals:
            raise ConfigError(
                f"{item!r} is not key=value in proto-cfg", "msg-broker-config proto-cfg"
            )
        config[key.strip()] = value.strip()
    if config:
        props["config"] = config
    partition_key = settings.pop("partition-key", None)
    if partition_key and partition_key != "sensor.id":
        result.ignored.append(
            (
                "msg-broker-config partition-key",
                f"events are keyed by their stream's name, not by {partition_key!r}",
            )
        )
    if settings.pop("consumer-group-id", None) is not None:
        result.ignored.append(
            ("msg-broker-config consumer-group-id", "a sink only produces; no consumer group")
        )
    if settings.pop("share-connection", None) is not None:
        result.ignored.append(("msg-broker-config share-connection", _NOT_NEEDED))


def _redis(
    result: DeepStreamSink,
    hosts: list[tuple[str, int]],
    topic: str | None,
    settings: dict[str, str],
) -> None:
    props = result.properties
    host = settings.pop("hostname", None) or "localhost"
    port = _integer(settings.pop("port", "6379"), "msg-broker-config port")
    if hosts:  # the connection string wins over the file, as in DeepStream's adapter
        host, port = hosts[0]
    password = settings.pop("password", None)
    auth = f":{quote(password, safe='')}@" if password else ""
    props["url"] = f"redis://{auth}{host}:{port}"
    if topic:
        props["stream"] = topic
    if "streamsize" in settings:
        size = _integer(settings.pop("streamsize"), "msg-broker-config streamsize")
        if size > 0:
            props["maxlen"] = size
    if "payloadkey" in settings:
        props["payload_key"] = settings.pop("payloadkey")
    for key in ("consumergroup", "consumername"):
        if settings.pop(key, None) is not None:
            result.ignored.append((f"msg-broker-config {key}", "a sink only produces"))
    if settings.pop("share-connection", None) is not None:
        result.ignored.append(("msg-broker-config share-connection", _NOT_NEEDED))


# -- reading --------------------------------------------------------------------------------------


def _broker_settings(path: str | os.PathLike[str] | None) -> dict[str, str]:
    """The ``[message-broker]`` group of a ``msg-broker-config`` file, as raw strings."""
    if path is None:
        return {}
    from panoptes.config.deepstream.yaml_forms import read_config_file

    if not Path(path).is_file():
        raise ConfigError(f"no such file: {path}", "msg-broker-config")
    config = read_config_file(path)
    group = config.get("message-broker")
    if group is None:
        return {}
    return {key: group.get_string(key).strip() for key in group}


def _hosts(conn_str: str, kind: str) -> list[tuple[str, int]]:
    """``host;port`` (DeepStream's form) or ``host:port[,host:port...]``."""
    text = conn_str.strip()
    if ";" in text:
        host, _, rest = text.partition(";")
        port = rest.split(";")[0].strip()
        items = [(host.strip(), port or str(_DEFAULT_PORTS[kind]))]
    else:
        items = []
        for item in filter(None, (part.strip() for part in text.split(","))):
            host, colon, port = item.rpartition(":")
            items.append((host, port) if colon else (item, str(_DEFAULT_PORTS[kind])))
    if not items or not all(host for host, _ in items):
        raise ConfigError(f"{conn_str!r} is not host;port", "msg-broker-conn-str")
    return [(host, _integer(port, "msg-broker-conn-str")) for host, port in items]


def _integer(text: str, place: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ConfigError(f"{text!r} is not a whole number", place) from None


def _flag(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes")


def _enabled(config: KeyFile, prefix: str) -> list[tuple[int, Group]]:
    return [(number, group) for number, group in config.groups_matching(prefix) if group.enabled]


def _triple(group: Group, key: str) -> XYZ:
    values = group.get_double_list(key, [0.0, 0.0, 0.0])
    if len(values) != 3:
        raise group.error(key, f"needs 3 numbers separated by ';', not {len(values)}")
    return (values[0], values[1], values[2])
