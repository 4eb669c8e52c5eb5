"""Frames and batches: what flows from the sources, through the mux, to the sinks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from panoptes.core.geometry import Letterbox
from panoptes.core.meta import FrameMeta, Objects


@dataclass
class Frame:
    """One decoded picture of one stream.

    ``image`` holds the pixels as they are now (HWC uint8 BGR on the CPU; after the mux, at the
    mux's resolution). ``size_wh`` is the original frame's size and ``transform`` maps original
    pixels to ``image`` pixels, so metadata always speaks in original-frame coordinates whatever
    resolution the pixels travel at.
    """

    source_id: int
    source_name: str
    frame_num: int
    pts_s: float | None
    capture_time_s: float
    """Wall-clock time (``time.time()``) at which the frame was decoded or received."""
    size_wh: tuple[int, int]
    image: np.ndarray
    transform: Letterbox = field(default_factory=Letterbox)
    meta: FrameMeta = field(default_factory=FrameMeta)

    @property
    def objects(self) -> Objects:
        """Shortcut for ``meta.objects``."""
        return self.meta.objects


@dataclass(frozen=True)
class StreamEvent:
    """An in-band event about one stream, carried by the first batch after it happened."""

    kind: str
    """``"added"``, ``"ended"`` or ``"removed"``."""
    source_id: int
    source_name: str


@dataclass
class Batch:
    """The frames of several streams taken together by the mux, plus in-band stream events."""

    frames: list[Frame]
    batch_num: int = 0
    events: list[StreamEvent] = field(default_factory=list)
    created_s: float = 0.0
    """Monotonic time at which the mux pushed the batch."""

    def __iter__(self) -> Iterator[Frame]:
        return iter(self.frames)

    def __len__(self) -> int:
        return len(self.frames)

    def drop(self, frame: Frame) -> None:
        """Remove ``frame`` from the batch: later elements and sinks will not see it."""
        self.frames = [f for f in self.frames if f is not frame]
