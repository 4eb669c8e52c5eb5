"""Kafka through confluent-kafka (librdkafka): an idempotent producer, acknowledged by its
delivery reports.

librdkafka reconnects by itself and retries an event until ``message.timeout.ms``; an event that
still fails is reported and the sender sends it again from the outbox. Idempotence keeps each
partition's order through librdkafka's own retries.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from panoptes.events.outbox import StoredEvent
from panoptes.events.sender import BrokerUnavailable, Delivery, Transport

DEFAULT_CONFIG: Mapping[str, Any] = {
    "enable.idempotence": True,
    "linger.ms": 5,
}
"""librdkafka settings panoptes sets unless the sink's ``config`` does."""

_PERMANENT = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.INVALID_MSG,
        KafkaError._INVALID_ARG,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.TOPIC_EXCEPTION,
        KafkaError.RECORD_LIST_TOO_LARGE,
    }
)
"""Errors that sending the same event again cannot cure."""

logger = logging.getLogger("panoptes.events.kafka")
# librdkafka logs every failed connection attempt: they go to the application's logging if it
# has any, never to the console by default, since the sender says what matters on the bus.
logger.addHandler(logging.NullHandler())


class KafkaTransport(Transport):
    def __init__(
        self, config: Mapping[str, Any], *, connect_timeout_s: float = 5.0, window: int = 10_000
    ) -> None:
        self.config = {**DEFAULT_CONFIG, **config}
        self.connect_timeout_s = connect_timeout_s
        self.window = window
        self.description = f"the Kafka cluster at {self.config.get('bootstrap.servers', '?')}"
        self._producer: Producer | None = None
        self._deliveries: list[Delivery] = []
        self._trouble: str | None = None
        self._fatal: str | None = None

    def connect(self) -> None:
        if self._producer is None:
            try:
                self._producer = Producer(
                    {**self.config, "error_cb": self._on_error, "logger": logger}
                )
            except KafkaException as error:
                raise BrokerUnavailable(f"cannot make a producer: {error}") from error
        self._fatal = None
        try:
            self._producer.list_topics(timeout=self.connect_timeout_s)
        except KafkaException as error:
            raise BrokerUnavailable(f"no answer: {error.args[0].str()}") from error

    def send(self, events: Sequence[StoredEvent]) -> None:
        producer = self._require_producer()
        for event in events:
            try:
                producer.produce(
                    event.stream,
                    value=event.payload,
                    key=event.key.encode() if event.key else None,
                    on_delivery=functools.partial(self._on_delivery, event.seq),
                )
            except BufferError as error:  # the local queue is full: a window larger than it
                self._deliveries.append(Delivery(event.seq, f"local queue full: {error}"))
            except KafkaException as error:
                self._deliveries.append(_delivery(event.seq, error.args[0]))

    def poll(self, timeout_s: float) -> list[Delivery]:
        producer = self._require_producer()
        producer.poll(timeout_s)
        deliveries, self._deliveries = self._deliveries, []
        if self._fatal is not None:
            # A fatal error leaves the producer unusable: a new one is made on reconnection.
            reason, self._fatal = self._fatal, None
            self._close_producer()
            raise BrokerUnavailable(reason)
        return deliveries

    def trouble(self) -> str | None:
        trouble, self._trouble = self._trouble, None
        return trouble

    def close(self) -> None:
        self._close_producer()

    def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        # What is still in flight stays in the outbox and is sent again at the next start.
        producer.purge()
        producer.flush(0)
        close = getattr(producer, "close", None)  # confluent-kafka 2.6 and later
        if close is not None:
            close()
        self._deliveries.clear()

    def _require_producer(self) -> Producer:
        if self._producer is None:
            raise BrokerUnavailable("not connected")
        return self._producer

    def _on_delivery(self, seq: int, error: KafkaError | None, message: Message) -> None:
        self._deliveries.append(Delivery(seq) if error is None else _delivery(seq, error))

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = f"fatal error: {error.str()}"
        elif error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._trouble = error.str()


def _delivery(seq: int, error: KafkaError) -> Delivery:
    return Delivery(seq, error.str(), permanent=error.code() in _PERMANENT)
