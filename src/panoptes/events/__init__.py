"""Events out of panoptes: DeepStream's nvmsgconv and nvmsgbroker, with nothing lost.

The broker sinks (``mqtt``, ``kafka``, ``redis``; :mod:`panoptes.elements.broker_sink`) put
every event converted from a batch's metadata (:class:`EventConverter`) into an on-disk
:class:`Outbox` first; a :class:`Sender` thread delivers them in order and deletes each once the
broker has acknowledged it. See docs/events.md.

    converter = EventConverter("deepstream-minimal", "frames")
    for message in converter.convert(batch):
        print(message.event_id, message.payload)
"""

from panoptes.events.convert import (
    MODES,
    PAYLOADS,
    EventConverter,
    EventMessage,
    Mode,
    Payload,
    payload_mode_problem,
)
from panoptes.events.deepstream import DeepStreamSink, read_msgconv_config, sink_from_deepstream
from panoptes.events.outbox import Outbox, OutgoingEvent, StoredEvent
from panoptes.events.payloads import AnalyticsModule, Place, Scene, Sensor
from panoptes.events.sender import BrokerUnavailable, Delivery, Sender, Transport

__all__ = [
    "MODES",
    "PAYLOADS",
    "AnalyticsModule",
    "BrokerUnavailable",
    "DeepStreamSink",
    "Delivery",
    "EventConverter",
    "EventMessage",
    "Mode",
    "Outbox",
    "OutgoingEvent",
    "Payload",
    "Place",
    "Scene",
    "Sender",
    "Sensor",
    "StoredEvent",
    "Transport",
    "payload_mode_problem",
    "read_msgconv_config",
    "sink_from_deepstream",
]
