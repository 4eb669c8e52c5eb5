"""Cutting object crops out of a frame for the models that run on objects (secondary models)."""

from __future__ import annotations

import numpy as np

__all__ = ["crop_boxes"]


def crop_boxes(image: np.ndarray, xyxy: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The pixels of ``image`` (HWC) inside each xyxy box [N, 4] in ``image`` pixels.

    Each box is widened to whole pixels (floor of the top-left corner, ceiling of the
    bottom-right), clipped to the image, and kept at least 1×1 pixel, so that even a box outside
    the image or of no area gives a crop. Returns the crops (views into ``image``, no copy) and
    their top-left corners, int64 [N, 2] (x, y) in ``image`` pixels: add it to a point in a crop
    to get the point in ``image``.
    """
    height, width = image.shape[:2]
    boxes = np.asarray(xyxy, np.float64).reshape(-1, 4)
    x1 = np.clip(np.floor(boxes[:, 0]), 0, width - 1).astype(np.int64)
    y1 = np.clip(np.floor(boxes[:, 1]), 0, height - 1).astype(np.int64)
    x2 = np.clip(np.ceil(boxes[:, 2]), x1 + 1, width).astype(np.int64)
    y2 = np.clip(np.ceil(boxes[:, 3]), y1 + 1, height).astype(np.int64)
    crops = [
        image[top:bottom, left:right]
        for left, top, right, bottom in zip(
            x1.tolist(), y1.tolist(), x2.tolist(), y2.tolist(), strict=True
        )
    ]
    return crops, np.stack([x1, y1], axis=1)
