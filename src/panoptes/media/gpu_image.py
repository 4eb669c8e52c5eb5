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
"""

from __future__ import annotations

from collections.abc import Sequence

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


def letterbox_nv12(
    nv12: torch.Tensor,
    size_wh: tuple[int, int],
    *,
    keep_aspect: bool = True,
    pad_value: int = 0,
    color_space: str = "bt601",
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Letterbox]:
    """A batch of NV12 pictures of one size ``[N, H * 3 / 2, W]`` resized into RGB canvases
    ``[N, 3, size_wh[1], size_wh[0]]`` filled with ``pad_value`` (the mux's letterbox).

    The resizing happens in YUV, before the conversion: Y from full resolution, U and V from
    half resolution straight to the output size (bilinear both; chroma sites taken at the centre
    of their 2 × 2 pixels), then the conversion runs at the output size. For a 1080p frame shrunk
    to 640×360 that is about a sixteenth of the memory traffic of converting first; the
    conversion being linear, only rounding and the chroma filter differ. Returns the canvases
    and the :class:`Letterbox` from source pixels to canvas pixels.
    """
    batch, width, height = _as_nv12_batch(nv12)
    count = batch.shape[0]
    transform, new_wh, (x0, y0) = _placement((width, height), size_wh, keep_aspect)
    canvas = _canvas(out, count, size_wh, batch.device)
    if new_wh != size_wh:
        canvas.fill_(int(pad_value))
    region = canvas[:, :, y0 : y0 + new_wh[1], x0 : x0 + new_wh[0]]
    if new_wh == (width, height):
        nv12_to_rgb(batch, color_space, out=region)
        return canvas, transform
    for start in range(0, count, FRAMES_PER_PASS):
        part = batch[start : start + FRAMES_PER_PASS]
        luma = _resize(part[:, :height].unsqueeze(1).float(), new_wh)
        chroma = _resize(_chroma(part, height), new_wh)
        target = region[start : start + len(part)]
        _yuv_to_rgb(luma[:, 0], chroma[:, 0], chroma[:, 1], color_space, target)
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


def stack_images(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """``images`` (one shape, dtype and device) as one batch tensor: without a copy when they
    are consecutive views of one (the mux's batch tensor), else stacked."""
    first = images[0]
    step = first.numel() * first.element_size()
    storage = first.untyped_storage().data_ptr()
    if first.is_contiguous() and all(
        image.shape == first.shape
        and image.dtype == first.dtype
        and image.is_contiguous()
        and image.untyped_storage().data_ptr() == storage
        and image.data_ptr() == first.data_ptr() + index * step
        for index, image in enumerate(images)
    ):
        return first.as_strided((len(images), *first.shape), (first.numel(), *first.stride()))
    return torch.stack(list(images))


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
