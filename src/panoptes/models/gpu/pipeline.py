"""A detector's four stages on the model's device: frames in, final boxes out.

Pre-processing (:class:`TorchPreprocessor`), the model (the backend's ``run_device``), the head's
decoder and the selection of the kept boxes all run where the model runs; the host receives the
kept boxes only. A head without a device decoder is decoded by its numpy parser on the host,
after its outputs are copied there, which the pipeline says once, when it is built.

With the backend's CUDA graph, decoding and selection (:class:`FixedSelection`) are captured in
a second graph that reads the first one's outputs: a batch is then two replays and one copy to
the host. Each PyTorch call releases the interpreter lock and takes it back, and in a busy
process the inference thread waits for it behind the other threads every time; the graph makes
some seventy such calls one.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from panoptes.core.errors import ModelError
from panoptes.core.geometry import Letterbox
from panoptes.models.detector import ModelWarning
from panoptes.models.gpu.decode import DEVICE_DECODERS, DeviceDecoder
from panoptes.models.gpu.nms import FixedSelection, select_detections
from panoptes.models.gpu.preprocess import ImageLayout, Images, TorchPreprocessor
from panoptes.models.parsers import Candidates, Parser, ParserContext
from panoptes.models.postprocess import filter_candidates
from panoptes.models.preprocess import PreprocessSpec

if TYPE_CHECKING:
    from panoptes.models.backends.pytorch import TorchBackend

__all__ = ["DevicePipeline", "host_outputs"]


def host_outputs(outputs: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Outputs copied to the host as numpy, float16 widened to float32."""
    return {
        name: (value.float() if value.dtype in (torch.float16, torch.bfloat16) else value)
        .cpu()
        .numpy()
        for name, value in outputs.items()
    }


class DevicePipeline:
    """Runs ``backend``'s model on batches of frames, all stages on its device.

    ``parser_name`` picks the device decoder (:data:`DEVICE_DECODERS`); ``parser`` is the numpy
    parser used on the host when there is none. ``filter_options`` are
    :func:`select_detections`' keywords. Not thread-safe (the pre-processing buffers and the
    backend's CUDA graph are reused from call to call).
    """

    def __init__(
        self,
        backend: TorchBackend,
        spec: PreprocessSpec,
        parser_name: str,
        parser: Parser,
        context: ParserContext,
        filter_options: Mapping[str, Any],
    ) -> None:
        self.backend = backend
        self.preprocessor = TorchPreprocessor(spec, backend.device, backend.input_dtype)
        self.decoder: DeviceDecoder | None = DEVICE_DECODERS.get(parser_name)
        self.parser_name = parser_name
        self._parser = parser
        self._context = context
        self._filter_options = dict(filter_options)
        self._selection = FixedSelection(**self._filter_options)
        # The decoder and the selection captured in a CUDA graph, and the result it writes.
        self._head: tuple[torch.cuda.CUDAGraph, torch.Tensor] | None = None
        self._head_capturable = self.decoder is not None and backend.graph_outputs() is not None
        # A stream of its own: its work does not queue on CUDA's default stream with the work of
        # libraries that use that one.
        self._stream: torch.cuda.Stream | None = None
        if backend.device.type == "cuda":
            self._stream = torch.cuda.Stream(backend.device)  # type: ignore[no-untyped-call]
        if self.decoder is None and parser_name != "none":
            warnings.warn(
                f"model {backend.path}: parser {parser_name} has no decoder on the device: its "
                f"outputs are copied to the host and decoded there (decoded on "
                f"{backend.device.type}: {', '.join(sorted(DEVICE_DECODERS))})",
                ModelWarning,
                stacklevel=4,
            )
        if self._head_capturable:
            self._capture_head()

    def __call__(
        self, images: Images, *, layout: ImageLayout = "hwc-bgr", keep_tensors: bool = False
    ) -> tuple[list[Candidates], list[Letterbox], dict[str, np.ndarray] | None]:
        """Detect in at most ``backend.batch_size`` frames (see :class:`TorchPreprocessor` for
        ``images`` and ``layout``).

        Returns per image the kept candidates (network pixels, best first) and the letterbox
        from its pixels to the network's, and the raw outputs on the host (batch first) when
        ``keep_tensors``.
        """
        if self._stream is None:
            return self._detect(images, layout, keep_tensors)
        # After whatever the caller's stream was doing to the images.
        self._stream.wait_stream(torch.cuda.current_stream(self.backend.device))
        with torch.cuda.stream(self._stream):
            return self._detect(images, layout, keep_tensors)

    def _detect(
        self, images: Images, layout: ImageLayout, keep_tensors: bool
    ) -> tuple[list[Candidates], list[Letterbox], dict[str, np.ndarray] | None]:
        # Straight into the model's input where it has one of its own (a CUDA graph's).
        target = self.backend.input_buffer(len(images))
        batch, letterboxes = self.preprocessor(images, layout=layout, out=target)
        outputs = self.backend.run_device(batch)
        on_host = host_outputs(outputs) if keep_tensors or self.decoder is None else None
        if self.decoder is not None:
            kept = self._select(outputs, len(letterboxes))
        else:
            assert on_host is not None
            candidates = self._parser(on_host, self._context)
            if len(candidates) < len(letterboxes):
                raise ModelError(
                    f"parser {self.parser_name} returned {len(candidates)} results for a batch "
                    f"of {len(letterboxes)} images"
                )
            kept = [
                filter_candidates(candidates[index], **self._filter_options)
                for index in range(len(letterboxes))
            ]
        return kept, letterboxes, on_host if keep_tensors else None

    def close(self) -> None:
        """Drop the head's CUDA graph and buffers (the backend closes on its own)."""
        self._head_capturable = False
        self._head = None

    def _select(self, outputs: Mapping[str, torch.Tensor], count: int) -> list[Candidates]:
        """The kept candidates of the ``count`` images whose ``outputs`` the backend just gave."""
        assert self.decoder is not None
        if self._head_capturable and self._head is None:
            self._capture_head()
        dense = None
        if self._head is not None:
            graph, packed = self._head
            graph.replay()
        else:
            dense = self.decoder(outputs, self._context)
            packed = self._selection(dense)
        kept = self._selection.unpack(packed.cpu().numpy(), count)
        if kept is None:
            # More candidates, or longer chains of suppression, than the fixed shapes hold (they
            # have grown to fit this batch, and are captured again on the next one).
            self._head = None
            if dense is None:
                dense = self.decoder(outputs, self._context)
            kept = select_detections(dense, **self._filter_options)
        return kept

    def _capture_head(self) -> None:
        """Capture the decoder and the selection, over the backend's graph outputs, in a CUDA
        graph; on failure, warn and run them call by call."""
        assert self.decoder is not None
        outputs = self.backend.graph_outputs()
        assert outputs is not None
        device = self.backend.device
        try:
            side = torch.cuda.Stream(device)  # type: ignore[no-untyped-call]
            side.wait_stream(torch.cuda.current_stream(device))
            # Warm-up outside the graph: the decoder's grid and the thresholds are made here.
            with torch.cuda.stream(side):
                self._selection(self.decoder(outputs, self._context))
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # thread_local: other threads (decoders, the mux) keep using the GPU meanwhile.
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                result = self._selection(self.decoder(outputs, self._context))
        except Exception as error:
            self._head_capturable = False
            warnings.warn(
                f"model {self.backend.path}: decoding and NMS could not be captured in a CUDA "
                f"graph ({type(error).__name__}: {error}); they run call by call",
                ModelWarning,
                stacklevel=4,
            )
            return
        self._head = graph, result
