"""Coordinate mappings between an original frame and a resized (letterboxed) copy of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

PadPosition = Literal["top-left", "center"]


@dataclass(frozen=True)
class Letterbox:
    """Maps source pixels to destination pixels: ``dst = src * scale + pad`` per axis.

    ``scale_xy`` and ``pad_xy`` are (x, y) pairs; a stretch has unequal scales and zero pad.
    """

    scale_xy: tuple[float, float] = (1.0, 1.0)
    pad_xy: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def fit(
        cls,
        src_wh: tuple[int, int],
        dst_wh: tuple[int, int],
        *,
        keep_ratio: bool = True,
        pad_position: PadPosition = "center",
    ) -> Letterbox:
        """The transform that resizes ``src_wh`` into ``dst_wh``, padding when ``keep_ratio``."""
        sx, sy = dst_wh[0] / src_wh[0], dst_wh[1] / src_wh[1]
        if not keep_ratio:
            return cls((sx, sy), (0.0, 0.0))
        s = min(sx, sy)
        if pad_position == "top-left":
            return cls((s, s), (0.0, 0.0))
        # Whole pixels, so that the padding the image gets is the padding the boxes assume.
        new_w, new_h = round(src_wh[0] * s), round(src_wh[1] * s)
        return cls((s, s), (float((dst_wh[0] - new_w) // 2), float((dst_wh[1] - new_h) // 2)))

    def then(self, other: Letterbox) -> Letterbox:
        """This mapping followed by ``other``."""
        (sx, sy), (px, py) = self.scale_xy, self.pad_xy
        (ox, oy), (qx, qy) = other.scale_xy, other.pad_xy
        return Letterbox((sx * ox, sy * oy), (px * ox + qx, py * oy + qy))

    def to_source(self, xyxy: np.ndarray) -> np.ndarray:
        """Destination xyxy boxes [N, 4] back to source pixels (float32)."""
        out = np.asarray(xyxy, dtype=np.float32).copy()
        out[..., 0::2] = (out[..., 0::2] - self.pad_xy[0]) / self.scale_xy[0]
        out[..., 1::2] = (out[..., 1::2] - self.pad_xy[1]) / self.scale_xy[1]
        return out

    def points_to_source(self, xy: np.ndarray) -> np.ndarray:
        """Destination points [..., 2] (x, y) back to source pixels (float32)."""
        out = np.asarray(xy, dtype=np.float32).copy()
        out[..., 0] = (out[..., 0] - self.pad_xy[0]) / self.scale_xy[0]
        out[..., 1] = (out[..., 1] - self.pad_xy[1]) / self.scale_xy[1]
        return out

    def points_to_destination(self, xy: np.ndarray) -> np.ndarray:
        """Source points [..., 2] (x, y) to destination pixels (float32)."""
        out = np.asarray(xy, dtype=np.float32).copy()
        out[..., 0] = out[..., 0] * self.scale_xy[0] + self.pad_xy[0]
        out[..., 1] = out[..., 1] * self.scale_xy[1] + self.pad_xy[1]
        return out

    def to_destination(self, xyxy: np.ndarray) -> np.ndarray:
        """Source xyxy boxes [N, 4] to destination pixels (float32)."""
        out = np.asarray(xyxy, dtype=np.float32).copy()
        out[..., 0::2] = out[..., 0::2] * self.scale_xy[0] + self.pad_xy[0]
        out[..., 1::2] = out[..., 1::2] * self.scale_xy[1] + self.pad_xy[1]
        return out

    def warp(
        self,
        image: Any,
        dst_wh: tuple[int, int],
        *,
        pad_value: float = 0.0,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Resize ``image`` into a ``dst_wh`` canvas filled with ``pad_value``.

        ``image`` is an HWC uint8 array, or a picture that resizes itself into a region of the
        canvas: a decoder's ``YuvImage`` (``size_wh`` and ``resize_into(region)``), converted to
        BGR after the resize. ``out``, when given, is a [H, W, C] uint8 array to write into (no
        allocation per frame).
        """
        if isinstance(image, np.ndarray):
            (h, w), channels = image.shape[:2], image.shape[2]
        else:
            (w, h), channels = image.size_wh, 3
        new_w = min(dst_wh[0], max(1, round(w * self.scale_xy[0])))
        new_h = min(dst_wh[1], max(1, round(h * self.scale_xy[1])))
        x0, y0 = int(self.pad_xy[0]), int(self.pad_xy[1])
        canvas = out if out is not None else np.empty((dst_wh[1], dst_wh[0], channels), np.uint8)
        if (new_w, new_h) != dst_wh or x0 or y0:
            canvas[...] = int(pad_value)
        region = canvas[y0 : y0 + new_h, x0 : x0 + new_w]
        if not isinstance(image, np.ndarray):
            image.resize_into(region)
            return canvas
        # Bilinear, as nvinfer scales: INTER_AREA looks a little better when shrinking but costs
        # about 20 times as much on a 1080p frame, the largest per-frame cost after the model.
        cv2.resize(image, (new_w, new_h), dst=region, interpolation=cv2.INTER_LINEAR)
        return canvas
