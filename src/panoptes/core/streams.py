"""The per-stream side of the pipeline: each source's frame queue into the mux, and its counters."""

from __future__ import annotations

import enum
import threading
from collections import deque
from dataclasses import dataclass, field

from panoptes.core.frame import Frame


class StreamState(enum.Enum):
    STARTING = "starting"
    """Added, its thread not yet opening it."""
    CONNECTING = "connecting"
    PLAYING = "playing"
    RECONNECTING = "reconnecting"
    """A live stream that failed or stalled, waiting to be opened again."""
    ENDED = "ended"
    FAILED = "failed"
    REMOVED = "removed"


@dataclass
class StreamStats:
    """Counters of one stream, updated by its source thread and by the pipeline's output."""

    frames_decoded: int = 0
    frames_out: int = 0
    dropped: int = 0
    """Frames a live stream's queue threw away because the pipeline was behind."""
    corrupt: int = 0
    errors: int = 0
    reconnects: int = 0
    """Times a live stream was opened again after it failed or stalled."""
    expected_frames: int | None = None
    latency_s: deque[float] = field(default_factory=lambda: deque(maxlen=512))
    """Recent capture-to-output latencies in seconds."""


class FrameQueue:
    """A bounded queue of one stream's frames, shared with the mux through one condition.

    Files block the source when full (back-pressure, nothing lost); live streams drop their oldest
    frame instead, so a slow pipeline never makes a camera wait, and the drop is counted.
    """

    def __init__(self, maxsize: int, condition: threading.Condition, stats: StreamStats) -> None:
        self.capacity = max(1, maxsize)
        """The size asked for; ``maxsize`` is 1 while only the freshest frame is kept."""
        self.maxsize = self.capacity
        self.leaky = False
        self._frames: deque[Frame] = deque()
        self._condition = condition
        self._stats = stats

    def put(self, frame: Frame, stop: threading.Event) -> bool:
        """Queue ``frame``; False when ``stop`` was set while waiting for room."""
        with self._condition:
            if stop.is_set():  # removed while this frame was being decoded
                return False
            while len(self._frames) >= self.maxsize:
                if self.leaky:
                    self._frames.popleft()
                    self._stats.dropped += 1
                    break
                if stop.is_set():
                    return False
                self._condition.wait(0.1)
            self._frames.append(frame)
            self._condition.notify_all()
        return True

    def pop(self) -> Frame | None:
        """The oldest frame, or None; the caller holds the condition."""
        if not self._frames:
            return None
        frame = self._frames.popleft()
        self._condition.notify_all()
        return frame

    def __len__(self) -> int:
        return len(self._frames)

    def clear(self) -> None:
        with self._condition:
            self._frames.clear()
            self._condition.notify_all()


@dataclass
class Stream:
    """One source as the pipeline sees it."""

    source_id: int
    name: str
    uri: str
    place: str
    queue: FrameQueue
    stats: StreamStats
    state: StreamState = StreamState.STARTING
    thread: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    error: str | None = None

    @property
    def finished(self) -> bool:
        """Ended (or failed, or removed) with nothing left to hand to the mux."""
        done = self.state in (StreamState.ENDED, StreamState.FAILED, StreamState.REMOVED)
        return done and len(self.queue) == 0
