"""The live view: the latest drawn picture of each source, JPEG-encoded only when someone asks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from panoptes.core.frame import TILED_SOURCE_ID

Listener = Callable[[], None]
"""Called, in the sink's thread, after each new picture and when the view closes."""


@dataclass(frozen=True)
class JpegPicture:
    """One encoded picture of one source."""

    source_id: int
    seq: int
    """Number of the published picture it was encoded from; grows with every picture of the
    view, so a client that has sent picture ``seq`` waits for a larger one."""
    data: bytes
    published_s: float
    """Wall-clock time (``time.time()``) at which the picture was published."""


@dataclass
class _Slot:
    image: np.ndarray
    seq: int
    published_s: float
    jpeg: JpegPicture | None = None
    encoded_at_s: float = float("-inf")
    """Monotonic time of the last encoding, for the ``max_fps`` limit."""
    encoding: threading.Lock = field(default_factory=threading.Lock)


class LiveView:
    """The latest picture per ``source_id`` (HWC uint8 BGR), shared between the sink that
    publishes and the HTTP clients that watch; thread-safe.

    Publishing keeps a reference and costs nothing more; :meth:`jpeg` encodes the latest picture
    when a client asks, at most ``max_fps`` times a second per source however many clients
    watch (they share the encoded picture), scaled down to ``width`` first when it is wider.
    """

    def __init__(
        self, *, max_fps: float = 15.0, jpeg_quality: int = 80, width: int | None = None
    ) -> None:
        if max_fps <= 0:
            raise ValueError(f"max_fps must be positive, not {max_fps}")
        self.max_fps = max_fps
        self.jpeg_quality = jpeg_quality
        self.width = width
        self.encoded = 0
        """Pictures encoded so far (a view nobody watches encodes none)."""
        self._slots: dict[int, _Slot] = {}
        self._seq = 0
        self._closed = False
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []

    # -- the sink's side ------------------------------------------------------------------------

    def publish(self, source_id: int, image: np.ndarray) -> None:
        """Make ``image`` the latest picture of ``source_id``; it must not change afterwards."""
        with self._lock:
            self._seq += 1
            slot = self._slots.get(source_id)
            if slot is None:
                self._slots[source_id] = _Slot(image, self._seq, time.time())
            else:
                slot.image, slot.seq, slot.published_s = image, self._seq, time.time()
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def forget(self, source_id: int) -> None:
        """Drop the picture of a stream that ended or was removed."""
        with self._lock:
            self._slots.pop(source_id, None)
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def close(self) -> None:
        """No more pictures will come (the pipeline ended); clients end after the last one."""
        with self._lock:
            self._closed = True
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    # -- the clients' side ----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def source_ids(self) -> list[int]:
        """The sources that have a picture, in order."""
        with self._lock:
            return sorted(self._slots)

    def default_source(self) -> int | None:
        """What a client that names no source sees: the tiled picture if there is one, else the
        stream with the lowest id; None before the first picture."""
        with self._lock:
            if TILED_SOURCE_ID in self._slots:
                return TILED_SOURCE_ID
            return min(self._slots, default=None)

    def latest_seq(self, source_id: int) -> int | None:
        """The ``seq`` of the latest picture of ``source_id``; None when it has none."""
        with self._lock:
            slot = self._slots.get(source_id)
            return None if slot is None else slot.seq

    def jpeg(self, source_id: int) -> JpegPicture | None:
        """The latest picture of ``source_id`` as JPEG, or None when it has none.

        A picture encoded less than ``1 / max_fps`` seconds ago is returned again rather than
        encoding a newer one, which bounds the encoding work whatever the number of clients.
        """
        with self._lock:
            slot = self._slots.get(source_id)
        if slot is None:
            return None
        with slot.encoding:
            with self._lock:
                image, seq, published_s = slot.image, slot.seq, slot.published_s
            cached = slot.jpeg
            now_s = time.monotonic()
            if cached is not None and (
                cached.seq == seq or now_s - slot.encoded_at_s < 1.0 / self.max_fps
            ):
                return cached
            picture = JpegPicture(source_id, seq, self._encode(image), published_s)
            slot.jpeg, slot.encoded_at_s = picture, now_s
            self.encoded += 1
            return picture

    def _encode(self, image: np.ndarray) -> bytes:
        height, width = image.shape[:2]
        if self.width is not None and width > self.width:
            size_wh = (self.width, max(1, round(height * self.width / width)))
            image = cv2.resize(image, size_wh, interpolation=cv2.INTER_AREA)
        ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise ValueError(f"OpenCV could not encode a {image.shape} {image.dtype} picture")
        return buffer.tobytes()

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener()`` after every later picture, removal and close, in the publishing
        thread: keep it short (set an event)."""
        with self._lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)
