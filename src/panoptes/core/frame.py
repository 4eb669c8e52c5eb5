"""Frames and batches: what flows from the sources, through the mux, to the sinks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from panoptes.core.geometry import Letterbox
from panoptes.core.meta import FrameMeta, Objects, RecordingRequest

if TYPE_CHECKING:
    from panoptes.tracking import FinishedTrack

TILED_SOURCE_ID = -1
"""``source_id`` of the frames a tiler makes from several streams."""


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
    fps: float | None = None
    """The stream's nominal frame rate, when its source knows it (video sinks use it)."""

    @property
    def objects(self) -> Objects:
        """Shortcut for ``meta.objects``."""
        return self.meta.objects

    def request_snapshot(self) -> None:
        """Have every ``snapshot`` sink save this frame (as well as its every-N-frames ones)."""
        self.meta.snapshot_requested = True

    def request_recording(
        self, before_s: float | None = None, after_s: float | None = None
    ) -> None:
        """Have the ``record`` element save a clip of this stream, from ``before_s`` seconds
        before this frame to ``after_s`` after it (None: the ``record`` section's values). The
        clip's path then comes in an event of kind ``"recording"`` on this frame
        (``extra["video_path"]``); a request during a clip of the stream extends that clip."""
        for key, value in (("before_s", before_s), ("after_s", after_s)):
            if value is not None and not value >= 0:
                raise ValueError(f"{key} must be 0 or more, not {value}")
        self.meta.recording_request = RecordingRequest(before_s, after_s)


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
    terminated_tracks: list[FinishedTrack] = field(default_factory=list)
    """Tracks the tracker ended in this batch (lost too long, or their stream ended), each
    with its ``source_id``, as nvtracker's terminated-track data: what counting needs."""

    def __iter__(self) -> Iterator[Frame]:
        return iter(self.frames)

    def __len__(self) -> int:
        return len(self.frames)

    def branch_copy(self) -> Batch:
        """A batch of new Frame objects sharing pixels and metadata, for a branch that replaces
        frames' images (the osd draws on copies, while the metadata sinks read the originals)."""
        return replace(self, frames=[replace(frame) for frame in self.frames])

    def drop(self, frame: Frame) -> None:
        """Remove ``frame`` from the batch: later elements and sinks will not see it."""
        self.frames = [f for f in self.frames if f is not frame]
