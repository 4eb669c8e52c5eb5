"""Frames as torch tensors: NV12 to RGB, letterboxing a batch, and moving images between numpy
BGR arrays and device tensors. Imported only where a tensor is there (torch is optional).

Layouts, uint8 throughout:

- NV12 ``[H * 3 / 2, W]`` (batched ``[N, H * 3 / 2, W]``): H rows of Y, then H / 2 rows of
  interleaved U, V samples, one pair per 2 × 2 pixels, as NVDEC gives them;
- RGB ``[3, H, W]`` (batched ``[N, 3, H, W]``): planar, what the mux puts out on the GPU and what
  models take (``chw-rgb`` in ``panoptes.models.gpu.preprocess``);
- BGR ``[H, W, 3]`` numpy arrays: the CPU path's frames.

``color_space`` names the colour matrix and range (see :mod:`panoptes.media.yuv`).

Against OpenCV's ``cvtColor(..., COLOR_YUV2BGR_NV12)`` (BT.601, limited range): the same chroma
(each U, V pair covers its 2 × 2 pixels), the same clamp of luma below 16, float32 instead of
20-bit fixed point, so a value differs by at most a grey level or two. The CPU decoders'
swscale interpolates chroma instead of repeating it: at sharp colour edges a pixel can differ
from the CPU path's by more (up to about 20 on the shared clips, 1 on average).

Letterbox placement (scale, whole-pixel padding) is :meth:`Letterbox.fit`'s, pixel for pixel
where :meth:`Letterbox.warp` puts the image on the CPU; ``interpolate(bilinear,
align_corners=False, antialias=False)`` samples where OpenCV's INTER_LINEAR does, in float32
against OpenCV's 11-bit fixed point: a value differs by one grey level at most.

:func:`letterbox_nv12` (the GPU mux's resize) reads the frames where the decoders left them
and, where the output is small against the picture, works in proportion to the output. For each
pair of sizes, the source rows and columns that bilinear interpolation reads (its taps) and their
weights are worked out once, exactly as ``interpolate(bilinear, align_corners=False,
antialias=False)`` given ``size=`` works them out, and kept. The rows each frame needs are
gathered as uint8 from the frame, one small kernel per frame, which also batches frames that are
separate tensors; then the columns of the whole batch, one kernel for luma and one for the U, V
pairs; only these taps become float32 and are weighted. Converting whole planes costs far more
than a small output is worth: in a profile on an H100 (16 HEVC 1080p streams into 416 × 416),
per frame, 7 µs to stack the decoders' frames into one tensor, 11 µs to convert the luma plane
to float32 (2 MB read, 8 MB written), the chroma plane likewise, then 4.3 µs for ``interpolate``
to read the float planes.

The taps are twelve per output pixel (four each of Y, U and V, chroma being interpolated to the
output's size), against one and a half samples per picture pixel, and torch's kernels weigh
them less efficiently than ``interpolate`` does whole planes: gathering pays from a shrink of
about 16 in area (4 on each side, :data:`_GATHER_MIN_SHRINK`). Measured alone on an H100 (16
frames a batch, µs per frame, whole planes against taps): 1080p into 320 × 320, 21.3 against
12.6; into 416 × 416, 23.4 against 18.6; into 480 × 480, 25.1 against 23.6; into 640 × 640, 31.6
against about 42. Where the shrink is smaller, the frames are stacked and whole planes are
converted to float32 and resized with ``interpolate``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from panoptes.core.geometry import Letterbox
from panoptes.media.yuv import COLOR_SPACES, MATRICES, coefficients, color_space_name

__all__ = [
    "COLOR_SPACES",
    "color_space_name",
    "from_bgr_images",
    "letterbox",
    "letterbox_nv12",
    "nv12_to_rgb",
    "rgb_to_nv12",
    "stack_images",
    "to_bgr_images",
]

#: Frames converted by one pass of the ops below: bounds the float32 copies in memory (a 1080p
#: frame takes 25 MB as float32 RGB).
FRAMES_PER_PASS = 8

#: :func:`letterbox_nv12` gathers taps where the picture has at least this many times the
#: pixels of the scaled picture, else converts whole planes (see the module's documentation).
_GATHER_MIN_SHRINK = 16

#: Temporary memory that one pass of gathered taps may take (their temporaries are the size of
#: the output, not of the input): what ``FRAMES_PER_PASS`` 1080p frames take as float32 RGB.
_GATHER_BYTES_PER_PASS = FRAMES_PER_PASS * 1920 * 1080 * 3 * 4


def _yuv_to_rgb(
    y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, color_space: str, out: torch.Tensor
) -> None:
    """Write RGB from float planes ``y``, ``u``, ``v`` [N, H, W] (changed in place) into the
    uint8 ``out`` [N, 3, H, W] (a view is fine: the letterbox region of a canvas)."""
    y_offset, y_scale, r_v, g_u, g_v, b_u = coefficients(color_space)
    if y_offset:
        # As OpenCV does: luma below black (16) counts as black.
        y.sub_(y_offset).clamp_(min=0.0)
    if y_scale != 1.0:
        y.mul_(y_scale)
    u.sub_(128.0)
    v.sub_(128.0)
    planes = (
        torch.add(y, v, alpha=r_v),
        torch.add(y, u, alpha=g_u).add_(v, alpha=g_v),
        torch.add(y, u, alpha=b_u),
    )
    for channel, plane in enumerate(planes):
        out[:, channel].copy_(plane.round_().clamp_(0.0, 255.0))


def _as_nv12_batch(nv12: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """``nv12`` as a batch [N, H * 3 / 2, W], with the picture's width and height."""
    batch = nv12.unsqueeze(0) if nv12.ndim == 2 else nv12
    if batch.ndim != 3 or batch.dtype != torch.uint8:
        raise ValueError(
            f"expected uint8 NV12 [H * 3 / 2, W] or [N, H * 3 / 2, W], got shape "
            f"{tuple(nv12.shape)} dtype {nv12.dtype}"
        )
    rows, width = batch.shape[1], batch.shape[2]
    height = rows * 2 // 3
    if height * 3 // 2 != rows or height % 2 or width % 2:
        raise ValueError(f"NV12 needs an even width and height, got {rows} rows of {width}")
    return batch, width, height


def _chroma(part: torch.Tensor, height: int) -> torch.Tensor:
    """The interleaved U, V rows of an NV12 batch as float planes [N, 2, H / 2, W / 2]."""
    uv = part[:, height:].reshape(part.shape[0], height // 2, part.shape[2] // 2, 2)
    return uv.permute(0, 3, 1, 2).float()


def nv12_to_rgb(
    nv12: torch.Tensor, color_space: str = "bt601", *, out: torch.Tensor | None = None
) -> torch.Tensor:
    """NV12 ``[H * 3 / 2, W]`` (or a batch ``[N, H * 3 / 2, W]``) to uint8 RGB ``[3, H, W]``
    (``[N, 3, H, W]``) on the same device; ``out``, when given, is written into (a batch)."""
    batch, width, height = _as_nv12_batch(nv12)
    count = batch.shape[0]
    if out is None:
        out = torch.empty((count, 3, height, width), dtype=torch.uint8, device=batch.device)
    for start in range(0, count, FRAMES_PER_PASS):
        part = batch[start : start + FRAMES_PER_PASS]
        luma = part[:, :height].float()
        # Each U, V pair covers its 2 x 2 pixels, as OpenCV's conversion repeats it.
        chroma = F.interpolate(_chroma(part, height), scale_factor=2.0, mode="nearest")
        _yuv_to_rgb(luma, chroma[:, 0], chroma[:, 1], color_space, out[start : start + len(part)])
    return out[0] if nv12.ndim == 2 else out


def rgb_to_nv12(
    images: torch.Tensor, color_space: str = "bt601", *, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Uint8 RGB ``[3, H, W]`` (or a batch ``[N, 3, H, W]``), H and W even, to NV12
    ``[H * 3 / 2, W]`` (``[N, H * 3 / 2, W]``) on the same device, what NVENC encodes; ``out``,
    when given, is written into (a batch).

    The default is what the CPU encoders get from OpenCV's ``COLOR_BGR2YUV_I420``: BT.601,
    limited range, each U, V pair from the top-left pixel of its 2 × 2 (not their mean), so
    that a file looks the same from either encoder; a value differs from OpenCV's by a grey
    level at most (float32 against fixed point).
    """
    batch = images.unsqueeze(0) if images.ndim == 3 else images
    if batch.ndim != 4 or batch.shape[1] != 3 or batch.dtype != torch.uint8:
        raise ValueError(
            f"expected uint8 RGB [3, H, W] or [N, 3, H, W], got shape {tuple(images.shape)} "
            f"dtype {images.dtype}"
        )
    count, height, width = batch.shape[0], batch.shape[2], batch.shape[3]
    if height % 2 or width % 2:
        raise ValueError(f"NV12 needs an even width and height, got {width}x{height}")
    matrix, _, range_name = color_space.partition("-")
    if matrix not in MATRICES or range_name not in ("", "full"):
        raise ValueError(f"unknown colour space {color_space!r}; known: {', '.join(COLOR_SPACES)}")
    kr, kb = MATRICES[matrix]
    # Limited range: luma 16-235, chroma 16-240 around 128.
    y_offset, y_scale, c_scale = (0.0, 1.0, 1.0) if range_name else (16.0, 219 / 255, 224 / 255)
    if out is None:
        out = torch.empty((count, height * 3 // 2, width), dtype=torch.uint8, device=batch.device)
    for start in range(0, count, FRAMES_PER_PASS):
        part = batch[start : start + FRAMES_PER_PASS].float()
        target = out[start : start + len(part)]
        red, green, blue = part[:, 0], part[:, 1], part[:, 2]
        luma = red * kr + green * (1.0 - kr - kb) + blue * kb
        target[:, :height].copy_(luma.mul_(y_scale).add_(y_offset).round_().clamp_(0.0, 255.0))
        sited = part[:, :, ::2, ::2]
        sited_luma = sited[:, 0] * kr + sited[:, 1] * (1.0 - kr - kb) + sited[:, 2] * kb
        u = (sited[:, 2] - sited_luma) * (c_scale / (2.0 * (1.0 - kb))) + 128.0
        v = (sited[:, 0] - sited_luma) * (c_scale / (2.0 * (1.0 - kr))) + 128.0
        chroma = torch.stack((u, v), dim=-1).round_().clamp_(0.0, 255.0)
        target[:, height:].copy_(chroma.reshape(len(part), height // 2, width))
    return out[0] if images.ndim == 3 else out


def _placement(
    src_wh: tuple[int, int], dst_wh: tuple[int, int], keep_aspect: bool
) -> tuple[Letterbox, tuple[int, int], tuple[int, int]]:
    """The letterbox, the scaled picture's (width, height) and its top-left corner in the
    canvas: exactly where :meth:`Letterbox.warp` puts it."""
    transform = Letterbox.fit(src_wh, dst_wh, keep_ratio=keep_aspect)
    new_w = min(dst_wh[0], max(1, round(src_wh[0] * transform.scale_xy[0])))
    new_h = min(dst_wh[1], max(1, round(src_wh[1] * transform.scale_xy[1])))
    return transform, (new_w, new_h), (int(transform.pad_xy[0]), int(transform.pad_xy[1]))


def _canvas(
    out: torch.Tensor | None, count: int, dst_wh: tuple[int, int], device: torch.device
) -> torch.Tensor:
    if out is None:
        return torch.empty((count, 3, dst_wh[1], dst_wh[0]), dtype=torch.uint8, device=device)
    if tuple(out.shape) != (count, 3, dst_wh[1], dst_wh[0]) or out.dtype != torch.uint8:
        raise ValueError(f"out must be uint8 [{count}, 3, {dst_wh[1]}, {dst_wh[0]}]")
    return out


def _resize(planes: torch.Tensor, size_wh: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(
        planes, size=(size_wh[1], size_wh[0]), mode="bilinear", align_corners=False, antialias=False
    )


def _linear_taps(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each of ``out_size`` output samples, the two input samples that linear interpolation
    reads and the weight of the second, as ``interpolate(bilinear, align_corners=False,
    antialias=False)`` computes them when given ``size=`` (in float32, on the CPU): the source
    coordinate ``(out + 0.5) * in / out - 0.5``, negative ones taken as 0, the first sample its
    floor, the second the next one but never past the edge, the weight the fraction."""
    if in_size == out_size:  # as torch does: a copy
        index = torch.arange(out_size)
        return index, index, torch.zeros(out_size)
    scale = torch.tensor(in_size, dtype=torch.float32) / out_size
    source = (torch.arange(out_size, dtype=torch.float32) + 0.5).mul_(scale).sub_(0.5)
    source.clamp_(min=0.0)
    first = source.floor().long().clamp_(max=in_size - 1)
    weight = source.sub_(first.float()).clamp_(0.0, 1.0)
    second = first + (first < in_size - 1).long()
    return first, second, weight


@dataclass(frozen=True)
class _Taps:
    """Where the bilinear resize of NV12 pictures of one size to another (``h`` rows of ``w``)
    reads, and how it weighs what it reads. Each pair of weights goes with the first and the
    second taps: first columns then second columns, first rows then second rows."""

    rows: torch.Tensor
    """The NV12 rows a frame's taps are in [4h]: luma's first and second rows, then chroma's."""
    luma_columns: torch.Tensor
    """The columns of the luma taps [2w], first then second."""
    chroma_columns: torch.Tensor
    """The U, V pairs of the chroma taps [2w], first then second (pair i: bytes 2i, 2i + 1)."""
    luma_column_weights: tuple[torch.Tensor, torch.Tensor]
    """Float32 [w]."""
    chroma_column_weights: tuple[torch.Tensor, torch.Tensor]
    """Float32 [2w]: each weight twice, for U and V."""
    luma_row_weights: tuple[torch.Tensor, torch.Tensor]
    """Float32 [h, 1]."""
    chroma_row_weights: tuple[torch.Tensor, torch.Tensor]
    """Float32 [h, 1, 1]."""


@functools.lru_cache(maxsize=32)
def _nv12_taps(src_wh: tuple[int, int], dst_wh: tuple[int, int], device: torch.device) -> _Taps:
    """The :class:`_Taps` of NV12 pictures ``src_wh`` resized to ``dst_wh`` on ``device``: luma
    from full resolution, U and V from half resolution, each straight to ``dst_wh``."""
    (width, height), (new_w, new_h) = src_wh, dst_wh
    luma_rows, luma_columns = _linear_taps(height, new_h), _linear_taps(width, new_w)
    chroma_rows, chroma_columns = _linear_taps(height // 2, new_h), _linear_taps(width // 2, new_w)

    def weights(second: torch.Tensor, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        return (1.0 - second).reshape(shape).to(device), second.reshape(shape).to(device)

    taps = _Taps(
        rows=torch.cat((*luma_rows[:2], *(height + rows for rows in chroma_rows[:2]))).to(device),
        luma_columns=torch.cat(luma_columns[:2]).to(device),
        chroma_columns=torch.cat(chroma_columns[:2]).to(device),
        luma_column_weights=weights(luma_columns[2], (new_w,)),
        chroma_column_weights=weights(chroma_columns[2].repeat_interleave(2), (2 * new_w,)),
        luma_row_weights=weights(luma_rows[2], (new_h, 1)),
        chroma_row_weights=weights(chroma_rows[2], (new_h, 1, 1)),
    )
    if device.type == "cuda":
        # Kept for later calls, perhaps on other CUDA streams: the copies must be done by then.
        torch.cuda.current_stream(device).synchronize()  # type: ignore[no-untyped-call]
    return taps


def _as_nv12_frames(
    nv12: torch.Tensor | Sequence[torch.Tensor],
) -> tuple[torch.Tensor | None, Sequence[torch.Tensor], int, int]:
    """``nv12`` (a batch, a picture, or pictures of one size) as a batch tensor, where it is one
    or views of one, else None; the pictures one by one; their width and height."""
    if isinstance(nv12, torch.Tensor):
        batch, width, height = _as_nv12_batch(nv12)
        return batch, list(batch), width, height
    frames = list(nv12)
    if not frames:
        raise ValueError("expected NV12 pictures, got none")
    first = frames[0]
    for frame in frames:
        if (
            frame.ndim != 2
            or frame.dtype != torch.uint8
            or frame.shape != first.shape
            or frame.device != first.device
        ):
            raise ValueError(
                f"expected uint8 NV12 pictures [H * 3 / 2, W] of one size on one device, got "
                f"one of shape {tuple(frame.shape)} dtype {frame.dtype} on {frame.device} "
                f"beside one of shape {tuple(first.shape)} dtype {first.dtype} on {first.device}"
            )
    _, width, height = _as_nv12_batch(first)
    return _batch_view(frames), frames, width, height


def _weigh(taps: torch.Tensor, weights: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Float32 ``first * weights[0] + second * weights[1]``, the uint8 ``taps`` [..., 2k] being
    the first [..., :k] then the second [..., k:], as ``interpolate`` weighs them."""
    size = taps.shape[-1] // 2
    result = taps[..., :size] * weights[0]
    return result.addcmul_(taps[..., size:], weights[1])


def _resize_gathering(
    batch: torch.Tensor | None,
    frames: Sequence[torch.Tensor],
    taps: _Taps,
    color_space: str,
    out: torch.Tensor,
) -> None:
    """Resize the NV12 ``frames`` (``batch``, where they are one tensor) by gathering ``taps``,
    and write them as RGB into ``out`` [N, 3, h, w], at most as many frames at a time as fit in
    ``_GATHER_BYTES_PER_PASS``."""
    new_h, new_w = out.shape[2], out.shape[3]
    count, row_bytes = len(frames), frames[0].shape[1]
    # The gathered rows, the uint8 taps, and the float32 planes along the way.
    frame_bytes = 4 * new_h * row_bytes + (12 + 4 * 12) * new_h * new_w
    per_pass = max(1, _GATHER_BYTES_PER_PASS // frame_bytes)
    for start in range(0, count, per_pass):
        stop = min(count, start + per_pass)
        if batch is not None:
            rows = batch[start:stop].index_select(1, taps.rows)
        else:
            # One small kernel per frame, each reading what it needs where the frame is.
            shape = (stop - start, len(taps.rows), row_bytes)
            rows = torch.empty(shape, dtype=torch.uint8, device=frames[0].device)
            for index in range(start, stop):
                torch.index_select(frames[index], 0, taps.rows, out=rows[index - start])
        luma = rows[:, : 2 * new_h].index_select(2, taps.luma_columns)
        # U, V pairs gathered as one 16-bit sample each.
        pairs = rows[:, 2 * new_h :].view(torch.int16).index_select(2, taps.chroma_columns)
        luma_across = _weigh(luma, taps.luma_column_weights)  # [n, 2h, w]
        chroma_across = _weigh(pairs.view(torch.uint8), taps.chroma_column_weights)
        chroma_across = chroma_across.view(stop - start, 2 * new_h, new_w, 2)  # U, V interleaved
        # Y, U, V each contiguous, for the conversion's sake.
        planes = torch.empty((3, stop - start, new_h, new_w), device=rows.device)
        for across, weights, target in (
            (luma_across, taps.luma_row_weights, planes[0]),
            (chroma_across, taps.chroma_row_weights, planes[1:].permute(1, 2, 3, 0)),
        ):
            torch.mul(across[:, :new_h], weights[0], out=target)
            target.addcmul_(across[:, new_h:], weights[1])
        _yuv_to_rgb(planes[0], planes[1], planes[2], color_space, out[start:stop])


def _resize_planes(batch: torch.Tensor, color_space: str, out: torch.Tensor) -> None:
    """Resize the NV12 ``batch`` by converting its whole planes to float32 for ``interpolate``,
    and write it as RGB into ``out`` [N, 3, h, w], ``FRAMES_PER_PASS`` frames at a time."""
    height, new_wh = batch.shape[1] * 2 // 3, (out.shape[3], out.shape[2])
    for start in range(0, batch.shape[0], FRAMES_PER_PASS):
        part = batch[start : start + FRAMES_PER_PASS]
        luma = _resize(part[:, :height].unsqueeze(1).float(), new_wh)
        chroma = _resize(_chroma(part, height), new_wh)
        target = out[start : start + len(part)]
        _yuv_to_rgb(luma[:, 0], chroma[:, 0], chroma[:, 1], color_space, target)


def letterbox_nv12(
    nv12: torch.Tensor | Sequence[torch.Tensor],
    size_wh: tuple[int, int],
    *,
    keep_aspect: bool = True,
    pad_value: int = 0,
    color_space: str = "bt601",
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Letterbox]:
    """NV12 pictures of one size, a batch ``[N, H * 3 / 2, W]`` or a sequence of N pictures
    ``[H * 3 / 2, W]`` (separate tensors, as decoders give them), resized into RGB canvases
    ``[N, 3, size_wh[1], size_wh[0]]`` filled with ``pad_value`` (the mux's letterbox); ``out``,
    when given, is written into.

    The resizing happens in YUV, before the conversion: Y from full resolution, U and V from
    half resolution straight to the output size (bilinear both, as ``interpolate(bilinear,
    align_corners=False, antialias=False)`` resizes the planes as float32; chroma sites taken at
    the centre of their 2 × 2 pixels), then the conversion runs at the output size. For a 1080p
    frame shrunk to 640×360 that is about a sixteenth of the memory traffic of converting first;
    the conversion being linear, only rounding and the chroma filter differ. Where the picture
    shrinks enough, only the samples the output needs are read from each picture, else the
    pictures are stacked and their planes converted whole (see the module's documentation).
    Returns the canvases and the :class:`Letterbox` from source pixels to canvas pixels.
    """
    batch, frames, width, height = _as_nv12_frames(nv12)
    count = len(frames)
    device = frames[0].device if batch is None else batch.device
    transform, new_wh, (x0, y0) = _placement((width, height), size_wh, keep_aspect)
    canvas = _canvas(out, count, size_wh, device)
    if new_wh != size_wh:
        canvas.fill_(int(pad_value))
    region = canvas[:, :, y0 : y0 + new_wh[1], x0 : x0 + new_wh[0]]
    if count == 0:
        return canvas, transform
    if new_wh != (width, height) and width * height >= _GATHER_MIN_SHRINK * new_wh[0] * new_wh[1]:
        taps = _nv12_taps((width, height), new_wh, device)
        _resize_gathering(batch, frames, taps, color_space, region)
        return canvas, transform
    whole = stack_images(frames) if batch is None else batch
    if new_wh == (width, height):
        nv12_to_rgb(whole, color_space, out=region)
    else:
        _resize_planes(whole, color_space, region)
    return canvas, transform


def letterbox(
    images: torch.Tensor,
    size_wh: tuple[int, int],
    *,
    keep_aspect: bool = True,
    pad_value: int = 0,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Letterbox]:
    """A batch of uint8 pictures of one size ``[N, 3, H, W]`` resized into canvases
    ``[N, 3, size_wh[1], size_wh[0]]`` filled with ``pad_value``, as the CPU mux does with
    :meth:`Letterbox.warp`. Returns the canvases and the :class:`Letterbox`."""
    if images.ndim != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
        raise ValueError(
            f"expected uint8 [N, 3, H, W], got shape {tuple(images.shape)} dtype {images.dtype}"
        )
    count, width, height = images.shape[0], images.shape[3], images.shape[2]
    transform, new_wh, (x0, y0) = _placement((width, height), size_wh, keep_aspect)
    canvas = _canvas(out, count, size_wh, images.device)
    if new_wh != size_wh:
        canvas.fill_(int(pad_value))
    region = canvas[:, :, y0 : y0 + new_wh[1], x0 : x0 + new_wh[0]]
    if new_wh == (width, height):
        region.copy_(images)
        return canvas, transform
    for start in range(0, count, FRAMES_PER_PASS):
        part = _resize(images[start : start + FRAMES_PER_PASS].float(), new_wh)
        region[start : start + len(part)].copy_(part.round_().clamp_(0.0, 255.0))
    return canvas, transform


def _batch_view(images: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """``images`` as one batch tensor without a copy, where they are consecutive views of one
    (the mux's batch tensor), else None."""
    first = images[0]
    step = first.numel() * first.element_size()
    storage = first.untyped_storage().data_ptr()
    if first.is_contiguous() and all(
        image.shape == first.shape
        and image.dtype == first.dtype
        and image.device == first.device
        and image.is_contiguous()
        and image.untyped_storage().data_ptr() == storage
        and image.data_ptr() == first.data_ptr() + index * step
        for index, image in enumerate(images)
    ):
        return first.as_strided((len(images), *first.shape), (first.numel(), *first.stride()))
    return None


def stack_images(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """``images`` (one shape, dtype and device) as one batch tensor: without a copy when they
    are consecutive views of one (the mux's batch tensor), else stacked."""
    batch = _batch_view(images)
    return torch.stack(list(images)) if batch is None else batch


def _groups(keys: Sequence[object]) -> list[list[int]]:
    """Indices of equal keys, in order of first appearance."""
    groups: dict[object, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    return list(groups.values())


def to_bgr_images(images: Sequence[torch.Tensor]) -> list[np.ndarray]:
    """Uint8 RGB tensors ``[3, H, W]`` to numpy HWC BGR arrays in host memory: the channel swap
    and transposition happen on the device, then one transfer per group of one size."""
    result: list[np.ndarray] = [np.empty(0, np.uint8)] * len(images)
    for indices in _groups([(str(image.device), tuple(image.shape)) for image in images]):
        batch = stack_images([images[i] for i in indices])
        host = batch.flip(1).permute(0, 2, 3, 1).contiguous().cpu().numpy()
        for position, index in enumerate(indices):
            result[index] = host[position]
    return result


def from_bgr_images(images: Sequence[np.ndarray], device: torch.device | str) -> list[torch.Tensor]:
    """Numpy HWC uint8 BGR arrays to uint8 RGB tensors ``[3, H, W]`` on ``device``: one
    transfer per group of one size; each tensor is a view into its group's batch tensor."""
    result: list[torch.Tensor] = [torch.empty(0)] * len(images)
    for indices in _groups([image.shape for image in images]):
        host = torch.from_numpy(np.stack([images[i] for i in indices]))
        batch = host.to(device).permute(0, 3, 1, 2).flip(1).contiguous()
        for position, index in enumerate(indices):
            result[index] = batch[position]
    return result
