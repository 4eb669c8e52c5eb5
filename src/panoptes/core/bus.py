"""The message bus: errors, warnings, end of stream, streams added or removed, performance.

Messages travel out of band, beside the data: elements post them from their own threads and the
application reads them with :meth:`Bus.poll` or receives them in a subscribed callback.
"""

from __future__ import annotations

import enum
import queue
import threading
import time
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
    """A thread-safe message bus. ``poll`` and subscribers each see every message."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Message] = queue.Queue()
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self.history: list[Message] = []
        """Every message but PERF, for summaries and tests."""

    def post(self, message: Message) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
            if message.type is not MessageType.PERF:
                self.history.append(message)
        self._queue.put(message)
        for subscriber in subscribers:
            subscriber(message)

    def error(self, origin: str, text: str, **data: Any) -> None:
        self.post(Message(MessageType.ERROR, origin, text, data))

    def warning(self, origin: str, text: str, **data: Any) -> None:
        self.post(Message(MessageType.WARNING, origin, text, data))

    def subscribe(self, callback: Subscriber) -> None:
        """Call ``callback(message)`` for every later message, in the posting thread."""
        with self._lock:
            self._subscribers.append(callback)

    def unsubscribe(self, callback: Subscriber) -> None:
        with self._lock:
            self._subscribers.remove(callback)

    def poll(self, timeout_s: float | None = None) -> Message | None:
        """The next message, waiting up to ``timeout_s``; None when none came."""
        try:
            return self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def errors(self) -> list[Message]:
        with self._lock:
            return [m for m in self.history if m.type is MessageType.ERROR]
