"""``mux``: takes frames from every stream and forms batches, as nvstreammux does.

A batch is pushed when it holds ``batch_size`` frames, when every stream still playing has given
one frame (topped up with frames files already have queued), or when ``batched_push_timeout_ms``
has passed since its first frame, whichever comes first; a stream that ended or stalls never holds
the others back. Frames are scaled to the mux's
resolution in their source's thread, so scaling runs in parallel and off the inference thread.

Frames from the GPU's hardware decoder (NV12 tensors) are converted to RGB and scaled in the mux's
own thread instead, a batch at a time (:meth:`Mux.finish`), see there why.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from panoptes.core.element import ElementProperties
from panoptes.core.frame import Frame, image_size_wh
from panoptes.core.geometry import Letterbox
from panoptes.core.gpu_wait import set_gpu_wait
from panoptes.core.negotiation import CPU_ONLY, CPU_YUV, CUDA
from panoptes.core.streams import Stream
from panoptes.media.yuv import YuvImage

if TYPE_CHECKING:
    import torch


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
        self.memory: frozenset[str] = CPU_ONLY
        """The kinds of memory its batches leave in, as the pipeline negotiated them from the
        sources at build: device frames of a source added later to a pipeline without
        ``cuda`` are downloaded here."""
        self._cuda_streams: dict[str, torch.cuda.Stream] = {}

    @property
    def scales(self) -> bool:
        return bool(self.props.width and self.props.height)

    def prepare(self, frame: Frame) -> None:
        """Scale ``frame`` to the mux resolution (runs in the frame's source thread). A
        :class:`YuvImage` is resized in its planes and converted at the mux resolution; where
        the mux does not scale, it goes on as it is when the pipeline negotiated ``cpu-yuv``
        memory, else it is converted here."""
        image = frame.image
        if not self.scales:
            if isinstance(image, YuvImage) and CPU_YUV not in self.memory:
                frame.image = image.to_bgr()
            return
        if not isinstance(image, np.ndarray | YuvImage):
            return  # a device image is converted with its batch, in finish()
        size_wh = (self.props.width, self.props.height)
        image_wh = image_size_wh(image)
        if image_wh == size_wh:
            if isinstance(image, YuvImage):
                frame.image = image.to_bgr()
            return
        transform = Letterbox.fit(image_wh, size_wh, keep_ratio=self.props.keep_aspect)
        frame.image = transform.warp(image, size_wh, pad_value=self.props.pad_value)
        frame.transform = frame.transform.then(transform)

    def finish(self, frames: list[Frame]) -> None:
        """Convert the batch's frames from the hardware decoder, NV12 tensors, to RGB
        ``[3, H, W]`` at the mux's resolution (letterboxed as the CPU frames are), on their
        device, in the mux's thread; CPU frames are left as they are.

        Batched here rather than per frame in the source threads as the CPU path scales: on the
        GPU the work per frame is tiny (a 1080p frame shrinks in microseconds) and the cost is in
        launching the kernels, a dozen per conversion, each holding the GIL for a moment. Per
        frame, 64 streams at 30 fps would launch some 25,000 kernels a second from 64 threads
        contending with the inference thread for the GIL; per batch, a dozen per group of frames
        of one size. The frames of a group are converted together into one ``[N, 3, H, W]``
        tensor per batch (when the mux scales, whatever their sizes), each frame's image a view
        of it: what a detector takes whole. The source threads only copy each picture out of
        the decoder's buffers, which the decoder reuses.

        The conversion runs on the mux's own CUDA stream, synchronised before the batch goes on,
        so that its frames are whole for whichever stream reads them next.
        """
        by_device: dict[str, list[Frame]] = {}
        for frame in frames:
            if frame.memory == CUDA:
                by_device.setdefault(str(frame.tensor.device), []).append(frame)
        if not by_device:
            return
        from panoptes.media import gpu_image

        for device_frames in by_device.values():
            cuda_stream = self._cuda_stream(device_frames[0].tensor.device)
            with _stream_context(cuda_stream):
                rgb = self._convert(device_frames)
                # A source added after the pipeline was negotiated for the CPU alone: download.
                converted: list[Any] = rgb if CUDA in self.memory else gpu_image.to_bgr_images(rgb)
            if cuda_stream is not None:
                cuda_stream.synchronize()
            for frame, image in zip(device_frames, converted, strict=True):
                frame.image, frame.color_space = image, None

    def _convert(self, frames: list[Frame]) -> list[torch.Tensor]:
        """RGB images [3, H, W] of the NV12 images of ``frames`` (on one device): views of one
        tensor when the mux scales, in the frames' order, else of one tensor per source size.
        The frames' transforms follow; their images are left to the caller."""
        import torch

        from panoptes.media import gpu_image

        props = self.props
        size_wh = (props.width, props.height)
        images = [frame.tensor for frame in frames]
        groups: dict[tuple[tuple[int, int], str], list[int]] = {}
        for index, (frame, image) in enumerate(zip(frames, images, strict=True)):
            key = (image_size_wh(image), frame.color_space or "bt601")
            groups.setdefault(key, []).append(index)
        result: list[torch.Tensor] = list(images)
        batch: torch.Tensor | None = None
        if self.scales:
            shape = (len(frames), 3, size_wh[1], size_wh[0])
            batch = torch.empty(shape, dtype=torch.uint8, device=images[0].device)
        for (_, color_space), indices in groups.items():
            nv12 = [images[i] for i in indices]
            if batch is None:
                stacked = gpu_image.stack_images(nv12)
                canvas, transform = gpu_image.nv12_to_rgb(stacked, color_space), Letterbox()
                rows = list(range(len(indices)))
            else:
                consecutive = indices == list(range(indices[0], indices[0] + len(indices)))
                # The frames as they are: where they shrink enough, only the rows their
                # letterbox needs are read from each, and they are never stacked.
                canvas, transform = gpu_image.letterbox_nv12(
                    nv12,
                    size_wh,
                    keep_aspect=props.keep_aspect,
                    pad_value=props.pad_value,
                    color_space=color_space,
                    # Straight into the batch's rows when they follow each other.
                    out=batch[indices[0] : indices[0] + len(indices)] if consecutive else None,
                )
                if not consecutive:
                    batch.index_copy_(0, torch.tensor(indices, device=batch.device), canvas)
                canvas, rows = batch, indices
            for row, index in zip(rows, indices, strict=True):
                result[index] = canvas[row]
                frames[index].transform = frames[index].transform.then(transform)
        return result

    def _cuda_stream(self, device: torch.device) -> torch.cuda.Stream | None:
        """The mux's CUDA stream on ``device`` (None on torch's CPU device, in tests)."""
        if device.type != "cuda":
            return None
        key = str(device)
        if key not in self._cuda_streams:
            import torch

            set_gpu_wait()
            self._cuda_streams[key] = torch.cuda.Stream(device=device)  # type: ignore[no-untyped-call]
        return self._cuda_streams[key]

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


def _stream_context(
    cuda_stream: torch.cuda.Stream | None,
) -> contextlib.AbstractContextManager[object]:
    """``torch.cuda.stream(cuda_stream)``, or nothing for None."""
    if cuda_stream is None:
        return contextlib.nullcontext()
    import torch

    return torch.cuda.stream(cuda_stream)
