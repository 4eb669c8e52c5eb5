"""The GPU path of inference, in PyTorch: a batch goes in as a tensor, final boxes come out.

- :mod:`~panoptes.models.gpu.convert`: ONNX to a torch module that runs a fixed batch on one
  device with no host work inside ``forward`` (CUDA-graph ready);
- :mod:`~panoptes.models.gpu.cache`: the converted (and compiled) model kept on disk;
- :mod:`~panoptes.models.gpu.preprocess`: letterbox, channel order and normalisation in torch;
- :mod:`~panoptes.models.gpu.decode` and :mod:`~panoptes.models.gpu.nms`: the YOLOX, YOLOv5 and
  Ultralytics heads decoded, thresholded and suppressed on the device;
- :mod:`~panoptes.models.gpu.pipeline`: the four stages together, for the detector;
- :mod:`~panoptes.models.gpu.compare`: the rule two inference paths are compared by.

Everything here runs on the CPU too (that is how it is tested without a GPU). The backend that
uses it is :class:`panoptes.models.backends.pytorch.TorchBackend` (``backend: torch``).
"""

from __future__ import annotations

from panoptes.models.gpu.cache import ArtefactCache, ArtefactKey, CacheWarning, cache_root
from panoptes.models.gpu.compare import MatchReport, match_detections, match_many
from panoptes.models.gpu.convert import convert_for_batch, free_batch_axis, place_on_device
from panoptes.models.gpu.decode import (
    DEVICE_DECODERS,
    DenseCandidates,
    DeviceDecoder,
    decode_ultralytics,
    decode_yolov5,
    decode_yolox,
)
from panoptes.models.gpu.nms import batched_nms, box_iou, nms_torch, select_detections
from panoptes.models.gpu.pipeline import DevicePipeline
from panoptes.models.gpu.preprocess import ImageLayout, TorchPreprocessor, resize_like_opencv

__all__ = [
    "DEVICE_DECODERS",
    "ArtefactCache",
    "ArtefactKey",
    "CacheWarning",
    "DenseCandidates",
    "DeviceDecoder",
    "DevicePipeline",
    "ImageLayout",
    "MatchReport",
    "TorchPreprocessor",
    "batched_nms",
    "box_iou",
    "cache_root",
    "convert_for_batch",
    "decode_ultralytics",
    "decode_yolov5",
    "decode_yolox",
    "free_batch_axis",
    "match_detections",
    "match_many",
    "nms_torch",
    "place_on_device",
    "resize_like_opencv",
    "select_detections",
]
