"""Detection heads decoded on the model's device, the whole batch at once.

The torch twins of the numpy parsers in :mod:`panoptes.models.parsers`, for the heads the GPU path
runs most: YOLOX, YOLOv5/v7 and Ultralytics (YOLOv8/YOLO11, pose included). They decode every row
of every image into one :class:`DenseCandidates`; thresholds, NMS and top-k follow in
:func:`panoptes.models.gpu.nms.select_detections`, still on the device. Other heads are decoded
by their numpy parser after the outputs are copied to the host.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from panoptes.core.errors import ModelError
from panoptes.models.parsers import PYRAMID_STRIDES, ParserContext, _grid, _ultralytics_layout

__all__ = [
    "DEVICE_DECODERS",
    "DenseCandidates",
    "DeviceDecoder",
    "decode_ultralytics",
    "decode_yolov5",
    "decode_yolox",
]


@dataclass
class DenseCandidates:
    """Every decoded row of a batch, on the device, in network-input pixels.

    ``xyxy`` float32 [B, N, 4]; ``confidence`` float32 [B, N]; ``class_id`` int64 [B, N] below
    ``num_classes``; ``keypoints`` float32 [B, N, K, 3] (x, y, visibility) or None.
    """

    xyxy: torch.Tensor
    confidence: torch.Tensor
    class_id: torch.Tensor
    num_classes: int
    keypoints: torch.Tensor | None = None


#: A head's decoder: the model's outputs by name (batch first, on the device) and the parser
#: context, to the dense candidates.
DeviceDecoder = Callable[[Mapping[str, torch.Tensor], ParserContext], DenseCandidates]


def _first_output(outputs: Mapping[str, torch.Tensor], ctx: ParserContext) -> torch.Tensor:
    name = ctx.output_names[0] if ctx.output_names else next(iter(outputs))
    # fp16 models: decode in float32, as exp() of a log-size overflows float16 early.
    return outputs[name].float()


def _expect_ndim(output: torch.Tensor, ndim: int, parser: str, layout: str) -> None:
    if output.ndim != ndim:
        raise ModelError(
            f"{parser} parser expects an output {layout}, got shape {list(output.shape)}"
        )


@functools.lru_cache(maxsize=16)
def _grid_on(
    input_size_wh: tuple[int, int], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The numpy parsers' grid (cell xy [N, 2], stride [N, 1]) as tensors on ``device``."""
    cell_xy, stride_of_cell = _grid(input_size_wh, PYRAMID_STRIDES)
    return (
        torch.tensor(cell_xy, device=device),
        torch.tensor(stride_of_cell, device=device).unsqueeze(1),
    )


def _cxcywh_to_xyxy(cxcy: torch.Tensor, wh: torch.Tensor) -> torch.Tensor:
    half = wh * 0.5
    return torch.cat([cxcy - half, cxcy + half], dim=-1)


def decode_yolox(outputs: Mapping[str, torch.Tensor], ctx: ParserContext) -> DenseCandidates:
    """YOLOX raw grid head [B, N, 5 + C], as :func:`~panoptes.models.parsers.parse_yolox`."""
    output = _first_output(outputs, ctx)
    _expect_ndim(output, 3, "yolox", "[B, N, 5 + classes]")
    cell_xy, stride = _grid_on(ctx.input_size_wh, output.device)
    if output.shape[1] != len(cell_xy):
        width, height = ctx.input_size_wh
        raise ModelError(
            f"yolox parser: a {width}×{height} input has {len(cell_xy)} cells at strides 8, 16, 32 "
            f"but the output has {output.shape[1]} rows (shape {list(output.shape)})"
        )
    best, class_id = output[..., 5:].max(dim=2)
    cxcy = (output[..., 0:2] + cell_xy) * stride
    wh = torch.exp(output[..., 2:4]) * stride
    return DenseCandidates(
        _cxcywh_to_xyxy(cxcy, wh), best * output[..., 4], class_id, output.shape[2] - 5
    )


def decode_yolov5(outputs: Mapping[str, torch.Tensor], ctx: ParserContext) -> DenseCandidates:
    """YOLOv5 / YOLOv7 decoded rows [B, N, 5 + C], as
    :func:`~panoptes.models.parsers.parse_yolov5`."""
    output = _first_output(outputs, ctx)
    _expect_ndim(output, 3, "yolov5", "[B, N, 5 + classes]")
    best, class_id = output[..., 5:].max(dim=2)
    return DenseCandidates(
        _cxcywh_to_xyxy(output[..., 0:2], output[..., 2:4]),
        best * output[..., 4],
        class_id,
        output.shape[2] - 5,
    )


def decode_ultralytics(outputs: Mapping[str, torch.Tensor], ctx: ParserContext) -> DenseCandidates:
    """Ultralytics [B, 4 + C (+ K·D), N] columns, pose keypoints included, as
    :func:`~panoptes.models.parsers.parse_ultralytics`."""
    output = _first_output(outputs, ctx)
    _expect_ndim(output, 3, "ultralytics", "[B, 4 + classes, N]")
    num_classes, keypoint_shape = _ultralytics_layout(
        output.shape[1], ctx.metadata, ctx.num_classes
    )
    rows = output.transpose(1, 2)  # [B, N, channels]
    best, class_id = rows[..., 4 : 4 + num_classes].max(dim=2)
    keypoints = None
    if keypoint_shape is not None:
        count, dims = keypoint_shape
        start = 4 + num_classes
        keypoints = rows[..., start : start + count * dims].reshape(*rows.shape[:2], count, dims)
        if dims == 2:
            keypoints = torch.cat([keypoints, torch.ones_like(keypoints[..., :1])], dim=3)
    return DenseCandidates(
        _cxcywh_to_xyxy(rows[..., 0:2], rows[..., 2:4]), best, class_id, num_classes, keypoints
    )


#: Parsers (by built-in name) whose head is decoded on the device.
DEVICE_DECODERS: dict[str, DeviceDecoder] = {
    "yolox": decode_yolox,
    "yolov5": decode_yolov5,
    "ultralytics": decode_ultralytics,
}
