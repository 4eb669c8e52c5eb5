"""Frames and batches: what flows from the sources, through the mux, to the sinks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from panoptes.core.geometry import Letterbox
from panoptes.core.meta import FrameMeta, Objects, RecordingRequest
from panoptes.core.negotiation import CPU, CPU_YUV, CUDA
from panoptes.media.yuv import YuvImage

if TYPE_CHECKING:
    import torch

    from panoptes.tracking import FinishedTrack

TILED_SOURCE_ID = -1
"""``source_id`` of the frames a tiler makes from several streams."""


def image_size_wh(image: object) -> tuple[int, int]:
    """(width, height) of the picture in ``image``, in any of a frame's forms: numpy HWC, a
    :class:`YuvImage`, a tensor RGB ``[3, H, W]``, or an NV12 tensor ``[H * 3 / 2, W]``."""
    if isinstance(image, YuvImage):
        return image.size_wh
    shape = tuple(getattr(image, "shape", ()))
    if isinstance(image, np.ndarray):
        return int(shape[1]), int(shape[0])
    if len(shape) == 2:
        return int(shape[1]), int(shape[0]) * 2 // 3
    return int(shape[2]), int(shape[1])


@dataclass
class Frame:
    """One decoded picture of one stream.

    ``image`` holds the pixels as they are now (after the mux, at the mux's resolution), in one
    of three kinds of memory (see :mod:`panoptes.core.negotiation`):

    - ``cpu``: a numpy HWC uint8 BGR array, the only form elements that take ``cpu`` memory
      (the default, and what the static type says) ever see: the pipeline inserts a conversion
      before them;
    - ``cpu-yuv``: a :class:`~panoptes.media.yuv.YuvImage`, a CPU decoder's picture in its
      planes, where every element of the pipeline reads boxes only or letterboxes the planes
      itself (a detector): nothing pays for a full-size BGR conversion nobody reads;
    - ``cuda``: a torch uint8 tensor on the device of the hardware decoder that made it, RGB
      ``[3, H, W]`` after the mux (often a view into one ``[N, 3, H, W]`` tensor holding the
      whole batch), NV12 ``[H * 3 / 2, W]`` between the source and the mux. Elements that take
      ``cuda`` memory read it through :attr:`tensor`; :meth:`image_bgr` gives numpy BGR from
      any kind. A tensor is whole when its frame arrives (the mux synchronises its CUDA
      stream); an element reading it on a CUDA stream of its own finishes reading (a copy of
      results to the host does) or calls ``record_stream`` before it lets the frame go, since
      freed device memory is handed out again at once.

    ``size_wh`` is the original frame's size and ``transform`` maps original pixels to ``image``
    pixels, so metadata always speaks in original-frame coordinates whatever resolution the
    pixels travel at.
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
    color_space: str | None = None
    """For an NV12 image: the colour matrix and range it converts to RGB with (``bt709``,
    ``bt601-full``...; see :mod:`panoptes.media.gpu_image`); None for RGB and BGR images."""

    @property
    def objects(self) -> Objects:
        """Shortcut for ``meta.objects``."""
        return self.meta.objects

    @property
    def memory(self) -> str:
        """``"cpu"`` when ``image`` is a numpy array, ``"cpu-yuv"`` when it is a
        :class:`YuvImage`, ``"cuda"`` when it is a device tensor."""
        if isinstance(self.image, np.ndarray):
            return CPU
        return CPU_YUV if isinstance(self.image, YuvImage) else CUDA

    @property
    def tensor(self) -> torch.Tensor:
        """``image`` as the device tensor it is (uint8 RGB ``[3, H, W]`` after the mux).
        Raises TypeError for a numpy image: test :attr:`memory` first."""
        if isinstance(self.image, np.ndarray | YuvImage):
            raise TypeError(f"frame {self.frame_num} of {self.source_name!r} is in cpu memory")
        tensor: torch.Tensor = self.image
        return tensor

    def image_bgr(self) -> np.ndarray:
        """The pixels as a numpy HWC uint8 BGR array whatever memory they are in: ``image``
        itself on the CPU, a downloaded copy of a device tensor (a slow path, for elements that
        read pixels now and then, such as probes), or a new conversion of a :class:`YuvImage`."""
        if isinstance(self.image, np.ndarray):
            return self.image
        if isinstance(self.image, YuvImage):
            return self.image.to_bgr()
        from panoptes.media.gpu_image import nv12_to_rgb, to_bgr_images

        image = self.tensor
        if image.ndim == 2:  # NV12, before the mux
            image = nv12_to_rgb(image, self.color_space or "bt601")
        return to_bgr_images([image])[0]

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
