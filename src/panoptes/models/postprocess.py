"""After the parser: per-class thresholds, non-maximum suppression and top-k."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from panoptes.models.parsers import Candidates

__all__ = ["filter_candidates"]


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
