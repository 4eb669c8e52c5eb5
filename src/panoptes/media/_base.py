"""What every frame reader shares: frame dropping, looping, indexing and real-time pacing.

A concrete reader only has to open its source, run through it once (``_decode_pass``) and, when
asked to loop, go back to the start (``_rewind``). The loop in :meth:`BaseReader.frames` turns
those passes into one stream whose ``index`` and ``pts_s`` keep increasing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

from panoptes.core.errors import SourceError
from panoptes.core.negotiation import CPU_ONLY

if TYPE_CHECKING:
    import av.packet
    import av.video.stream
    import torch

    from panoptes.media.yuv import YuvImage

#: The pixels of a decoded frame: a numpy HWC uint8 BGR array from the CPU decoders (or their
#: planes, a ``YuvImage``, once ``allow_yuv`` was called), or an NV12 uint8 tensor
#: ``[H * 3 / 2, W]`` on the GPU from the hardware decoder (see ``_nvdec``).
Image: TypeAlias = "np.ndarray | YuvImage | torch.Tensor"

#: Makes the image of a decoded frame on demand, so that frames dropped by
#: ``drop_frame_interval`` never pay for the colour conversion (or the copy out of the hardware
#: decoder's buffers). ``None`` means the frame turned out to be unreadable (it is counted in
#: ``corrupt_frames`` and skipped).
ImageMaker = Callable[[], "Image | None"]

#: Receives each demuxed video packet, still compressed, in the source's thread before it is
#: decoded (smart recording keeps them), with the offset in seconds that puts the packet on the
#: reader's output timeline: the frame decoded from it has ``pts_s = packet.pts *
#: packet.time_base + offset_s``. It must be quick and must not change the packet.
PacketTap = Callable[["av.packet.Packet[av.video.stream.VideoStream]", float], None]


@dataclass
class DecodedFrame:
    """One frame out of a reader.

    Attributes:
        image: HWC uint8 BGR array of shape (height, width, 3); from the hardware decoder, an
            NV12 uint8 tensor of shape (height * 3 / 2, width) on its GPU, owned by the frame.
        pts_s: presentation time in seconds; keeps increasing across loops. ``None`` only when
            the source carries no timestamps and has no known frame rate.
        index: index of this output frame since the reader was opened, from 0, consecutive
            (frames dropped by ``drop_frame_interval`` take no index); keeps counting across loops.
        color_space: for an NV12 image, the colour matrix and range of its conversion to RGB
            (``bt709``, ``bt601-full``, ...: see ``panoptes.media.gpu_image``); None for BGR.
    """

    image: Image
    pts_s: float | None
    index: int
    color_space: str | None = None


class RealTimePacer:
    """Holds frames back so that their pts advance no faster than a monotonic clock.

    The first frame anchors the pts axis to the clock. A frame that is late by more than
    ``max_lag_s`` (the consumer stalled) or whose pts jumps backwards or more than ``max_lead_s``
    ahead (a timestamp discontinuity) re-anchors instead of causing a burst or a long sleep.

    Args:
        clock: monotonic clock in seconds; injectable for tests.
        max_lag_s: lateness in seconds past which the pacer stops trying to catch up.
        max_lead_s: largest wait in seconds the pacer accepts before treating it as a jump.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_lag_s: float = 1.0,
        max_lead_s: float = 5.0,
    ) -> None:
        self._clock = clock
        self._max_lag_s = max_lag_s
        self._max_lead_s = max_lead_s
        self._anchor: tuple[float, float] | None = None  # (clock_s, pts_s)

    def delay_s(self, pts_s: float) -> float:
        """Seconds to wait before presenting the frame with presentation time ``pts_s``."""
        now_s = self._clock()
        if self._anchor is None:
            self._anchor = (now_s, pts_s)
            return 0.0
        anchor_clock_s, anchor_pts_s = self._anchor
        delay_s = (anchor_clock_s + (pts_s - anchor_pts_s)) - now_s
        if delay_s < -self._max_lag_s or delay_s > self._max_lead_s:
            self._anchor = (now_s, pts_s)
            return 0.0
        return max(delay_s, 0.0)


class BaseReader:
    """Common state and the :meth:`frames` loop of all readers (see ``FrameReader``)."""

    def __init__(
        self,
        uri: str,
        name: str,
        *,
        loop: bool,
        real_time: bool,
        drop_frame_interval: int,
    ) -> None:
        self.uri = uri
        self.name = name
        self.size_wh: tuple[int, int] = (0, 0)
        self.fps: float | None = None
        self.frame_count: int | None = None
        self.is_live = False
        self.is_network = False
        self.corrupt_frames = 0
        self.memory: frozenset[str] = CPU_ONLY
        """The kinds of memory its frames may come in (see ``panoptes.core.negotiation``)."""
        self.tensor_device: str | None = None
        """The torch device of its tensor frames (``cuda:0``), for a reader that makes them."""
        self.warnings: list[str] = []
        """Things the pipeline should say on its bus (a fallback to CPU decoding), taken off
        as they are posted."""
        self._color_space: str | None = None
        self._loop = loop
        self._real_time = real_time
        self._drop_frame_interval = drop_frame_interval
        self._native_fps: float | None = None
        self._native_frame_count: int | None = None
        self._opened = False
        self._decoded = 0  # decoded frames since open, before dropping
        self._next_index = 0
        self._pts_offset_s = 0.0
        self._next_pass_start_s: float | None = None

    # -- what a concrete reader provides -------------------------------------------------------

    def _open(self) -> None:
        raise NotImplementedError

    def _decode_pass(self) -> Iterator[tuple[float | None, ImageMaker]]:
        """Yield ``(pts_s, make_image)`` for each decoded frame, from here to the source's end."""
        raise NotImplementedError

    def _rewind(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        pass

    def set_packet_tap(self, tap: PacketTap | None) -> bool:
        """Hand each compressed video packet to ``tap`` from now on (``None``: stop). False
        when this reader has no compressed packets (image folders, test patterns)."""
        return False

    def allow_yuv(self) -> None:
        """Let the frames decoded on the CPU come as :class:`~panoptes.media.yuv.YuvImage`, their
        planes not yet converted to BGR, from now on (pictures in other pixel formats still come
        as BGR). The pipeline allows it where every element takes them; see
        :mod:`panoptes.core.negotiation`. Nothing changes for a reader that cannot (this one)."""

    # -- lifecycle -----------------------------------------------------------------------------

    def open(self) -> None:
        """Open the source and read its properties; raises :class:`SourceError` on failure."""
        if self._opened:
            return
        self.corrupt_frames = 0
        self._decoded = self._next_index = 0
        self._pts_offset_s, self._next_pass_start_s = 0.0, None
        self._open()
        self._opened = True
        self.fps = self._native_fps
        looping_or_live = self._loop or self.is_live
        self.frame_count = None if looping_or_live else self._native_frame_count

    def close(self) -> None:
        """Release the source. Call it after :meth:`frames` has returned; closing twice is fine."""
        if self._opened:
            self._opened = False
            self._close()

    def __enter__(self) -> BaseReader:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, uri={self.uri!r})"

    # -- the frame loop ------------------------------------------------------------------------

    def frames(self, stop: threading.Event | None = None) -> Iterator[DecodedFrame]:
        """Yield the source's frames until its end (or forever when looping or live).

        Returns early, without error, as soon as ``stop`` is set. Opens the source first if
        :meth:`open` was not called. Raises :class:`SourceError` when reading fails.
        """
        self.open()
        pacer = None
        if self._real_time and not self.is_live:
            # A slow source (a slideshow at 0.1 fps) has long gaps that are not pts jumps.
            pacer = RealTimePacer(max_lead_s=max(5.0, 2.0 * self._frame_period_s()))
        while True:
            decoded_in_pass = 0
            last_pts_s: float | None = None
            period_s = self._frame_period_s()
            for raw_pts_s, make_image in self._decode_pass():
                if stop is not None and stop.is_set():
                    return
                decoded = self._decoded
                self._decoded += 1
                decoded_in_pass += 1
                pts_s = self._output_pts(raw_pts_s, first_in_pass=decoded_in_pass == 1)
                if pts_s is not None:
                    if not period_s and last_pts_s is not None and pts_s > last_pts_s:
                        period_s = pts_s - last_pts_s
                    last_pts_s = pts_s
                if decoded % self._drop_frame_interval:
                    continue
                image = make_image()
                if image is None:
                    self.corrupt_frames += 1
                    continue
                if pacer is not None and pts_s is not None:
                    delay_s = pacer.delay_s(pts_s)
                    if delay_s > 0.0:
                        if stop is None:
                            time.sleep(delay_s)
                        elif stop.wait(delay_s):
                            return
                yield DecodedFrame(
                    image=image,
                    pts_s=pts_s,
                    index=self._next_index,
                    color_space=self._color_space,
                )
                self._next_index += 1
            if not self._loop or self.is_live:
                return
            if decoded_in_pass == 0:
                raise SourceError("cannot loop: the source gave no frame", source=self.name)
            if last_pts_s is not None:
                self._next_pass_start_s = last_pts_s + period_s
            self._rewind()

    def _output_pts(self, raw_pts_s: float | None, *, first_in_pass: bool) -> float | None:
        if raw_pts_s is None:
            return None
        if first_in_pass and self._next_pass_start_s is not None:
            # A new loop pass: shift its timestamps so they carry on from the previous pass.
            self._pts_offset_s = self._next_pass_start_s - raw_pts_s
            self._next_pass_start_s = None
        return raw_pts_s + self._pts_offset_s

    def _frame_period_s(self) -> float:
        return 1.0 / self._native_fps if self._native_fps else 0.0
