"""Generated test patterns (``test://ball``), for pipelines that must run without footage."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

import cv2
import numpy as np

from panoptes.media._base import BaseReader, ImageMaker

PatternDrawer = Callable[[np.ndarray, int, float], np.ndarray]


def _gradient(size_wh: tuple[int, int]) -> np.ndarray:
    width, height = size_wh
    x_ramp = np.linspace(40, 200, width, dtype=np.float32)[None, :]
    y_ramp = np.linspace(40, 200, height, dtype=np.float32)[:, None]
    background = np.empty((height, width, 3), dtype=np.uint8)
    background[..., 0] = (0.5 * x_ramp + 0.5 * y_ramp).astype(np.uint8)
    background[..., 1] = np.broadcast_to(y_ramp, (height, width)).astype(np.uint8)
    background[..., 2] = np.broadcast_to(x_ramp, (height, width)).astype(np.uint8)
    return background


def _triangle(phase: float) -> float:
    """A triangle wave in [0, 1] with period 1: a ball bouncing between two walls."""
    return 1.0 - abs(2.0 * (phase % 1.0) - 1.0)


def _draw_counter(image: np.ndarray, index: int) -> None:
    height = image.shape[0]
    scale = max(height / 400.0, 0.4)
    origin = (int(10 * scale), int(40 * scale))
    cv2.putText(image, f"{index}", origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 4)
    cv2.putText(image, f"{index}", origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1)


def draw_ball(background: np.ndarray, index: int, fps: float) -> np.ndarray:
    """A filled circle bouncing over the gradient, with the frame index in the corner."""
    image = background.copy()
    height, width = image.shape[:2]
    radius = max(min(width, height) // 8, 2)
    time_s = index / fps
    # Periods of 2.5 s and 3.7 s across: the path does not repeat soon and moves every frame.
    centre_x = radius + (width - 2 * radius) * _triangle(time_s / 2.5)
    centre_y = radius + (height - 2 * radius) * _triangle(time_s / 3.7 + 0.25)
    cv2.circle(image, (round(centre_x), round(centre_y)), radius, (30, 60, 230), -1, cv2.LINE_AA)
    _draw_counter(image, index)
    return image


def draw_gradient(background: np.ndarray, index: int, fps: float) -> np.ndarray:
    """The still gradient with the frame index in the corner."""
    image = background.copy()
    _draw_counter(image, index)
    return image


def draw_noise(background: np.ndarray, index: int, fps: float) -> np.ndarray:
    """Uniform noise, different and reproducible for every frame index."""
    return np.random.default_rng(index).integers(0, 256, background.shape, dtype=np.uint8)


PATTERNS: dict[str, PatternDrawer] = {
    "ball": draw_ball,
    "gradient": draw_gradient,
    "noise": draw_noise,
}


class PatternReader(BaseReader):
    """Generates ``frames`` frames (endless when ``None``) of a pattern at ``fps``.

    Frame ``i`` has pts ``i / fps`` and is the same on every run.
    """

    def __init__(
        self,
        uri: str,
        name: str,
        *,
        pattern: str,
        size_wh: tuple[int, int],
        fps: float,
        frames: int | None,
        loop: bool,
        real_time: bool,
        drop_frame_interval: int,
    ) -> None:
        super().__init__(
            uri, name, loop=loop, real_time=real_time, drop_frame_interval=drop_frame_interval
        )
        self._draw = PATTERNS[pattern]
        self.size_wh = size_wh
        self._native_fps = fps
        self._native_frame_count = frames
        self._background = np.zeros((0, 0, 3), dtype=np.uint8)

    def _open(self) -> None:
        self._background = _gradient(self.size_wh)

    def _decode_pass(self) -> Iterator[tuple[float | None, ImageMaker]]:
        fps = self._native_fps
        assert fps is not None
        index = 0
        while self._native_frame_count is None or index < self._native_frame_count:
            yield index / fps, partial(self._draw, self._background, index, fps)
            index += 1

    def _rewind(self) -> None:
        pass
