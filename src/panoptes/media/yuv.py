"""Colour spaces, and decoded pictures kept in their YUV planes on the host until pixels are read.

``color_space`` names the colour matrix and range of a YUV picture's conversion to RGB, as
FFmpeg reads them from the stream and swscale applies them: ``bt601`` (also for streams that do
not say), ``bt709``, ``fcc``, ``smpte240m``, ``bt2020``, each with ``-full`` for full-range
("JPEG") pictures. The GPU path (:mod:`panoptes.media.gpu_image`) and the CPU path share them.

A :class:`YuvImage` is a CPU decoder's picture in the decoder's 4:2:0 planes. Converting
a 1080p picture to a BGR array costs some 3 ms of CPU; a detector then shrinks it to a few hundred
pixels a side. Where nothing reads the full-size pixels (a pipeline whose elements read boxes
only, and a detector), frames travel as YuvImages and the detector letterboxes the planes
directly: resizing the planes and converting the small result costs a fifth as much. Anything
that wants the pixels gets them with :meth:`YuvImage.to_bgr` (or ``Frame.image_bgr()``),
exactly what the decoder would have given.

Nothing here imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import av
import cv2
import numpy as np

if TYPE_CHECKING:
    import av.video.frame

__all__ = [
    "COLOR_SPACES",
    "MATRICES",
    "YuvImage",
    "coefficients",
    "color_space_name",
    "yuv_image_of",
]

#: (Kr, Kb) of each colour matrix; Kg = 1 - Kr - Kb.
MATRICES: dict[str, tuple[float, float]] = {
    "bt601": (0.299, 0.114),
    "bt709": (0.2126, 0.0722),
    "fcc": (0.30, 0.11),
    "smpte240m": (0.212, 0.087),
    "bt2020": (0.2627, 0.0593),
}
COLOR_SPACES: tuple[str, ...] = tuple(f"{m}{r}" for m in MATRICES for r in ("", "-full"))

#: FFmpeg's AVColorSpace values (as PyAV reports a stream's ``colorspace``) and their matrices,
#: as swscale maps them; the others, "unspecified" among them, get BT.601 as there.
_FFMPEG_MATRICES = {1: "bt709", 4: "fcc", 5: "bt601", 6: "bt601", 7: "smpte240m", 9: "bt2020"}
_FFMPEG_MATRICES[10] = "bt2020"
_FFMPEG_RANGE_FULL = 2
"""AVCOL_RANGE_JPEG."""

#: The pixel formats a YuvImage holds: planar 4:2:0, limited and full ("JPEG") range.
_YUV420_FORMATS = {"yuv420p": False, "yuvj420p": True}


def color_space_name(colorspace: int | None, color_range: int | None, *, full: bool = False) -> str:
    """The ``color_space`` of a stream from FFmpeg's ``colorspace`` and ``color_range`` values
    (``full``: the pixel format says full range, as ``yuvj420p`` does)."""
    matrix = _FFMPEG_MATRICES.get(int(colorspace or 0), "bt601")
    return matrix + ("-full" if full or color_range == _FFMPEG_RANGE_FULL else "")


def coefficients(color_space: str) -> tuple[float, float, float, float, float, float]:
    """(luma offset, luma scale, R from V, G from U, G from V, B from U) of ``color_space``:
    ``R = (Y - offset) * scale + r_v * (V - 128)`` and so on."""
    matrix, _, range_name = color_space.partition("-")
    if matrix not in MATRICES or range_name not in ("", "full"):
        raise ValueError(f"unknown colour space {color_space!r}; known: {', '.join(COLOR_SPACES)}")
    kr, kb = MATRICES[matrix]
    kg = 1.0 - kr - kb
    if range_name == "full":
        y_offset, y_scale, c_scale = 0.0, 1.0, 1.0
    else:  # luma 16-235 and chroma 16-240 stretched to 0-255
        y_offset, y_scale, c_scale = 16.0, 255.0 / 219.0, 255.0 / 224.0
    return (
        y_offset,
        y_scale,
        c_scale * 2.0 * (1.0 - kr),
        -c_scale * 2.0 * kb * (1.0 - kb) / kg,
        -c_scale * 2.0 * kr * (1.0 - kr) / kg,
        c_scale * 2.0 * (1.0 - kb),
    )


def _bgr_matrix(color_space: str) -> np.ndarray:
    """The 3 × 4 matrix taking (Y, U, V, 1) to (B, G, R), for ``cv2.transform``."""
    y_offset, y_scale, r_v, g_u, g_v, b_u = coefficients(color_space)
    luma = -y_offset * y_scale
    return np.array(
        [
            [y_scale, b_u, 0.0, luma - 128.0 * b_u],
            [y_scale, g_u, g_v, luma - 128.0 * (g_u + g_v)],
            [y_scale, 0.0, r_v, luma - 128.0 * r_v],
        ],
        np.float32,
    )


_BGR_MATRICES = {name: _bgr_matrix(name) for name in COLOR_SPACES}


class YuvImage:
    """A decoded 4:2:0 picture on the host, in its Y, U and V planes, not yet converted to BGR.

    The planes are copied out of the decoder's buffers (a tenth of the cost of the conversion),
    so that frames waiting in queues never hold the decoder's memory. :meth:`to_bgr` gives the
    picture as the decoder's BGR conversion would have, pixel for pixel; ``Letterbox.warp``
    resizes it into a canvas, converting after the resize (:meth:`resize_into`).
    """

    __slots__ = ("_color_range", "_colorspace", "_format", "_planes", "color_space", "size_wh")

    def __init__(self, frame: av.video.frame.VideoFrame, color_space: str) -> None:
        self.size_wh: tuple[int, int] = (frame.width, frame.height)
        self.color_space = color_space
        """The colour matrix and range of its conversion (see the module's docstring)."""
        # Y rows, then U and V, each packed: [H * 3 / 2, W].
        self._planes = frame.to_ndarray()
        self._format = frame.format.name
        self._colorspace, self._color_range = frame.colorspace, frame.color_range

    def __repr__(self) -> str:
        width, height = self.size_wh
        return f"YuvImage({width}x{height}, {self.color_space})"

    def planes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The Y [H, W], U and V [H / 2, W / 2] uint8 planes (views of its own copy)."""
        width, height = self.size_wh
        chroma = self._planes[height:].reshape(2, height // 2, width // 2)
        return self._planes[:height], chroma[0], chroma[1]

    def to_bgr(self) -> np.ndarray:
        """The whole picture as a new HWC uint8 BGR array (FFmpeg's swscale, as the CPU decoders
        convert)."""
        frame = av.VideoFrame.from_ndarray(self._planes, format=self._format)
        frame.colorspace, frame.color_range = self._colorspace, self._color_range
        return frame.to_ndarray(format="bgr24")

    def resize_into(self, region: np.ndarray) -> None:
        """Write the picture, resized to ``region`` ([H, W, 3] uint8, a view of a canvas is
        fine), into it as BGR: each plane resized by OpenCV's bilinear sampling (chroma straight
        from its half resolution), then converted in floating point. :meth:`Letterbox.warp
        <panoptes.core.geometry.Letterbox.warp>` places it. Against converting first with FFmpeg
        and resizing, a pixel differs by about a grey level on average (FFmpeg's fixed-point
        conversion comes out darker by about one), a few more at colour edges."""
        size = (region.shape[1], region.shape[0])
        resized = [cv2.resize(p, size, interpolation=cv2.INTER_LINEAR) for p in self.planes()]
        cv2.transform(cv2.merge(resized), _BGR_MATRICES[self.color_space], dst=region)


def yuv_image_of(frame: av.video.frame.VideoFrame) -> YuvImage | None:
    """``frame`` as a :class:`YuvImage`, or None when its pixel format is not planar 4:2:0 or a
    side is odd (those are converted to BGR at once, as before)."""
    full = _YUV420_FORMATS.get(frame.format.name)
    if full is None or frame.width % 2 or frame.height % 2:
        return None
    return YuvImage(frame, color_space_name(frame.colorspace, frame.color_range, full=full))
