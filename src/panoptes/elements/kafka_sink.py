"""``kafka``: sends events to a Kafka topic through an on-disk outbox, keyed by stream.

An idempotent producer keeps each stream's events in order in their partition.

See :mod:`panoptes.elements.broker_sink` for what every broker sink does and docs/events.md for
the payloads. Needs confluent-kafka: ``pip install panoptes[kafka]``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from panoptes.core.errors import ConfigError
from panoptes.elements.broker_sink import BrokerSink, BrokerSinkProperties
from panoptes.events.convert import EventMessage

if TYPE_CHECKING:
    from panoptes.events.sender import Transport


class KafkaSinkProperties(BrokerSinkProperties):
    type: Literal["kafka"] = Field("kafka", description="Element kind.")
    brokers: str = Field(
        "localhost:9092", description="Bootstrap servers, 'host:port' separated by commas."
    )
    topic: str = Field(
        "panoptes-events",
        description="Topic to produce to; may contain {source_id} and {source_name}.",
    )
    key: Literal["source_name", "source_id", "none"] = Field(
        "source_name",
        description="Message key: the stream's name or id, so that each stream's events stay "
        "in one partition and in order; 'none' spreads them (no order across partitions).",
    )
    config: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="More librdkafka producer settings ('message.timeout.ms', 'security."
        "protocol', 'sasl.username' ...); they win over panoptes' own.",
    )


class KafkaSink(BrokerSink):
    kind = "kafka"
    Properties = KafkaSinkProperties
    library = "confluent_kafka"
    extra = "kafka"

    props: KafkaSinkProperties

    def _topic_template(self) -> str:
        return self.props.topic

    def _stream_name(self, name: str) -> str:
        # Kafka topic names allow letters, digits, '.', '_' and '-'.
        return re.sub(r"[^A-Za-z0-9._-]+", "_", name)

    def _key(self, message: EventMessage) -> str:
        if self.props.key == "source_name":
            return message.source_name
        if self.props.key == "source_id":
            return str(message.source_id)
        return ""

    def _check_broker(self) -> None:
        from confluent_kafka import KafkaException, Producer

        from panoptes.events._kafka import logger

        # librdkafka checks every setting when a client is made; this one has no servers to
        # reach, so a misspelt setting is a build error, not a retry loop.
        settings = {**self._settings(), "bootstrap.servers": ""}
        settings.pop("test.mock.num.brokers", None)
        try:
            producer = Producer({**settings, "logger": logger})
        except (KafkaException, TypeError, ValueError) as error:
            raise ConfigError(
                f"librdkafka refuses it: {error}", f"{self.context.place}.config"
            ) from error
        close = getattr(producer, "close", None)
        if close is not None:
            close()

    def _settings(self) -> dict[str, Any]:
        return {"bootstrap.servers": self.props.brokers, **self.props.config}

    def make_transport(self) -> Transport:
        from panoptes.events._kafka import KafkaTransport

        return KafkaTransport(self._settings(), connect_timeout_s=self.props.connect_timeout_s)
