"""``mux``: takes frames from every stream and forms batches, as nvstreammux does.

A batch is pushed when it holds ``batch_size`` frames, when every stream still playing has given
one frame (topped up with frames files already have queued), or when ``batched_push_timeout_ms``
has passed since its first frame, whichever comes first; a stream that ended or stalls never holds
the others back. Frames are scaled to the mux's
resolution in their source's thread, so scaling runs in parallel and off the inference thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from pydantic import Field

from panoptes.core.element import ElementProperties
from panoptes.core.frame import Frame
from panoptes.core.geometry import Letterbox
from panoptes.core.streams import Stream


class MuxProperties(ElementProperties):
    batch_size: int = Field(
        0,
        ge=0,
        description="Frames per batch; 0 = the number of sources when the pipeline starts, or "
        "the number of model instances if larger.",
    )
    batched_push_timeout_ms: float = Field(
        40.0, gt=0, description="Push an incomplete batch this long after its first frame."
    )
    width: int = Field(
        0, ge=0, description="Output width in pixels; 0 = keep each frame's own size."
    )
    height: int = Field(
        0, ge=0, description="Output height in pixels; 0 = keep each frame's own size."
    )
    keep_aspect: bool = Field(
        True,
        description="Keep the aspect ratio and pad (nvstreammux enable-padding); false stretches.",
    )
    pad_value: int = Field(0, ge=0, le=255, description="Grey level of the padding.")


class Mux:
    """Forms batches from the streams' frame queues; see :class:`MuxProperties`."""

    kind = "mux"
    Properties = MuxProperties

    def __init__(self, props: MuxProperties, condition: threading.Condition) -> None:
        self.props = props
        self.batch_size = props.batch_size
        self._condition = condition
        self._next_stream = 0

    @property
    def scales(self) -> bool:
        return bool(self.props.width and self.props.height)

    def prepare(self, frame: Frame) -> None:
        """Scale ``frame`` to the mux resolution (runs in the frame's source thread)."""
        if not self.scales:
            return
        size_wh = (self.props.width, self.props.height)
        h, w = frame.image.shape[:2]
        if (w, h) == size_wh:
            return
        transform = Letterbox.fit((w, h), size_wh, keep_ratio=self.props.keep_aspect)
        frame.image = transform.warp(frame.image, size_wh, pad_value=self.props.pad_value)
        frame.transform = frame.transform.then(transform)

    def _fill(self, batch: list[Frame], streams: Sequence[Stream]) -> None:
        """Top up a batch that every stream has given a frame to with more frames that files
        already have queued, in order, so that a few streams still fill the model's batch."""
        for stream in streams:
            while len(batch) < self.batch_size and not stream.queue.leaky:
                frame = stream.queue.pop()
                if frame is None:
                    break
                batch.append(frame)

    def collect(
        self,
        streams: Callable[[], Sequence[Stream]],
        stop: threading.Event,
        *,
        keep_alive: bool = False,
    ) -> list[Frame] | None:
        """The frames of the next batch, or None when every stream is finished (or ``stop``).

        ``streams`` returns the current streams (sources may come and go while this waits);
        with ``keep_alive`` the mux waits for new streams, until ``stop``, when none is left.
        """
        timeout_s = self.props.batched_push_timeout_ms / 1000
        batch: list[Frame] = []
        taken: set[int] = set()
        deadline: float | None = None
        with self._condition:
            while True:
                current = list(streams())
                if current:
                    start = self._next_stream % len(current)
                    for stream in current[start:] + current[:start]:
                        if len(batch) >= self.batch_size:
                            break
                        if stream.source_id in taken:
                            continue
                        frame = stream.queue.pop()
                        if frame is not None:
                            batch.append(frame)
                            taken.add(stream.source_id)
                    self._next_stream += 1
                playing = [s for s in current if not s.finished]
                if batch and deadline is None:
                    deadline = time.monotonic() + timeout_s
                if len(batch) >= self.batch_size:
                    return batch
                if batch and all(s.source_id in taken for s in playing):
                    self._fill(batch, current)
                    return batch
                if not playing:
                    if batch or not keep_alive or stop.is_set():
                        return batch or None
                    if current:  # finished streams: an empty batch lets their end be announced
                        return []
                if stop.is_set() and not batch:
                    return None
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return batch
                    self._condition.wait(remaining)
                else:
                    self._condition.wait(0.1)
