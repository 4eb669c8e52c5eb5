"""Turning BGR frames into the batched tensor a detector takes.

Frames arrive as BGR HWC uint8 (what OpenCV and the decoders give). A :class:`PreprocessSpec` says
how the network wants them: its input size, how to fit the frame (letterbox or stretch), the channel
order and the per-channel normalisation ``(pixel - mean) / std``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from panoptes.core.errors import ConfigError
from panoptes.core.geometry import Letterbox, PadPosition
from panoptes.media.yuv import YuvImage

ColorOrder = Literal["bgr", "rgb"]

__all__ = ["ColorOrder", "PreprocessSpec", "Preprocessor", "preprocess_batch"]


@dataclass(frozen=True)
class PreprocessSpec:
    """How to turn a BGR HWC uint8 frame into one [3, H, W] float32 network input.

    ``mean`` and ``std`` are per channel in the model's channel order (``color_order``):
    input = (pixel - mean) / std, pixel in 0..255. DeepStream's ``net-scale-factor`` is ``1 / std``
    and its ``offsets`` are ``mean``.
    """

    input_size_wh: tuple[int, int]
    keep_ratio: bool = True  # False: plain stretch to input_size_wh
    pad_position: PadPosition = "center"
    pad_value: float = 114.0
    color_order: ColorOrder = "bgr"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        # Values may come from YAML or JSON (lists, ints): store them as the declared tuples.
        size = tuple(self.input_size_wh)
        if len(size) != 2 or not all(isinstance(v, int | np.integer) and v > 0 for v in size):
            raise ConfigError(
                f"must be two positive integers (width, height), got {self.input_size_wh!r}",
                "preprocess.input_size_wh",
            )
        object.__setattr__(self, "input_size_wh", (int(size[0]), int(size[1])))
        for field in ("mean", "std"):
            values = tuple(getattr(self, field))
            if len(values) != 3:
                raise ConfigError(
                    f"needs one value per channel (3), got {getattr(self, field)!r}",
                    f"preprocess.{field}",
                )
            object.__setattr__(self, field, tuple(float(v) for v in values))
        if any(v == 0.0 for v in self.std):
            raise ConfigError(f"must not contain 0, got {self.std!r}", "preprocess.std")
        if self.pad_position not in ("top-left", "center"):
            raise ConfigError(
                f"must be 'top-left' or 'center', got {self.pad_position!r}",
                "preprocess.pad_position",
            )
        if self.color_order not in ("bgr", "rgb"):
            raise ConfigError(
                f"must be 'bgr' or 'rgb', got {self.color_order!r}", "preprocess.color_order"
            )
        object.__setattr__(self, "pad_value", float(self.pad_value))

    def replace(self, **changes: Any) -> PreprocessSpec:
        """A copy with some fields changed; an unknown field is a :class:`ConfigError`."""
        known = {field.name for field in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(
                f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
                "preprocess",
            )
        return dataclasses.replace(self, **changes)

    def letterbox_for(self, image_wh: tuple[int, int]) -> Letterbox:
        """The mapping from the pixels of an ``image_wh`` frame to network-input pixels."""
        return Letterbox.fit(
            image_wh, self.input_size_wh, keep_ratio=self.keep_ratio, pad_position=self.pad_position
        )


class Preprocessor:
    """Pre-processes batches for one spec, reusing its buffers from call to call.

    The array a call returns is overwritten by the next call: consume it (run the model) first.
    Not thread-safe; use one per thread.
    """

    def __init__(self, spec: PreprocessSpec) -> None:
        self.spec = spec
        # (x - mean) / std == x * scale + offset, per channel, shaped to broadcast over NCHW.
        std = np.asarray(spec.std, dtype=np.float32)
        mean = np.asarray(spec.mean, dtype=np.float32)
        self._scale = (1.0 / std).reshape(1, 3, 1, 1)
        self._offset = (-mean / std).reshape(1, 3, 1, 1)
        self._identity = bool(np.all(std == 1.0) and np.all(mean == 0.0))
        self._canvas = np.empty((0, 0, 0, 3), np.uint8)
        self._out = np.empty((0, 3, 0, 0), np.float32)

    def __call__(
        self, images: Sequence[np.ndarray | YuvImage], out: np.ndarray | None = None
    ) -> tuple[np.ndarray, list[Letterbox]]:
        """Pre-process BGR HWC uint8 ``images`` into an NCHW float32 batch. An image may also be
        a decoder's :class:`YuvImage`: its planes are letterboxed, then converted.

        Returns the batch [len(images), 3, H, W] and, per image, the :class:`Letterbox` that maps
        its pixels to network-input pixels. ``out``, when given, is the float32 array to fill.
        """
        spec = self.spec
        width, height = spec.input_size_wh
        count = len(images)
        if self._canvas.shape[0] < count:
            self._canvas = np.empty((count, height, width, 3), np.uint8)
        canvas = self._canvas[:count]
        letterboxes = []
        for index, image in enumerate(images):
            if isinstance(image, YuvImage):
                size_wh = image.size_wh
            elif image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(
                    f"image {index}: expected a BGR HWC uint8 array, "
                    f"got shape {image.shape} dtype {image.dtype}"
                )
            else:
                size_wh = (image.shape[1], image.shape[0])
            letterbox = spec.letterbox_for(size_wh)
            letterbox.warp(image, spec.input_size_wh, pad_value=spec.pad_value, out=canvas[index])
            letterboxes.append(letterbox)

        if out is None:
            if self._out.shape[0] < count:
                self._out = np.empty((count, 3, height, width), np.float32)
            out = self._out[:count]
        elif out.shape != (count, 3, height, width) or out.dtype != np.float32:
            raise ValueError(
                f"out must be float32 {(count, 3, height, width)}, got {out.dtype} {out.shape}"
            )
        channels_first = canvas.transpose(0, 3, 1, 2)
        if spec.color_order == "rgb":
            channels_first = channels_first[:, ::-1]
        # One pass over the whole batch: cast, then scale and shift in place.
        np.copyto(out, channels_first)
        if not self._identity:
            out *= self._scale
            out += self._offset
        return out, letterboxes


def preprocess_batch(
    images: Sequence[np.ndarray], spec: PreprocessSpec, out: np.ndarray | None = None
) -> tuple[np.ndarray, list[Letterbox]]:
    """Pre-process BGR HWC uint8 ``images`` into an NCHW float32 batch [len(images), 3, H, W].

    Returns the batch and one :class:`Letterbox` per image (image pixels -> network-input pixels).
    ``out``, when given, is the float32 [N, 3, H, W] array to fill. Use a :class:`Preprocessor` to
    keep the buffers across calls.
    """
    return Preprocessor(spec)(images, out)
