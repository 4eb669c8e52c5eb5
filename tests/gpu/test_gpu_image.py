"""NV12 to RGB and letterboxing in torch, against OpenCV and the CPU mux, on real frames."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from software_decoding import ONE_BY_ONE, PARKING, RETAIL, clip_frames, i420_to_nv12

from panoptes.core.geometry import Letterbox
from panoptes.media import gpu_image

CLIPS = {"one-by-one": (ONE_BY_ONE, [0, 275]), "parking": (PARKING, [40]), "retail": (RETAIL, [90])}


@pytest.fixture(scope="module")
def frames(videos: None) -> dict[str, list[av.VideoFrame]]:
    return {name: clip_frames(path, indices) for name, (path, indices) in CLIPS.items()}


def bgr_of(rgb: torch.Tensor) -> np.ndarray:
    return rgb.permute(1, 2, 0).flip(2).numpy()


def rgb_of(bgr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1])).permute(2, 0, 1)


@pytest.mark.parametrize("clip", list(CLIPS))
def test_nv12_to_bgr_matches_opencv(frames: dict[str, list[av.VideoFrame]], clip: str) -> None:
    for frame in frames[clip]:
        bgr = frame.to_ndarray(format="bgr24")
        height, width = bgr.shape[:2]
        # NV12 made by OpenCV from a real frame, and OpenCV's own conversion back as reference.
        nv12 = i420_to_nv12(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420), (width, height))
        expected = cv2.cvtColor(nv12, cv2.COLOR_YUV2BGR_NV12)
        rgb = gpu_image.nv12_to_rgb(torch.from_numpy(nv12))
        assert rgb.shape == (3, height, width) and rgb.dtype == torch.uint8
        difference = np.abs(bgr_of(rgb).astype(int) - expected.astype(int))
        assert difference.max() <= 2, f"{clip}: off by {difference.max()} grey levels"


def test_a_batch_converts_as_its_frames_do(frames: dict[str, list[av.VideoFrame]]) -> None:
    nv12 = torch.stack(
        [torch.from_numpy(f.to_ndarray(format="nv12")) for f in frames["one-by-one"]]
    )
    batch = gpu_image.nv12_to_rgb(nv12, "bt601")
    assert batch.shape == (2, 3, 432, 768)
    for index in range(2):
        assert torch.equal(batch[index], gpu_image.nv12_to_rgb(nv12[index], "bt601"))


@pytest.mark.parametrize(
    ("color_space", "colorspace", "color_range"),
    [("bt601", 6, 1), ("bt709", 1, 1), ("bt601-full", 6, 2), ("bt709-full", 1, 2)],
)
def test_color_spaces_match_what_the_cpu_path_does(
    frames: dict[str, list[av.VideoFrame]], color_space: str, colorspace: int, color_range: int
) -> None:
    """The CPU path's swscale honours the stream's matrix and range: so do the tensors."""
    frame = frames["parking"][0]
    assert gpu_image.color_space_name(colorspace, color_range) == color_space
    nv12 = frame.to_ndarray(format="nv12")
    tagged = av.VideoFrame.from_ndarray(nv12, format="nv12")
    tagged.colorspace, tagged.color_range = colorspace, color_range
    expected = tagged.to_ndarray(format="bgr24")
    ours = bgr_of(gpu_image.nv12_to_rgb(torch.from_numpy(nv12), color_space))
    difference = np.abs(ours.astype(int) - expected.astype(int))
    # swscale interpolates chroma where this repeats it: a few pixels at colour edges differ.
    assert difference.mean() < 1.0 and np.percentile(difference, 99) <= 3


def test_unknown_color_space_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown colour space 'bt999'"):
        gpu_image.nv12_to_rgb(torch.zeros((6, 4), dtype=torch.uint8), "bt999")


@pytest.mark.parametrize(
    ("size_wh", "keep_aspect"),
    [((640, 640), True), ((640, 360), True), ((500, 300), False), ((1280, 720), True)],
)
def test_letterbox_matches_the_cpu_mux_warp(
    frames: dict[str, list[av.VideoFrame]], size_wh: tuple[int, int], keep_aspect: bool
) -> None:
    """Same pixels in: the same placement, and values within one grey level (float32 against
    OpenCV's 11-bit fixed-point bilinear weights)."""
    images = [f.to_ndarray(format="bgr24") for f in frames["one-by-one"]]
    batch = torch.stack([rgb_of(image) for image in images])
    canvases, transform = gpu_image.letterbox(
        batch, size_wh, keep_aspect=keep_aspect, pad_value=114
    )
    assert canvases.shape == (2, 3, size_wh[1], size_wh[0])
    assert transform == Letterbox.fit((768, 432), size_wh, keep_ratio=keep_aspect)
    for image, canvas in zip(images, canvases, strict=True):
        expected = transform.warp(image, size_wh, pad_value=114)
        difference = np.abs(bgr_of(canvas).astype(int) - expected.astype(int))
        assert difference.max() <= 1


@pytest.mark.parametrize("clip", ["parking", "retail"])
@pytest.mark.parametrize(("size_wh", "keep_aspect"), [((640, 640), True), ((500, 300), False)])
def test_nv12_letterbox_is_close_to_the_cpu_mux(
    frames: dict[str, list[av.VideoFrame]], clip: str, size_wh: tuple[int, int], keep_aspect: bool
) -> None:
    """The GPU mux (NV12 resized in YUV, then converted) against the CPU mux (swscale's BGR,
    then OpenCV's resize) on the same decoded frame: the same placement; values close on the
    whole (mean under 1.5 grey levels, 99% within 5), further apart at sharp colour edges,
    where swscale's chroma filter and the resize of half-resolution chroma differ."""
    frame = frames[clip][0]
    nv12 = torch.from_numpy(frame.to_ndarray(format="nv12"))[None]
    canvases, transform = gpu_image.letterbox_nv12(
        nv12, size_wh, keep_aspect=keep_aspect, pad_value=114, color_space="bt601"
    )
    assert transform == Letterbox.fit((frame.width, frame.height), size_wh, keep_ratio=keep_aspect)
    expected = transform.warp(frame.to_ndarray(format="bgr24"), size_wh, pad_value=114)
    difference = np.abs(bgr_of(canvases[0]).astype(int) - expected.astype(int))
    assert difference.mean() < 1.5 and np.percentile(difference, 99) <= 5
    if keep_aspect:  # the padding is exactly the pad value, where the CPU mux puts it
        rows = np.flatnonzero((expected != 114).any(axis=(1, 2)))
        assert (bgr_of(canvases[0])[: rows[0]] == 114).all()


def test_nv12_letterbox_at_the_source_size_only_converts(
    frames: dict[str, list[av.VideoFrame]],
) -> None:
    nv12 = torch.from_numpy(frames["parking"][0].to_ndarray(format="nv12"))
    canvases, transform = gpu_image.letterbox_nv12(nv12[None], (768, 432))
    assert transform == Letterbox.fit((768, 432), (768, 432))
    assert torch.equal(canvases[0], gpu_image.nv12_to_rgb(nv12))


def test_images_go_to_numpy_bgr_and_back(frames: dict[str, list[av.VideoFrame]]) -> None:
    images = [f.to_ndarray(format="bgr24") for f in [*frames["one-by-one"], *frames["retail"]]]
    tensors = gpu_image.from_bgr_images(images, "cpu")
    assert [tuple(t.shape) for t in tensors] == [(3, 432, 768)] * 2 + [(3, 1080, 1920)]
    assert torch.equal(tensors[0], rgb_of(images[0]))
    back = gpu_image.to_bgr_images(tensors)
    assert all(np.array_equal(a, b) for a, b in zip(images, back, strict=True))


def test_views_of_one_batch_stack_without_a_copy() -> None:
    batch = torch.arange(2 * 3 * 4 * 5, dtype=torch.uint8).reshape(2, 3, 4, 5)
    stacked = gpu_image.stack_images([batch[0], batch[1]])
    assert stacked.data_ptr() == batch.data_ptr() and torch.equal(stacked, batch)
    reordered = gpu_image.stack_images([batch[1], batch[0]])
    assert reordered.data_ptr() != batch.data_ptr() and torch.equal(reordered[0], batch[1])


def letterbox_nv12_by_interpolate(
    nv12: torch.Tensor, size_wh: tuple[int, int], *, keep_aspect: bool, pad_value: int
) -> torch.Tensor:
    """The reference: whole NV12 planes [N, H * 3 / 2, W] as float32, luma and the
    half-resolution chroma each resized by ``interpolate`` to the letterbox, then converted."""
    count, rows, width = nv12.shape
    height = rows * 2 // 3
    transform = Letterbox.fit((width, height), size_wh, keep_ratio=keep_aspect)
    new_w = min(size_wh[0], max(1, round(width * transform.scale_xy[0])))
    new_h = min(size_wh[1], max(1, round(height * transform.scale_xy[1])))
    x0, y0 = int(transform.pad_xy[0]), int(transform.pad_xy[1])
    canvas = torch.full((count, 3, size_wh[1], size_wh[0]), pad_value, dtype=torch.uint8)

    def resize(planes: torch.Tensor) -> torch.Tensor:
        return F.interpolate(
            planes, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=False
        )

    luma = resize(nv12[:, :height].unsqueeze(1).float())
    uv = nv12[:, height:].reshape(count, height // 2, width // 2, 2).permute(0, 3, 1, 2)
    chroma = resize(uv.float())
    region = canvas[:, :, y0 : y0 + new_h, x0 : x0 + new_w]
    gpu_image._yuv_to_rgb(luma[:, 0], chroma[:, 0], chroma[:, 1], "bt601", region)
    return canvas


def nv12_of(frames: list[av.VideoFrame]) -> list[torch.Tensor]:
    return [torch.from_numpy(frame.to_ndarray(format="nv12")) for frame in frames]


@pytest.fixture(params=["gathering", "planes"])
def resize_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each of the NV12 letterbox's ways to resize, whatever the sizes: gathering the taps, or
    converting whole planes."""
    shrink = 0 if request.param == "gathering" else 10**9
    monkeypatch.setattr(gpu_image, "_GATHER_MIN_SHRINK", shrink)
    return str(request.param)


@pytest.mark.parametrize(
    ("clip", "size_wh", "keep_aspect"),
    [
        ("retail", (416, 416), True),  # 1080p shrunk, as the detector takes it
        ("retail", (640, 640), True),
        ("retail", (500, 300), False),  # stretched
        ("retail", (417, 301), False),  # odd sizes: chroma taps of odd output columns, rows
        ("one-by-one", (1280, 1280), True),  # enlarged
        ("parking", (1000, 600), False),  # enlarged, stretched
        ("parking", (768, 300), False),  # one side kept: a copy along it
    ],
)
def test_nv12_letterbox_resizes_as_interpolate_does(
    frames: dict[str, list[av.VideoFrame]],
    resize_path: str,
    clip: str,
    size_wh: tuple[int, int],
    keep_aspect: bool,
) -> None:
    """Gathering the taps reads what ``interpolate`` reads on whole float planes and weighs it
    alike: the same values but for float rounding, an odd grey level apart."""
    pictures = nv12_of(frames[clip])
    canvases, transform = gpu_image.letterbox_nv12(
        pictures, size_wh, keep_aspect=keep_aspect, pad_value=114
    )
    width, height = frames[clip][0].width, frames[clip][0].height
    assert transform == Letterbox.fit((width, height), size_wh, keep_ratio=keep_aspect)
    expected = letterbox_nv12_by_interpolate(
        torch.stack(pictures), size_wh, keep_aspect=keep_aspect, pad_value=114
    )
    assert canvases.shape == expected.shape and canvases.dtype == torch.uint8
    difference = (canvases.int() - expected.int()).abs()
    assert difference.max() <= 1
    assert (difference == 0).float().mean() >= 0.999


@pytest.mark.parametrize(("size_wh", "gathers"), [((416, 416), True), ((640, 640), False)])
def test_nv12_letterbox_gathers_taps_where_the_picture_shrinks_enough(
    frames: dict[str, list[av.VideoFrame]],
    monkeypatch: pytest.MonkeyPatch,
    size_wh: tuple[int, int],
    gathers: bool,
) -> None:
    """1080p into 416 × 416 is a shrink of 21 in area, into 640 × 640 of 9."""

    def other_path(*args: object) -> None:
        raise AssertionError("resized the other way")

    monkeypatch.setattr(gpu_image, "_resize_planes" if gathers else "_resize_gathering", other_path)
    gpu_image.letterbox_nv12(nv12_of(frames["retail"]), size_wh)


def test_nv12_letterbox_of_pictures_is_that_of_their_batch(
    frames: dict[str, list[av.VideoFrame]], monkeypatch: pytest.MonkeyPatch, resize_path: str
) -> None:
    """Separate pictures, their stacked batch, views of one batch, one frame per pass or all at
    once, into a new canvas or into the rows of a larger one: the same canvases."""
    pictures = nv12_of([*frames["one-by-one"], *frames["parking"]])
    batch = torch.stack(pictures)

    def letterbox(
        nv12: torch.Tensor | list[torch.Tensor], out: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Letterbox]:
        return gpu_image.letterbox_nv12(nv12, (416, 416), pad_value=114, out=out)

    expected, transform = letterbox(batch)
    separate, separate_transform = letterbox(pictures)
    assert separate_transform == transform and torch.equal(separate, expected)
    assert torch.equal(letterbox(list(batch))[0], expected)
    larger = torch.zeros((5, 3, 416, 416), dtype=torch.uint8)
    canvases, _ = letterbox(pictures, out=larger[1:4])
    assert canvases.data_ptr() == larger[1].data_ptr() and torch.equal(larger[1:4], expected)
    assert not larger[0].any() and not larger[4].any()
    monkeypatch.setattr(gpu_image, "_GATHER_BYTES_PER_PASS", 1)
    monkeypatch.setattr(gpu_image, "FRAMES_PER_PASS", 1)
    assert torch.equal(letterbox(pictures)[0], expected)
    assert torch.equal(letterbox(batch)[0], expected)


def test_nv12_letterbox_of_pictures_at_the_source_size_only_converts(
    frames: dict[str, list[av.VideoFrame]],
) -> None:
    pictures = nv12_of(frames["one-by-one"])
    canvases, _ = gpu_image.letterbox_nv12(pictures, (768, 432))
    assert torch.equal(canvases, gpu_image.nv12_to_rgb(torch.stack(pictures)))


def test_nv12_letterbox_refuses_pictures_of_different_sizes() -> None:
    pictures = [torch.zeros((6, 4), dtype=torch.uint8), torch.zeros((12, 8), dtype=torch.uint8)]
    with pytest.raises(ValueError, match="of one size"):
        gpu_image.letterbox_nv12(pictures, (8, 8))
    with pytest.raises(ValueError, match="got none"):
        gpu_image.letterbox_nv12([], (8, 8))
