"""Redis streams through redis-py: ``XADD``, acknowledged by its reply (the entry's id).

A window of events goes out as one pipeline (one round trip), whose replies come back in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.retry import Retry

from panoptes.events.outbox import StoredEvent
from panoptes.events.sender import BrokerUnavailable, Delivery, Transport


class RedisTransport(Transport):
    def __init__(
        self,
        *,
        url: str,
        maxlen: int | None = None,
        payload_key: str = "metadata",
        connect_timeout_s: float = 5.0,
        window: int = 500,
    ) -> None:
        self.url = url
        self.maxlen = maxlen
        self.payload_key = payload_key
        self.connect_timeout_s = connect_timeout_s
        self.window = window
        self.description = f"the Redis server at {redacted_url(url)}"
        self._client: redis.Redis | None = None
        self._pending: list[StoredEvent] = []

    def connect(self) -> None:
        self.close()
        # No retries inside redis-py: the sender retries, with its own back-off and messages.
        client = redis.Redis.from_url(
            self.url,
            socket_connect_timeout=self.connect_timeout_s,
            socket_timeout=max(10.0, self.connect_timeout_s),
            retry=Retry(redis.backoff.NoBackoff(), 0),
        )
        try:
            client.ping()
        except redis.RedisError as error:
            client.close()
            raise BrokerUnavailable(str(error)) from error
        self._client = client

    def send(self, events: Sequence[StoredEvent]) -> None:
        self._pending.extend(events)

    def poll(self, timeout_s: float) -> list[Delivery]:
        if not self._pending:
            return []
        if self._client is None:
            raise BrokerUnavailable("not connected")
        events, self._pending = self._pending, []
        pipeline = self._client.pipeline(transaction=False)
        for event in events:
            pipeline.xadd(event.stream, {self.payload_key: event.payload}, maxlen=self.maxlen)
        try:
            replies = pipeline.execute(raise_on_error=False)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise BrokerUnavailable(str(error)) from error
        deliveries = []
        for event, reply in zip(events, replies, strict=True):
            if isinstance(reply, (redis.ConnectionError, redis.TimeoutError)):
                raise BrokerUnavailable(str(reply))
            if isinstance(reply, Exception):  # WRONGTYPE: the key holds something else
                deliveries.append(Delivery(event.seq, str(reply), permanent=True))
            else:
                deliveries.append(Delivery(event.seq))
        return deliveries

    def close(self) -> None:
        self._pending.clear()
        client, self._client = self._client, None
        if client is not None:
            client.close()


def redacted_url(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))
