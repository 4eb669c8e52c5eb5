"""``redis``: appends events to a Redis stream (XADD) through an on-disk outbox.

See :mod:`panoptes.elements.broker_sink` for what every broker sink does and docs/events.md for
the payloads. Needs redis-py: ``pip install panoptes[redis]``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from panoptes.core.errors import ConfigError
from panoptes.elements.broker_sink import BrokerSink, BrokerSinkProperties

if TYPE_CHECKING:
    from panoptes.events.sender import Transport


class RedisSinkProperties(BrokerSinkProperties):
    type: Literal["redis"] = Field("redis", description="Element kind.")
    url: str = Field(
        "redis://localhost:6379/0",
        description="Server URL: redis://[[user]:password@]host:port/db, rediss:// for TLS.",
    )
    stream: str = Field(
        "panoptes-events",
        description="Stream key to XADD to; may contain {source_id} and {source_name}.",
    )
    maxlen: int | None = Field(
        None, ge=1, description="Trim the stream to about this many entries (XADD MAXLEN ~)."
    )
    payload_key: str = Field(
        "metadata", description="Field of each stream entry that holds the payload."
    )


class RedisSink(BrokerSink):
    kind = "redis"
    Properties = RedisSinkProperties
    library = "redis"
    extra = "redis"
    _topic_field = "stream"

    props: RedisSinkProperties

    def _topic_template(self) -> str:
        return self.props.stream

    def _check_broker(self) -> None:
        if not re.match(r"(redis|rediss|unix)://", self.props.url):
            raise ConfigError(
                f"{self.props.url!r} is not a redis://, rediss:// or unix:// URL",
                f"{self.context.place}.url",
            )

    def make_transport(self) -> Transport:
        from panoptes.events._redis import RedisTransport

        props = self.props
        return RedisTransport(
            url=props.url,
            maxlen=props.maxlen,
            payload_key=props.payload_key,
            connect_timeout_s=props.connect_timeout_s,
        )
