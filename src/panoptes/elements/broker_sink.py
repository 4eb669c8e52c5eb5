"""The common part of the message broker sinks (``mqtt``, ``kafka``, ``redis``: DeepStream's
nvmsgconv + nvmsgbroker in one element).

Each converts the metadata of the batches it gets into event messages (see
:class:`~panoptes.events.EventConverter`), writes them to its on-disk outbox in one transaction
per batch, and a sender thread delivers them in order and deletes each once the broker has
acknowledged it. A broker that is down, at start or later, loses nothing: events wait in the
outbox, the sender retries with back-off and says so on the bus once, and what is still in the
outbox when panoptes stops (or crashes) is sent first at the next start. Delivery is
at least once; every payload carries a unique id for consumers to drop duplicates by.

The broker libraries are optional (``pip install panoptes[mqtt]``, ``[kafka]``, ``[redis]``, or
``[events]`` for all three) and imported when a sink is built.
"""

from __future__ import annotations

import importlib
import os
import string
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from panoptes.core.element import Element, ElementProperties
from panoptes.core.errors import ConfigError
from panoptes.core.frame import Batch
from panoptes.core.negotiation import ANY_MEMORY
from panoptes.events.convert import EventConverter, EventMessage, Mode, Payload
from panoptes.events.outbox import Outbox, OutgoingEvent, check_outbox

if TYPE_CHECKING:
    from panoptes.events.payloads import Scene
    from panoptes.events.sender import Sender, Transport

PLACEHOLDERS = ("source_id", "source_name")
"""What a topic or stream name may contain: ``{source_id}`` and ``{source_name}``."""

_DROP_REPORT_INTERVAL_S = 60.0


class BrokerSinkProperties(ElementProperties):
    """What every broker sink has: the converter's settings and the outbox's."""

    name: str | None = Field(None, description="Element name.")
    payload: Payload = Field(
        "panoptes",
        description="Payload schema: 'panoptes' (docs/events.md), 'deepstream-full' or "
        "'deepstream-minimal' (nvmsgconv's msg-conv-payload-type 0 and 1).",
    )
    mode: Mode = Field(
        "objects",
        description="What one message is about: 'objects' (one per object per frame), 'frames' "
        "(one per frame, with its objects) or 'events' (one per analytics event).",
    )
    min_interval_s: float = Field(
        0.0,
        ge=0,
        description="Mode 'objects': at least this long (stream time) between two messages "
        "about one tracked object, per stream and track id; 0 = every frame.",
    )
    frame_interval: int = Field(
        1,
        ge=1,
        description="Modes 'objects' and 'frames': only frames whose number is a multiple of "
        "this (DeepStream's msg-conv-frame-interval).",
    )
    empty_frames: bool = Field(
        False, description="Mode 'frames': also send frames without objects or events."
    )
    msg_conv_config: str | None = Field(
        None,
        description="DeepStream msg-conv-config file ([sensorN], [placeN], [analyticsN]) for the "
        "deepstream payloads, relative to the config's folder; default: each stream's name as "
        "its sensor id.",
    )
    outbox: str | None = Field(
        None,
        description="SQLite file where events wait until the broker has them, relative to the "
        "config's folder; default out/outbox-<sink name>.sqlite. One per sink.",
    )
    max_events: int | None = Field(
        None,
        ge=1,
        description="Keep at most this many events in the outbox (the oldest are dropped, "
        "counted and reported) so that a long outage cannot fill the disk; null = no limit.",
    )
    drain_timeout_s: float = Field(
        10.0,
        ge=0,
        description="At end of stream, wait this long for the outbox to empty; what remains is "
        "sent at the next start.",
    )
    retry_max_s: float = Field(
        30.0, gt=0, description="Longest wait between two attempts to reach the broker."
    )
    connect_timeout_s: float = Field(
        5.0, gt=0, description="How long one attempt to reach the broker may take."
    )
    fsync: bool = Field(
        False,
        description="Make each batch in the outbox durable against power loss too (slower); "
        "without it, events survive a crash of the process.",
    )


class BrokerSink(Element):
    """The broker sinks' common work: convert, store in the outbox, run the sender."""

    is_sink = True
    memory = ANY_MEMORY  # metadata only: frames may stay on the GPU
    library: ClassVar[str]
    """Module of the broker's Python library, imported at build."""
    extra: ClassVar[str]
    """``pip install panoptes[extra]`` installs it."""

    props: BrokerSinkProperties

    def build(self) -> None:
        place = self.context.place
        try:
            importlib.import_module(self.library)
        except ImportError as error:
            raise ConfigError(
                f"the {self.kind} sink needs the {self.library.split('.')[0]} library, which "
                f"cannot be imported ({error}); install it: pip install 'panoptes[{self.extra}]'",
                f"{place}.type",
            ) from error
        self.converter = self._converter()
        self._template = check_template(self._topic_template(), f"{place}.{self._topic_field}")
        self._check_broker()
        self.outbox_path = self._resolve(self.props.outbox or f"out/outbox-{self.name}.sqlite")
        try:
            check_outbox(self.outbox_path)
        except ConfigError as error:
            raise ConfigError(error.reason, f"{place}.outbox") from error
        problem = _unwritable_folder(self.outbox_path.parent)
        if problem:
            raise ConfigError(problem, f"{place}.outbox")
        self._check_outbox_unshared()
        self._streams: dict[tuple[int, str], str] = {}
        self.outbox: Outbox | None = None
        """The outbox, opened when the first batch comes (or at end of stream)."""
        self.sender: Sender | None = None
        """The sender, started with the outbox; kept after close for its counts."""
        self._closed = False
        self._dropped_reported = 0
        self._dropped_reported_s = 0.0

    # -- what each broker says ------------------------------------------------------------------

    _topic_field: ClassVar[str] = "topic"

    def _topic_template(self) -> str:
        """The topic (stream) property, checked."""
        raise NotImplementedError

    def make_transport(self) -> Transport:
        """The broker connection the sender uses."""
        raise NotImplementedError

    def _check_broker(self) -> None:
        """Broker-specific checks at build (files, settings)."""

    def _stream_name(self, name: str) -> str:
        """A stream's name as it may appear in a topic."""
        return name

    def _key(self, message: EventMessage) -> str:
        return ""

    # -- the element ----------------------------------------------------------------------------

    def process(self, batch: Batch) -> None:
        self._start()
        assert self.outbox is not None and self.sender is not None
        messages = self.converter.convert(batch)
        if not messages:
            return None
        events = [
            OutgoingEvent(
                self._stream(message), self._key(message), message.event_id, message.payload
            )
            for message in messages
        ]
        dropped = self.outbox.put(events)
        self.sender.wake()
        if dropped:
            self._report_dropped()
        return None

    def drain(self) -> list[Batch]:
        self._start()
        assert self.outbox is not None and self.sender is not None
        if not self.sender.wait_empty(self.props.drain_timeout_s):
            self.bus.warning(
                self.name,
                f"{len(self.outbox)} events stay in the outbox {self.outbox.path} after "
                f"waiting {self.props.drain_timeout_s:g} s for "
                f"{self.sender.transport.description}; they are sent at the next start",
                outbox=str(self.outbox.path),
                events=len(self.outbox),
            )
        if self.outbox.dropped > self._dropped_reported:
            self._report_dropped(final=True)
        return []

    def close(self) -> None:
        self._closed = True
        sender = getattr(self, "sender", None)
        if sender is not None:
            sender.stop()
        outbox = getattr(self, "outbox", None)
        if outbox is not None:
            outbox.close()

    def _start(self) -> None:
        if self.sender is not None:
            return
        if self._closed:
            raise RuntimeError(f"{self.name} is closed")
        from panoptes.events.sender import Sender

        try:
            self.outbox = Outbox(
                self.outbox_path, max_events=self.props.max_events, fsync=self.props.fsync
            )
        except ConfigError as error:
            raise ConfigError(error.reason, f"{self.context.place}.outbox") from error
        self.sender = Sender(
            self.outbox,
            self.make_transport(),
            bus=self.bus,
            origin=self.name,
            retry_max_s=self.props.retry_max_s,
        )
        self.sender.start()

    def _stream(self, message: EventMessage) -> str:
        key = (message.source_id, message.source_name)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = self._template.format(
                source_id=message.source_id, source_name=self._stream_name(message.source_name)
            )
        return stream

    def _converter(self) -> EventConverter:
        props = self.props
        place = self.context.place
        scene: Scene | None = None
        if props.msg_conv_config is not None:
            from panoptes.events.deepstream import read_msgconv_config

            path = self._resolve(props.msg_conv_config)
            if not path.is_file():
                raise ConfigError(f"no such file: {path}", f"{place}.msg_conv_config")
            scene = read_msgconv_config(path)
        try:
            return EventConverter(
                props.payload,
                props.mode,
                min_interval_s=props.min_interval_s,
                frame_interval=props.frame_interval,
                empty_frames=props.empty_frames,
                scene=scene,
                classifier_names=_classifier_names(self.context.config),
            )
        except ConfigError as error:
            raise ConfigError(error.reason, f"{place}.{error.place}") from error

    def _check_outbox_unshared(self) -> None:
        """Two sinks of one pipeline on one outbox would each send the other's events."""
        for index, sink in enumerate(getattr(self.context.config, "sinks", None) or []):
            if sink is self.props or not isinstance(sink, BrokerSinkProperties):
                continue
            name = sink.name or f"{getattr(sink, 'type', '')}{index}"
            if self._resolve(sink.outbox or f"out/outbox-{name}.sqlite") == self.outbox_path:
                raise ConfigError(
                    f"sinks[{index}] uses the same outbox {self.outbox_path}; give each broker "
                    "sink its own",
                    f"{self.context.place}.outbox",
                )

    def _resolve(self, path: str) -> Path:
        resolved = Path(path).expanduser()
        return resolved if resolved.is_absolute() else self.context.base_dir / resolved

    def _report_dropped(self, *, final: bool = False) -> None:
        assert self.outbox is not None
        now_s = time.monotonic()
        first = self._dropped_reported == 0
        if not (first or final or now_s - self._dropped_reported_s >= _DROP_REPORT_INTERVAL_S):
            return
        self._dropped_reported = self.outbox.dropped
        self._dropped_reported_s = now_s
        self.bus.warning(
            self.name,
            f"the outbox {self.outbox.path} is full (max_events={self.props.max_events}): "
            f"{self.outbox.dropped} of the oldest events dropped so far",
            dropped=self.outbox.dropped,
        )


def check_template(template: str, place: str) -> str:
    """``template`` when it names only :data:`PLACEHOLDERS`."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as error:
        raise ConfigError(f"{template!r} is not a valid template: {error}", place) from error
    unknown = [name for name in fields if name not in PLACEHOLDERS]
    if unknown:
        known = ", ".join(f"{{{name}}}" for name in PLACEHOLDERS)
        raise ConfigError(f"unknown placeholder {{{unknown[0]}}}; known: {known}", place)
    if not template:
        raise ConfigError("must not be empty", place)
    return template


def _classifier_names(config: Any) -> dict[int, str]:
    """Each model's name by component id (gie_id: its place in ``infer``, from 1)."""
    infers = getattr(config, "infer", None) or []
    return {index + 1: infer.name or f"infer{index}" for index, infer in enumerate(infers)}


def _unwritable_folder(folder: Path) -> str | None:
    """Why a file could not be created in ``folder`` (made when the sink starts), or None."""
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot write into {folder}"
    return None
