"""After the parser: per-class thresholds, non-maximum suppression and top-k; then the limits on
where a kept box may be and how large (nvinfer's ``[class-attrs-*]`` detection filters)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from panoptes.models.parsers import Candidates

__all__ = ["BoxLimits", "boxes_within_limits", "filter_candidates"]


def filter_candidates(
    candidates: Candidates,
    *,
    threshold: float,
    class_thresholds: Mapping[int, float],
    nms_iou: float,
    topk: int,
    class_agnostic: bool = False,
) -> Candidates:
    """Keep the candidates that pass their threshold and survive NMS, best first, at most ``topk``.

    ``threshold`` applies to every class without an entry in ``class_thresholds`` (class id ->
    minimum confidence). NMS drops a box that overlaps a better one by more than ``nms_iou`` (IoU),
    within its class unless ``class_agnostic``; it is skipped when ``candidates.nms_done``.
    """
    minimum = np.full(len(candidates), threshold, np.float32)
    for class_id, class_threshold in class_thresholds.items():
        minimum[candidates.class_id == class_id] = class_threshold
    passed = np.flatnonzero(candidates.confidence >= minimum)
    if len(passed) == 0:
        return candidates.take(passed)
    if candidates.nms_done:
        order = np.argsort(-candidates.confidence[passed], kind="stable")[:topk]
        return candidates.take(passed[order])
    xyxy = candidates.xyxy[passed]
    # OpenCV takes (x, y, w, h) boxes and returns the kept indices sorted by falling score. Its
    # stubs ask for sequences; numpy arrays are what it reads fastest. Its top_k keeps the best
    # candidates *before* suppression, which would lose objects behind a crowd of overlapping
    # boxes: top-k is taken after it instead.
    xywh: Any = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    scores: Any = candidates.confidence[passed]
    if class_agnostic:
        kept = cv2.dnn.NMSBoxes(xywh, scores, 0.0, nms_iou)
    else:
        class_ids: Any = candidates.class_id[passed]
        kept = cv2.dnn.NMSBoxesBatched(xywh, scores, class_ids, 0.0, nms_iou)
    return candidates.take(passed[np.asarray(kept, dtype=np.intp).reshape(-1)][:topk])


@dataclass(frozen=True)
class BoxLimits:
    """Where a detected box may be and how large, in pixels of the image the model was given.

    nvinfer's detection filters (``detected-min-w``, ``detected-min-h``, ``detected-max-w``,
    ``detected-max-h``, ``roi-top-offset``, ``roi-bottom-offset``): a box narrower or lower than
    the minimum, wider or higher than a maximum (0: none), whose top edge is above
    ``top_margin`` or whose bottom edge is below ``height - bottom_margin`` is dropped.
    """

    min_width: float = 0
    min_height: float = 0
    max_width: float = 0
    max_height: float = 0
    top_margin: float = 0
    bottom_margin: float = 0

    @property
    def limits_nothing(self) -> bool:
        return self == BoxLimits()


def boxes_within_limits(
    xyxy: np.ndarray,
    class_id: np.ndarray,
    image_height: int,
    *,
    limits: BoxLimits,
    class_limits: Mapping[int, BoxLimits],
    excluded_classes: Sequence[int] = (),
) -> np.ndarray:
    """A bool mask [N] of the boxes ``xyxy`` [N, 4] (pixels of an image ``image_height`` high)
    that are within their class's limits (``class_limits``, else ``limits``) and not of an
    ``excluded_classes`` class."""
    keep: np.ndarray = np.ones(len(xyxy), bool)
    if excluded_classes:
        keep &= ~np.isin(class_id, excluded_classes)
    if limits.limits_nothing and not class_limits:
        return keep
    per_box = np.zeros((len(xyxy), 6), np.float32)
    per_box[:] = _limit_row(limits)
    for number, class_limit in class_limits.items():
        per_box[class_id == number] = _limit_row(class_limit)
    min_w, min_h, max_w, max_h, top, bottom = per_box.T
    width = xyxy[:, 2] - xyxy[:, 0]
    height = xyxy[:, 3] - xyxy[:, 1]
    keep &= (width >= min_w) & (height >= min_h)
    keep &= (max_w <= 0) | (width <= max_w)
    keep &= (max_h <= 0) | (height <= max_h)
    keep &= (xyxy[:, 1] >= top) & (xyxy[:, 3] <= image_height - bottom)
    return keep


def _limit_row(limits: BoxLimits) -> list[float]:
    return [
        limits.min_width,
        limits.min_height,
        limits.max_width,
        limits.max_height,
        limits.top_margin,
        limits.bottom_margin,
    ]
