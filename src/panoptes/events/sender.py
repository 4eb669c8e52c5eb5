"""The sender: a thread that delivers the outbox's events to a broker, in order, at least once.

It reads events in sequence order, hands up to a window of them to the broker at a time, and
deletes each from the outbox once the broker has acknowledged it. When the broker cannot be
reached, or loses or fails events, nothing is deleted: the sender waits (back-off doubling up to
``retry_max_s``) and starts again from the oldest event still in the outbox, so order per stream
is kept and an event can at worst arrive twice (consumers drop the copy by its id).

Brokers differ only in their :class:`Transport`: how to connect, send and read acknowledgements.
"""

from __future__ import annotations

import abc
import contextlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from panoptes.core.bus import Bus, Message, MessageType
from panoptes.core.errors import PanoptesError
from panoptes.events.outbox import Outbox, StoredEvent

_IDLE_WAIT_S = 0.25
"""Longest wait for new events while nothing is in flight (the broker's keep-alive is served
between waits)."""
_ACK_WAIT_S = 0.05
"""Longest wait for acknowledgements before looking for new events again."""


class BrokerUnavailable(PanoptesError, ConnectionError):
    """The broker cannot be reached, or the connection to it was lost; retried with back-off."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of one event handed to the broker."""

    seq: int
    error: str | None = None
    """None when the broker acknowledged the event."""
    permanent: bool = False
    """The broker refuses this event for good (too large, a topic it forbids): sending it again
    cannot help, so it leaves the outbox, counted and reported."""


class Transport(abc.ABC):
    """One broker connection, used by the sender's thread only."""

    description: str
    """``the MQTT broker at host:1883``, for messages."""
    window: int = 1000
    """Events in flight (sent, not yet acknowledged) at most."""

    @abc.abstractmethod
    def connect(self) -> None:
        """Connect (again); raise :class:`BrokerUnavailable` when the broker cannot be reached."""

    @abc.abstractmethod
    def send(self, events: Sequence[StoredEvent]) -> None:
        """Start delivering ``events`` in this order; results come from :meth:`poll`.

        Raise :class:`BrokerUnavailable` when the connection is lost."""

    @abc.abstractmethod
    def poll(self, timeout_s: float) -> list[Delivery]:
        """Serve the connection for up to ``timeout_s`` (less when results come); return the
        results so far. Raise :class:`BrokerUnavailable` when the connection is lost."""

    def trouble(self) -> str | None:
        """A connection problem noticed without losing the connection (a client that reconnects
        by itself, as librdkafka does), once; None when there is none."""
        return None

    @abc.abstractmethod
    def close(self) -> None:
        """Disconnect cleanly. Events in flight stay in the outbox and are sent again later."""


class Sender:
    """Delivers ``outbox`` through ``transport`` in a thread of its own.

    Says on ``bus`` (as ``origin``) when the broker cannot be reached, once per outage, and when
    it is back; reports events the broker refused for good.
    """

    def __init__(
        self,
        outbox: Outbox,
        transport: Transport,
        *,
        bus: Bus,
        origin: str,
        retry_min_s: float = 0.5,
        retry_max_s: float = 30.0,
    ) -> None:
        self.outbox = outbox
        self.transport = transport
        self.bus = bus
        self.origin = origin
        self.retry_min_s = min(retry_min_s, retry_max_s)
        self.retry_max_s = retry_max_s
        self.delivered = 0
        """Events the broker acknowledged (an event sent twice counts twice)."""
        self.refused = 0
        """Events the broker refused for good, removed from the outbox."""
        self.outages = 0
        """Times the broker became unreachable (or was at start)."""
        self._down = False
        self._connected = False
        self._in_flight: set[int] = set()
        self._cursor = 0
        """Highest sequence number handed to the broker since the last (re)start."""
        self._retrying = False
        """A delivery failed: send nothing new until every event in flight has its result,
        then start again from the oldest event in the outbox."""
        self._retry_s = self.retry_min_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sender-{origin}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """New events are in the outbox."""
        self._wake.set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def wait_empty(self, timeout_s: float) -> bool:
        """Wait until the outbox is empty (True) or ``timeout_s`` passed (False)."""
        deadline = time.monotonic() + timeout_s
        while len(self.outbox):
            if not self.alive or time.monotonic() >= deadline:
                return False
            self.wake()
            time.sleep(0.02)
        return True

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread and close the connection; the outbox keeps what was not delivered."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    # -- the thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._step()
        except Exception as error:
            self.bus.error(
                self.origin,
                f"the sender stopped on {error!r}; {len(self.outbox)} events stay in the "
                f"outbox {self.outbox.path} for the next start",
                exception=error,
            )
        finally:
            try:
                self.transport.close()
            except Exception as error:
                self.bus.warning(self.origin, f"closing the connection failed: {error!r}")

    def _step(self) -> None:
        if not self._connected:
            try:
                self.transport.connect()
            except BrokerUnavailable as error:
                self._back_off(str(error))
                return
            self._connected = True
            self._restart_from_oldest()
            self._announce_up()
        sent = self._send_more()
        idle = not sent and not self._in_flight
        if idle:
            self._wake.wait(_IDLE_WAIT_S)
            self._wake.clear()
        try:
            deliveries = self.transport.poll(0.0 if idle or sent else _ACK_WAIT_S)
        except BrokerUnavailable as error:
            self._connected = False
            self.transport.close()
            self._back_off(str(error))
            return
        self._settle(deliveries)
        trouble = self.transport.trouble()
        if trouble:
            self._announce_down(trouble)
        if self._retrying and not self._in_flight:
            self._retrying = False
            self._restart_from_oldest()
            self._wait(self._next_retry_s())

    def _send_more(self) -> int:
        room = self.transport.window - len(self._in_flight)
        if self._retrying or room <= 0:
            return 0
        events = self.outbox.read(self._cursor, room)
        if not events:
            return 0
        self._cursor = events[-1].seq
        self._in_flight.update(event.seq for event in events)
        # A lost connection raises again from poll, which handles it.
        with contextlib.suppress(BrokerUnavailable):
            self.transport.send(events)
        return len(events)

    def _settle(self, deliveries: list[Delivery]) -> None:
        done: list[int] = []
        acknowledged = 0
        failure: str | None = None
        for delivery in deliveries:
            if delivery.seq not in self._in_flight:
                continue
            self._in_flight.discard(delivery.seq)
            if delivery.error is None:
                done.append(delivery.seq)
                acknowledged += 1
            elif delivery.permanent:
                done.append(delivery.seq)
                self._report_refused(delivery)
            else:
                failure = delivery.error
        if done:
            self.outbox.delete(done)
        self.delivered += acknowledged
        if failure is not None:
            self._retrying = True
            self._announce_down(failure)
        elif acknowledged:
            self._retry_s = self.retry_min_s
            self._announce_up()

    def _restart_from_oldest(self) -> None:
        self._in_flight.clear()
        self._cursor = 0

    def _back_off(self, reason: str) -> None:
        self._in_flight.clear()
        self._retrying = False
        self._announce_down(reason)
        self._wait(self._next_retry_s())

    def _next_retry_s(self) -> float:
        delay_s = self._retry_s
        self._retry_s = min(self._retry_s * 2, self.retry_max_s)
        return delay_s

    def _wait(self, delay_s: float) -> None:
        self._stop.wait(delay_s)

    def _announce_down(self, reason: str) -> None:
        if self._down:
            return
        self._down = True
        self.outages += 1
        self.bus.warning(
            self.origin,
            f"cannot deliver to {self.transport.description}: {reason.rstrip('.')}; events "
            f"wait in the outbox {self.outbox.path} ({len(self.outbox)} now) and are sent when "
            f"it is back (retrying up to every {self.retry_max_s:g} s)",
            outbox=str(self.outbox.path),
        )

    def _announce_up(self) -> None:
        if not self._down:
            return
        self._down = False
        self.bus.post(
            Message(
                MessageType.INFO,
                self.origin,
                f"{self.transport.description} is back; sending the {len(self.outbox)} events "
                "waiting in the outbox",
            )
        )

    def _report_refused(self, delivery: Delivery) -> None:
        self.refused += 1
        if self.refused <= 3 or self.refused % 100 == 0:
            self.bus.error(
                self.origin,
                f"{self.transport.description} refused event #{delivery.seq} for good "
                f"({delivery.error}); it is dropped ({self.refused} so far)",
            )
