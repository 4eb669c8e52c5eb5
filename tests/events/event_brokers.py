"""Real brokers for the event tests: mosquitto and redis-server on free local ports, librdkafka's
mock cluster, consumers that read back what panoptes sent, and synthetic frames."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import TypeAdapter

from panoptes import Bus
from panoptes.config.schema import SinkConfig
from panoptes.core.element import BuildContext
from panoptes.core.frame import Batch, Frame
from panoptes.core.meta import AnalyticsEvent
from panoptes.core.registry import load_kind
from panoptes.elements.broker_sink import BrokerSink

MOSQUITTO = shutil.which("mosquitto") or shutil.which("/usr/sbin/mosquitto")
REDIS_SERVER = shutil.which("redis-server")
MISSING = "{0} is not installed: `make system-deps` installs it (Debian package {0})"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on port {port} after {timeout_s} s")


class Server:
    """A broker process on 127.0.0.1:``port``, which can be stopped and started again."""

    def __init__(self, command: list[str], port: int, log: Path) -> None:
        self.command = command
        self.port = port
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.send_signal(sig)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def mosquitto_server(
    folder: Path,
    *,
    persistent: bool = False,
    port: int | None = None,
    tls: TlsFiles | None = None,
) -> Server:
    """mosquitto on a free port; ``persistent`` keeps sessions and queued messages across a
    restart (saved on SIGTERM); ``tls`` makes its listener TLS only."""
    if MOSQUITTO is None:
        pytest.skip(MISSING.format("mosquitto"))
    port = port or free_port()
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true"]
    if os.geteuid() == 0:
        # Run as root, mosquitto would switch to its own user, which cannot read or write the
        # test's folders.
        lines.append(f"user {pwd.getpwuid(0).pw_name}")
    if tls is not None:
        lines += [f"cafile {tls.ca}", f"certfile {tls.cert}", f"keyfile {tls.key}"]
    if persistent:
        lines += [
            "persistence true",
            f"persistence_location {folder}/",
            "autosave_interval 0",
            # Everything a persistent subscriber misses while away is kept for it.
            "max_queued_messages 0",
        ]
    else:
        lines.append("persistence false")
    config = folder / "mosquitto.conf"
    config.write_text("\n".join(lines) + "\n")
    return Server([MOSQUITTO, "-c", str(config)], port, folder / "mosquitto.log")


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def make_certificates(folder: Path, name: str = "test") -> TlsFiles:
    """A CA and a server certificate it signed, for 127.0.0.1 and localhost (EC keys)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip(MISSING.format("openssl"))
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / f"{name}-ca.pem", folder / f"{name}-ca.key"
    cert, key, request = folder / f"{name}.pem", folder / f"{name}.key", folder / f"{name}.csr"
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"]
    commands = [
        ["req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-subj", f"/CN={name}-ca"],
        ["req", *ec[:-2], "-keyout", key, "-out", request, "-subj", "/CN=localhost"],
        ["x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial"],
    ]
    commands[2] += ["-out", cert, "-days", "1", "-extfile", folder / "san.ext"]
    for command in commands:
        arguments = [openssl, *(str(part) for part in command)]
        subprocess.run(arguments, check=True, capture_output=True)
    return TlsFiles(ca, cert, key)


def redis_server(folder: Path) -> Server:
    if REDIS_SERVER is None:
        pytest.skip(MISSING.format("redis-server"))
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    command = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(folder)]
    return Server(command, port, folder / "redis.log")


class MqttCollector:
    """A paho subscriber that keeps every message (topic, payload), reconnecting by itself.

    With ``clean_session=False`` and a persistent broker, what is published while it is away
    waits for it at the broker.
    """

    def __init__(
        self,
        port: int,
        topic: str = "#",
        *,
        client_id: str = "",
        clean_session: bool = True,
        ca_certs: Path | None = None,
    ) -> None:
        from paho.mqtt import client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.topic = topic
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        if ca_certs is not None:
            self.client.tls_set(ca_certs=str(ca_certs))
        self.client.reconnect_delay_set(1, 1)
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()
        if not self._subscribed.wait(5):
            self.close()
            raise TimeoutError("the subscription was not acknowledged")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload))

    def pause(self) -> None:
        """Stop reading and reconnecting (a subscriber that is away)."""
        self.client.loop_stop()

    def resume(self) -> None:
        """Connect again and read what waited for it."""
        self._subscribed.clear()
        self.client.reconnect()
        # loop_start makes a new wake-up socket pair; paho's loop_stop left the old one open.
        self.client._reset_sockets(sockpair_only=True)
        self.client.loop_start()
        if not self._subscribed.wait(5):
            raise TimeoutError("the subscription was not acknowledged")

    def payloads(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(payload) for _, payload in self.messages]

    def wait_for(self, ids: Iterable[str], key: str = "id", timeout_s: float = 20.0) -> None:
        """Wait until a message with each of ``ids`` (under ``key``) has come."""
        wanted = set(ids)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if wanted <= {payload[key] for payload in self.payloads()}:
                return
            time.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def kafka_mock_cluster() -> tuple[Any, str]:
    """librdkafka's mock cluster, made by a producer that must live as long as it is used, and
    its bootstrap servers: real TCP listeners any client can reach."""
    import logging

    from confluent_kafka import Producer

    holder = Producer({"test.mock.num.brokers": 1, "logger": logging.getLogger("tests.kafka-mock")})
    brokers = holder.list_topics(timeout=10).brokers.values()
    return holder, ",".join(f"{broker.host}:{broker.port}" for broker in brokers)


def read_kafka(bootstrap: str, topic: str, count: int, timeout_s: float = 20.0) -> list[Any]:
    """At least ``count`` messages of ``topic`` from the start of every partition (or what came
    in ``timeout_s``), as confluent_kafka messages."""
    import logging

    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "tests",
            "enable.auto.commit": False,
            "logger": logging.getLogger("tests.kafka-consumer"),
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        messages: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(messages) < count and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                messages.append(message)
        return messages
    finally:
        consumer.close()


def read_redis(url: str, stream: str, payload_key: str = "metadata") -> list[dict[str, Any]]:
    """Every entry of ``stream``, oldest first, its payload parsed."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(stream)  # type: ignore[assignment]
        return [json.loads(fields[payload_key.encode()]) for _, fields in entries]
    finally:
        client.close()


def build_sink(kind: str, tmp_path: Path, bus: Bus | None = None, **props: Any) -> BrokerSink:
    """A broker sink built as the pipeline builds it (outbox in ``tmp_path`` by default)."""
    props.setdefault("outbox", str(tmp_path / f"outbox-{kind}.sqlite"))
    properties = TypeAdapter(SinkConfig).validate_python({"type": kind, **props})
    context = BuildContext(bus or Bus(), tmp_path, place="sinks[0]")
    sink: BrokerSink = load_kind(kind)(properties, name=f"{kind}0", context=context)
    sink.build()
    return sink


def make_frame(
    frame_num: int,
    tracks: Sequence[int | None] = (),
    *,
    source_id: int = 0,
    name: str = "cam0",
    fps: float = 10.0,
    events: Sequence[AnalyticsEvent] = (),
) -> Frame:
    """A frame with one 'person' per entry of ``tracks`` (None: untracked), its box moving with
    the frame number."""
    frame = Frame(
        source_id=source_id,
        source_name=name,
        frame_num=frame_num,
        pts_s=frame_num / fps,
        capture_time_s=1_700_000_000.0 + frame_num / fps,
        size_wh=(640, 480),
        image=np.zeros((4, 4, 3), np.uint8),
    )
    if tracks:
        n = len(tracks)
        x = np.arange(n, dtype=np.float32) * 50 + frame_num % 100
        xyxy = np.stack([x, x + 10.25, x + 40.5, x + 90.75], axis=1)
        track_ids = np.array([-1 if t is None else t for t in tracks], np.int64)
        frame.meta.objects.add(
            xyxy, np.full(n, 0.9), np.zeros(n, np.int32), ["person"] * n, track_id=track_ids
        )
    frame.meta.events.extend(events)
    return frame


def batches(count: int, tracks_per_frame: int = 2, sources: int = 1, start: int = 0) -> list[Batch]:
    """``count`` batches of one frame per source, each with ``tracks_per_frame`` tracks."""
    return [
        Batch(
            [
                make_frame(n, list(range(tracks_per_frame)), source_id=s, name=f"cam{s}")
                for s in range(sources)
            ],
            batch_num=n,
        )
        for n in range(start, start + count)
    ]


def first_seen(payloads: Iterable[dict[str, Any]], key: str = "id") -> list[dict[str, Any]]:
    """``payloads`` without repeats of an id, in the order of first arrival."""
    seen: set[str] = set()
    unique = []
    for payload in payloads:
        if payload[key] not in seen:
            seen.add(payload[key])
            unique.append(payload)
    return unique
