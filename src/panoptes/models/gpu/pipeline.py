"""A detector's four stages on the model's device: frames in, final boxes out.

Pre-processing (:class:`TorchPreprocessor`), the model (the backend's ``run_device``), the head's
decoder and :func:`select_detections` all run where the model runs; the host receives the kept
boxes only. A head without a device decoder is decoded by its numpy parser on the host, after
its outputs are copied there, which the pipeline says once, when it is built.
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
from panoptes.models.gpu.nms import select_detections
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
        if self.decoder is None and parser_name != "none":
            warnings.warn(
                f"model {backend.path}: parser {parser_name} has no decoder on the device: its "
                f"outputs are copied to the host and decoded there (decoded on "
                f"{backend.device.type}: {', '.join(sorted(DEVICE_DECODERS))})",
                ModelWarning,
                stacklevel=4,
            )

    def __call__(
        self, images: Images, *, layout: ImageLayout = "hwc-bgr", keep_tensors: bool = False
    ) -> tuple[list[Candidates], list[Letterbox], dict[str, np.ndarray] | None]:
        """Detect in at most ``backend.batch_size`` frames (see :class:`TorchPreprocessor` for
        ``images`` and ``layout``).

        Returns per image the kept candidates (network pixels, best first) and the letterbox
        from its pixels to the network's, and the raw outputs on the host (batch first) when
        ``keep_tensors``.
        """
        # Straight into the model's input where it has one of its own (a CUDA graph's).
        target = self.backend.input_buffer(len(images))
        batch, letterboxes = self.preprocessor(images, layout=layout, out=target)
        outputs = self.backend.run_device(batch)
        on_host = host_outputs(outputs) if keep_tensors or self.decoder is None else None
        if self.decoder is not None:
            kept = select_detections(self.decoder(outputs, self._context), **self._filter_options)
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
