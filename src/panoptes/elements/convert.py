"""``to-cpu``, ``to-cuda``: move frames between GPU and CPU memory (inserted by the pipeline).

As GStreamer's nvvideoconvert does between NVMM and system memory. The pipeline inserts them where
an element takes another kind of memory than the frames reaching it may be in (see
:mod:`panoptes.core.negotiation`); they are not configured by hand.

Both work a batch at a time (one transfer per group of frames of one size) and pass frames that
are already in the right memory untouched. They replace images on copies of the frames (sharing
the metadata), never on the frames themselves: the frames reaching a converter may be read by
another branch at the same time (the metadata sinks read the originals as the video branch
converts).
"""

from __future__ import annotations

from typing import Any, cast

from pydantic import Field

from panoptes.core.element import Element, ElementProperties
from panoptes.core.frame import Batch
from panoptes.core.negotiation import ANY_MEMORY, CPU, CPU_YUV, CUDA


class ToCpuProperties(ElementProperties):
    name: str | None = Field(None, description="Element name.")


class ToCpu(Element):
    """Device tensors (RGB ``[3, H, W]``, or NV12) and YUV planes (``YuvImage``) become numpy
    HWC uint8 BGR arrays."""

    kind = "to-cpu"
    Properties = ToCpuProperties
    memory = ANY_MEMORY
    output_memory = CPU

    def process(self, batch: Batch) -> Batch:
        if all(frame.memory == CPU for frame in batch.frames):
            return batch
        batch = batch.branch_copy()
        for frame in batch.frames:
            if frame.memory == CPU_YUV:
                frame.image = frame.image_bgr()
        frames = [frame for frame in batch.frames if frame.memory == CUDA]
        if not frames:
            return batch
        from panoptes.media.gpu_image import nv12_to_rgb, to_bgr_images

        images = [
            nv12_to_rgb(frame.tensor, frame.color_space or "bt601")
            if frame.tensor.ndim == 2  # NV12: only before the mux, when a probe looks early
            else frame.tensor
            for frame in frames
        ]
        for frame, image in zip(frames, to_bgr_images(images), strict=True):
            frame.image, frame.color_space = image, None
        return batch


class ToCudaProperties(ElementProperties):
    name: str | None = Field(None, description="Element name.")
    device: str = Field(
        "cuda:0",
        description="The torch device the images go to: the GPU of the pipeline's hardware "
        "decoders.",
    )


class ToCuda(Element):
    """Numpy HWC uint8 BGR arrays (and YUV planes) become uint8 RGB tensors ``[3, H, W]`` on
    ``device``."""

    kind = "to-cuda"
    Properties = ToCudaProperties
    memory = ANY_MEMORY
    output_memory = CUDA

    props: ToCudaProperties

    def process(self, batch: Batch) -> Batch:
        if all(frame.memory == CUDA for frame in batch.frames):
            return batch
        from panoptes.media.gpu_image import from_bgr_images

        batch = batch.branch_copy()
        frames = [frame for frame in batch.frames if frame.memory != CUDA]
        tensors = from_bgr_images([frame.image_bgr() for frame in frames], self.props.device)
        if tensors[0].is_cuda:
            import torch

            # Whole before another thread's stream reads them.
            torch.cuda.current_stream(tensors[0].device).synchronize()
        for frame, tensor in zip(frames, tensors, strict=True):
            # The field's static type names the numpy form CPU elements see; see Frame.
            frame.image = cast(Any, tensor)
        return batch
