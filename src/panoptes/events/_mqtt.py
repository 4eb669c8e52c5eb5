"""MQTT through paho-mqtt: QoS 1 (or 2) publishes, acknowledged by the broker's PUBACK (PUBCOMP).

The client is driven from the sender's thread (``loop``), not from a thread of paho's own, and a
new client is made for every connection: paho's own reconnection would resend its in-flight
messages, while the sender resends from the outbox, in order.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from panoptes.events.outbox import StoredEvent
from panoptes.events.sender import BrokerUnavailable, Delivery, Transport

_CLOSE_WAIT_S = 1.0


@dataclass(frozen=True)
class TlsFiles:
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    insecure: bool = False
    """Do not check the broker's host name against its certificate."""


class MqttTransport(Transport):
    def __init__(
        self,
        *,
        host: str,
        port: int,
        qos: int = 1,
        retain: bool = False,
        client_id: str | None = None,
        keepalive_s: int = 60,
        username: str | None = None,
        password: str | None = None,
        tls: TlsFiles | None = None,
        connect_timeout_s: float = 5.0,
        window: int = 100,
    ) -> None:
        self.host = host
        self.port = port
        self.qos = qos
        self.retain = retain
        self.client_id = client_id or ""
        self.keepalive_s = keepalive_s
        self.username = username
        self.password = password
        self.tls = tls
        self.connect_timeout_s = connect_timeout_s
        self.window = window
        self.description = f"the MQTT broker at {host}:{port}"
        self._client: mqtt.Client | None = None
        self._lost: str | None = None
        self._connack: Any = None
        self._seq_by_mid: dict[int, int] = {}
        self._acknowledged: list[int] = []
        self._refused: list[Delivery] = []

    def connect(self) -> None:
        self.close()
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.tls is not None:
            client.tls_set(
                ca_certs=self.tls.ca_certs, certfile=self.tls.certfile, keyfile=self.tls.keyfile
            )
            client.tls_insecure_set(self.tls.insecure)
        # paho holds no queue of its own: the sender's window is the limit. paho scans its
        # in-flight messages on every acknowledgement, so a larger window is slower, not faster.
        client.max_inflight_messages_set(self.window)
        client.max_queued_messages_set(0)
        client.connect_timeout = self.connect_timeout_s
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        self._client = client
        self._lost = None
        self._connack = None
        self._seq_by_mid.clear()
        self._acknowledged.clear()
        self._refused.clear()
        try:
            client.connect(self.host, self.port, self.keepalive_s)
        except (OSError, ssl.SSLError) as error:
            _close_sockets_of(error)
            self.close()
            raise BrokerUnavailable(f"cannot connect: {error}") from error
        deadline = time.monotonic() + self.connect_timeout_s
        while self._connack is None:
            rc = client.loop(0.05)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or time.monotonic() > deadline:
                self.close()
                reason = mqtt.error_string(rc) if rc else "no CONNACK in time"
                raise BrokerUnavailable(f"connection failed: {reason}")
        if self._connack.is_failure:
            self.close()
            raise BrokerUnavailable(f"the broker refused the connection: {self._connack}")

    def send(self, events: Sequence[StoredEvent]) -> None:
        client = self._require_client()
        for event in events:
            try:
                info = client.publish(event.stream, event.payload, qos=self.qos, retain=self.retain)
            except ValueError as error:  # too large for MQTT, or not a topic name
                self._refused.append(Delivery(event.seq, str(error), permanent=True))
                continue
            if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
                raise BrokerUnavailable("connection lost")
            self._seq_by_mid[info.mid] = event.seq

    def poll(self, timeout_s: float) -> list[Delivery]:
        client = self._require_client()
        rc = client.loop(timeout_s)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            # Acknowledgements read before the loss still count; the loss is raised next time.
            self._lost = f"connection lost: {mqtt.error_string(rc)}"
        deliveries = self._refused
        self._refused = []
        for mid in self._acknowledged:
            seq = self._seq_by_mid.pop(mid, None)
            if seq is not None:
                deliveries.append(Delivery(seq))
        self._acknowledged.clear()
        return deliveries

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        if client.is_connected():
            client.disconnect()
            deadline = time.monotonic() + _CLOSE_WAIT_S
            while client.socket() is not None and time.monotonic() < deadline:
                client.loop(0.05)
        # Closes the socket (when the broker is gone) and paho's wake-up socket pair now rather
        # than when the client is collected.
        client._reset_sockets()

    def _require_client(self) -> mqtt.Client:
        if self._lost is not None:
            raise BrokerUnavailable(self._lost)
        if self._client is None:
            raise BrokerUnavailable("not connected")
        return self._client

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        self._connack = reason_code

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        self._acknowledged.append(mid)


def _close_sockets_of(error: BaseException) -> None:
    """Close the sockets a failed connection attempt left in its traceback: paho does not
    close the socket of a failed TLS handshake, which is not yet the client's."""
    traceback = error.__traceback__
    while traceback is not None:
        for value in traceback.tb_frame.f_locals.values():
            if isinstance(value, socket.socket):
                value.close()
        traceback = traceback.tb_next
