"""Memory negotiation: where frames' pixels live, and the conversions a link between two elements
needs, decided when the pipeline is built, as GStreamer negotiates caps (``memory:NVMM`` against
system memory) when elements are linked.

Pixels live in one of three kinds of memory:

- ``cpu``: a numpy HWC uint8 BGR array, what OpenCV draws on;
- ``cpu-yuv``: a CPU decoder's picture still in its YUV planes
  (:class:`panoptes.media.yuv.YuvImage`), converted only where pixels are read. The pipeline
  lets the CPU decoders give these when every element takes them (detectors letterbox the planes
  directly; elements that read boxes only take any kind), and when the mux scales (it converts
  at its resolution); otherwise they give BGR arrays;
- ``cuda``: a torch uint8 tensor on the pipeline's tensor device, what the hardware decoder
  (NVDEC) gives: NV12 ``[H * 3 / 2, W]`` from the source to the mux, RGB ``[3, H, W]`` after it.
  The device is ``cuda:N`` on a GPU; tests run the same code with torch's CPU device standing in.

Each element says which kinds it takes (:attr:`Element.memory <panoptes.core.element.Element>`)
and, when it makes new images, which kind it puts out. Where the frames arriving at an element
may be in a kind it does not take, the pipeline inserts a converter (``to-cpu``, ``to-cuda``)
before it; elements that never read pixels (metadata sinks, the tracker, analytics) take any kind,
so that frames can stay on the GPU all the way to them.

Nothing here imports torch: a pipeline without a GPU source never pays for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from panoptes.core.errors import LinkError

CPU = "cpu"
"""Pixels in a numpy HWC uint8 BGR array."""
CPU_YUV = "cpu-yuv"
"""Pixels in a CPU decoder's YUV planes, not yet converted (a ``YuvImage``)."""
CUDA = "cuda"
"""Pixels in a torch uint8 tensor on the pipeline's tensor device (RGB ``[3, H, W]`` after the
mux; NVDEC's NV12 ``[H * 3 / 2, W]`` before it)."""

CPU_ONLY: frozenset[str] = frozenset({CPU})
CUDA_ONLY: frozenset[str] = frozenset({CUDA})
BGR_OR_YUV: frozenset[str] = frozenset({CPU, CPU_YUV})
"""What an element that reads pixels on the host through ``YuvImage`` as well takes."""
BGR_OR_CUDA: frozenset[str] = frozenset({CPU, CUDA})
"""What an element that reads pixels as BGR arrays or as device tensors takes."""
ANY_MEMORY: frozenset[str] = frozenset({CPU, CPU_YUV, CUDA})
"""What an element takes when it reads no pixels (or reads them in every kind)."""

CONVERTERS: dict[str, str] = {CPU: "to-cpu", CUDA: "to-cuda"}
"""The element kind that moves frames into each kind of memory."""

T = TypeVar("T")


def conversion_for(flow: frozenset[str], accepted: frozenset[str]) -> str | None:
    """The memory kind frames must be moved into before an element that takes ``accepted``, when
    the frames reaching it may be in any kind of ``flow``; None when they can go as they are.

    A CPU element gets ``cpu`` (the download happens only for frames on the device: those already
    on the CPU pass untouched). Raises :class:`LinkError` for an element that takes nothing.
    """
    if not accepted:
        raise LinkError("an element that takes no kind of memory cannot be linked")
    if flow <= accepted:
        return None
    return CPU if CPU in accepted else CUDA


def memory_after(flow: frozenset[str], produces: str | None) -> frozenset[str]:
    """The kinds of memory frames may be in after an element that ``produces`` that kind (None:
    passes frames on in the memory they came in)."""
    return flow if produces is None else frozenset({produces})


@dataclass(frozen=True)
class Conversion:
    """A converter the pipeline inserted: it moves frames into ``memory`` before ``consumers``."""

    name: str
    """The converter element's name (``to-cpu-tiler``); probes attach to it by this name."""
    memory: str
    consumers: tuple[str, ...]
    """Names of the elements it feeds: where frames leave (or join) the GPU."""

    def describe(self) -> str:
        where = ", ".join(self.consumers)
        if self.memory == CPU:
            return f"frames leave the GPU (downloaded to cpu memory) before {where}"
        return f"frames are uploaded to the GPU before {where}"


def group_by_conversion(
    flow: frozenset[str], consumers: Sequence[tuple[T, frozenset[str]]]
) -> dict[str | None, list[T]]:
    """The consumers of one producer, each given with the memory it takes, grouped by the memory
    each needs frames moved into (None: none), in order: consumers needing the same conversion
    share one converter, so that a frame is downloaded once however many CPU branches read it."""
    groups: dict[str | None, list[T]] = {}
    for consumer, accepted in consumers:
        groups.setdefault(conversion_for(flow, accepted), []).append(consumer)
    return groups
