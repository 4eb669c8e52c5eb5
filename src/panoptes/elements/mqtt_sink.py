"""``mqtt``: publishes events to an MQTT broker (QoS 1) through an on-disk outbox.

See :mod:`panoptes.elements.broker_sink` for what every broker sink does and docs/events.md for
the payloads. Needs paho-mqtt: ``pip install panoptes[mqtt]``.
"""

from __future__ import annotations

import re
import ssl
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from panoptes.core.errors import ConfigError
from panoptes.elements.broker_sink import BrokerSink, BrokerSinkProperties

if TYPE_CHECKING:
    from panoptes.events.sender import Transport


class MqttSinkProperties(BrokerSinkProperties):
    type: Literal["mqtt"] = Field("mqtt", description="Element kind.")
    host: str = Field("localhost", description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 is usual with TLS).")
    topic: str = Field(
        "panoptes/events",
        description="Topic to publish to; may contain {source_id} and {source_name}.",
    )
    qos: Literal[0, 1, 2] = Field(
        1,
        description="MQTT quality of service: 1 (at least once, the broker's PUBACK deletes an "
        "event from the outbox) or 2; 0 has no acknowledgement and can lose events.",
    )
    retain: bool = Field(False, description="Ask the broker to keep each topic's last message.")
    client_id: str | None = Field(None, description="MQTT client id; default a random one.")
    keepalive_s: int = Field(60, ge=1, description="MQTT keep-alive interval.")
    username: str | None = Field(None, description="User name, when the broker asks for one.")
    password: str | None = Field(None, description="Password for the user name.")
    tls: bool = Field(
        False, description="Connect with TLS (implied by ca_certs, certfile or keyfile)."
    )
    ca_certs: str | None = Field(
        None, description="CA certificates (PEM) to check the broker with; default the system's."
    )
    certfile: str | None = Field(None, description="Client certificate (PEM), for mutual TLS.")
    keyfile: str | None = Field(None, description="Client private key (PEM), for mutual TLS.")
    insecure: bool = Field(
        False, description="Do not check that the broker's certificate names its host."
    )


class MqttSink(BrokerSink):
    kind = "mqtt"
    Properties = MqttSinkProperties
    library = "paho.mqtt.client"
    extra = "mqtt"

    props: MqttSinkProperties

    def _topic_template(self) -> str:
        topic = self.props.topic
        if not topic or "+" in topic or "#" in topic:
            raise ConfigError(
                f"{topic!r} is not a topic to publish to: it must not be empty or hold the "
                "wildcards + and #",
                f"{self.context.place}.topic",
            )
        return topic

    def _stream_name(self, name: str) -> str:
        # A name like rtsp://cam/1 would add topic levels or wildcards.
        return re.sub(r"[/+#]+", "_", name)

    def _check_broker(self) -> None:
        props = self.props
        place = self.context.place
        self._tls = props.tls or any((props.ca_certs, props.certfile, props.keyfile))
        self._tls_paths: dict[str, str | None] = {}
        for key in ("ca_certs", "certfile", "keyfile"):
            value = getattr(props, key)
            path = None if value is None else self._resolve(value)
            if path is not None and not path.is_file():
                raise ConfigError(f"no such file: {path}", f"{place}.{key}")
            self._tls_paths[key] = None if path is None else str(path)
        if props.keyfile and not props.certfile:
            raise ConfigError(
                "a client key needs its certificate: set certfile", f"{place}.keyfile"
            )
        if not self._tls:
            return
        # Load the files now, so a wrong one is a build error rather than endless retries.
        context = ssl.create_default_context()
        try:
            if self._tls_paths["ca_certs"]:
                context.load_verify_locations(cafile=self._tls_paths["ca_certs"])
        except (ssl.SSLError, OSError) as error:
            raise ConfigError(f"not a CA certificate file: {error}", f"{place}.ca_certs") from error
        try:
            if self._tls_paths["certfile"]:
                context.load_cert_chain(self._tls_paths["certfile"], self._tls_paths["keyfile"])
        except (ssl.SSLError, OSError) as error:
            raise ConfigError(
                f"not a client certificate and key: {error}", f"{place}.certfile"
            ) from error

    def make_transport(self) -> Transport:
        from panoptes.events._mqtt import MqttTransport, TlsFiles

        props = self.props
        tls = None
        if self._tls:
            tls = TlsFiles(
                self._tls_paths["ca_certs"],
                self._tls_paths["certfile"],
                self._tls_paths["keyfile"],
                props.insecure,
            )
        return MqttTransport(
            host=props.host,
            port=props.port,
            qos=props.qos,
            retain=props.retain,
            client_id=props.client_id,
            keepalive_s=props.keepalive_s,
            username=props.username,
            password=props.password,
            tls=tls,
            connect_timeout_s=props.connect_timeout_s,
        )
