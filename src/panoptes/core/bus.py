"""The message bus: errors, warnings, end of stream, streams added or removed, performance.

Messages travel out of band, beside the data: elements post them from their own threads and the
application reads them with :meth:`Bus.poll` or receives them in a subscribed callback.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class MessageType(enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    EOS = "eos"
    """The whole pipeline reached end of stream and stopped."""
    STREAM_ADDED = "stream-added"
    STREAM_ENDED = "stream-ended"
    STREAM_REMOVED = "stream-removed"
    PERF = "perf"


@dataclass(frozen=True)
class Message:
    type: MessageType
    origin: str
    """What posted it: an element's name, or a stream's name for stream messages."""
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    time_s: float = field(default_factory=time.time)

    def __str__(self) -> str:
        return f"{self.type.value}: {self.origin}: {self.text}" if self.text else self.origin


Subscriber = Callable[[Message], None]


class Bus:
    """A thread-safe message bus. ``poll`` and subscribers each see every message.

    Unread messages are kept up to ``backlog`` (the oldest go first), so an application that
    never polls does not grow; ``history`` keeps the last ``backlog`` messages other than PERF,
    and ``errors()`` every error (up to ``backlog``) for the run's summary.
    """

    def __init__(self, backlog: int = 10_000) -> None:
        self._unread: deque[Message] = deque(maxlen=backlog)
        self._arrived = threading.Condition()
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self.history: deque[Message] = deque(maxlen=backlog)
        """The latest messages but PERF, for summaries and tests."""
        self._errors: deque[Message] = deque(maxlen=backlog)
        self.subscriber_failures = 0
        """Exceptions raised by subscribers: counted, never passed to the posting element."""

    def post(self, message: Message) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
            if message.type is not MessageType.PERF:
                self.history.append(message)
            if message.type is MessageType.ERROR:
                self._errors.append(message)
        with self._arrived:
            self._unread.append(message)
            self._arrived.notify_all()
        for subscriber in subscribers:
            # A subscriber runs in the posting element's thread: its failure (a closed stdout,
            # a bug) must not take that element down.
            try:
                subscriber(message)
            except Exception:
                with self._lock:
                    self.subscriber_failures += 1

    def error(self, origin: str, text: str, **data: Any) -> None:
        self.post(Message(MessageType.ERROR, origin, text, data))

    def warning(self, origin: str, text: str, **data: Any) -> None:
        self.post(Message(MessageType.WARNING, origin, text, data))

    def subscribe(self, callback: Subscriber) -> None:
        """Call ``callback(message)`` for every later message, in the posting thread.

        Keep it short: it runs in the thread of the element that posted the message.
        """
        with self._lock:
            self._subscribers.append(callback)

    def unsubscribe(self, callback: Subscriber) -> None:
        with self._lock:
            self._subscribers.remove(callback)

    def poll(self, timeout_s: float | None = None) -> Message | None:
        """The next unread message, waiting up to ``timeout_s``; None when none came."""
        with self._arrived:
            if not self._unread:
                self._arrived.wait(timeout_s)
            return self._unread.popleft() if self._unread else None

    def errors(self) -> list[Message]:
        with self._lock:
            return list(self._errors)
