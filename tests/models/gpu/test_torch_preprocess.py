"""Pre-processing in torch against the numpy / OpenCV path, on real frames and odd sizes."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest
import torch
from torch_gpu_helpers import DEVICES, device_or_skip

from panoptes.core.geometry import Letterbox
from panoptes.models.gpu.preprocess import TorchPreprocessor, resize_like_opencv
from panoptes.models.preprocess import Preprocessor, PreprocessSpec

SPECS = {
    # yolox: BGR 0..255, top-left pad 114
    "yolox": PreprocessSpec((416, 416), pad_position="top-left", pad_value=114.0),
    # ultralytics: RGB / 255, centred pad 114, not square
    "ultralytics": PreprocessSpec((640, 384), color_order="rgb", std=(255.0, 255.0, 255.0)),
    # nanodet: BGR, ImageNet mean / std, centred pad 0
    "nanodet": PreprocessSpec(
        (416, 416), pad_value=0.0, mean=(103.53, 116.28, 123.675), std=(57.375, 57.12, 58.395)
    ),
    # fastestdet: stretch, / 255
    "stretch": PreprocessSpec((352, 352), keep_ratio=False, std=(255.0, 255.0, 255.0)),
}


def _odd_frames() -> list[np.ndarray]:
    """Sizes that round differently: tall, tiny, wider than the input, exactly the input."""
    generator = np.random.default_rng(7)
    sizes = [(333, 101), (17, 9), (1000, 500), (416, 416)]
    return [generator.integers(0, 256, (h, w, 3), dtype=np.uint8) for w, h in sizes]


def _check_close(ours: torch.Tensor, theirs: np.ndarray, spec: PreprocessSpec) -> None:
    """Within one grey level (in the network's units) everywhere, and nearly always equal:
    enlarging a small frame, OpenCV rounds a few values its own way (up to 1.5% seen)."""
    difference = np.abs(ours.float().cpu().numpy() - theirs) * np.reshape(spec.std, (1, 3, 1, 1))
    assert difference.max() <= 1.001
    assert (difference > 1e-3).mean() < 0.02


@pytest.mark.parametrize("device_name", DEVICES)
@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_same_as_opencv_on_real_frames(
    spec_name: str, device_name: str, all_frames: list[np.ndarray]
) -> None:
    """Camera frames shrink into the network's input: the result is OpenCV's, exactly."""
    spec = SPECS[spec_name]
    theirs, their_boxes = Preprocessor(spec)(all_frames)
    ours, our_boxes = TorchPreprocessor(spec, device_or_skip(device_name))(all_frames)
    assert ours.shape == theirs.shape and ours.dtype == torch.float32
    assert our_boxes == their_boxes
    np.testing.assert_array_equal(ours.cpu().numpy(), theirs)


@pytest.mark.parametrize("device_name", DEVICES)
@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_close_to_opencv_on_odd_sizes(spec_name: str, device_name: str) -> None:
    spec = SPECS[spec_name]
    frames = _odd_frames()
    theirs, their_boxes = Preprocessor(spec)(frames)
    ours, our_boxes = TorchPreprocessor(spec, device_or_skip(device_name))(frames)
    assert our_boxes == their_boxes
    _check_close(ours, theirs, spec)


def test_resize_matches_opencv_at_whole_factors() -> None:
    generator = np.random.default_rng(3)
    for (width, height), size_wh in [((832, 832), (416, 416)), ((1248, 702), (416, 234))]:
        image = generator.integers(0, 256, (height, width, 3), dtype=np.uint8)
        expected = cv2.resize(image, size_wh, interpolation=cv2.INTER_LINEAR)
        ours = resize_like_opencv(torch.from_numpy(image).permute(2, 0, 1)[None], size_wh)
        np.testing.assert_array_equal(ours[0].permute(1, 2, 0).numpy(), expected)


@pytest.mark.parametrize("device_name", DEVICES)
def test_frames_as_tensors_in_either_layout(
    device_name: str, clip_frames: dict[str, list[np.ndarray]]
) -> None:
    device = device_or_skip(device_name)
    frames = clip_frames["one-by-one-person-detection.mp4"]
    spec = SPECS["ultralytics"]
    preprocessor = TorchPreprocessor(spec, device)
    expected = preprocessor(frames)[0].clone()
    hwc = [torch.from_numpy(frame).to(device) for frame in frames]
    stacked = torch.stack(hwc)
    chw_rgb = stacked.flip(3).permute(0, 3, 1, 2).contiguous()
    inputs: list[tuple[Any, str]] = [
        (hwc, "hwc-bgr"),
        (stacked, "hwc-bgr"),
        (chw_rgb, "chw-rgb"),
        (list(chw_rgb), "chw-rgb"),
    ]
    for images, layout in inputs:
        batch, _ = preprocessor(images, layout=layout)  # type: ignore[arg-type]
        torch.testing.assert_close(batch, expected, rtol=0, atol=0)


def test_half_precision_output_for_an_fp16_model() -> None:
    spec = SPECS["yolox"]
    frame = _odd_frames()[0]
    batch, _ = TorchPreprocessor(spec, torch.device("cpu"), torch.float16)([frame])
    assert batch.dtype == torch.float16
    _check_close(batch, Preprocessor(spec)([frame])[0], spec)


def test_mixed_sizes_keep_their_order() -> None:
    spec = SPECS["yolox"]
    frames = _odd_frames()
    frames = [frames[0], frames[2], frames[0], frames[1]]  # two of one size, apart
    theirs, their_boxes = Preprocessor(spec)(frames)
    ours, our_boxes = TorchPreprocessor(spec, torch.device("cpu"))(frames)
    assert our_boxes == their_boxes
    _check_close(ours, theirs, spec)


def _at_network_size(frames: list[np.ndarray], spec: PreprocessSpec) -> list[np.ndarray]:
    return [cv2.resize(frame, spec.input_size_wh, interpolation=cv2.INTER_AREA) for frame in frames]


@pytest.mark.parametrize("device_name", DEVICES)
@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_frames_at_the_network_size_as_the_gpu_mux_gives_them(
    spec_name: str, device_name: str, all_frames: list[np.ndarray]
) -> None:
    """Frames already at the network's size (the GPU mux letterboxes) skip the canvas: the
    result is still the CPU path's, exactly, however they come, and into ``out`` when given."""
    device = device_or_skip(device_name)
    spec = SPECS[spec_name]
    frames = _at_network_size(all_frames, spec)
    theirs, their_boxes = Preprocessor(spec)(frames)
    assert their_boxes == [Letterbox()] * len(frames)
    preprocessor = TorchPreprocessor(spec, device)
    stacked = torch.stack([torch.from_numpy(frame) for frame in frames]).to(device)
    rgb_batch = stacked.flip(3).permute(0, 3, 1, 2).contiguous()
    inputs: list[tuple[Any, str]] = [
        (frames, "hwc-bgr"),
        (list(rgb_batch), "chw-rgb"),  # views of one batch, as the mux hands them on
        ([image.clone() for image in rgb_batch], "chw-rgb"),  # separate tensors
        (list(rgb_batch)[::-1], "chw-rgb"),  # views, out of order
    ]
    for images, layout in inputs:
        ours, our_boxes = preprocessor(images, layout=layout)
        assert our_boxes == their_boxes
        expected = theirs[::-1] if images is inputs[-1][0] else theirs
        np.testing.assert_array_equal(ours.cpu().numpy(), expected)
    out = torch.full_like(ours, -1.0)
    returned, _ = preprocessor(list(rgb_batch), layout="chw-rgb", out=out)
    assert returned is out
    np.testing.assert_array_equal(out.cpu().numpy(), theirs)
    assert preprocessor._canvas.numel() == 0  # never needed: no float canvas, no padding


def test_half_precision_at_the_network_size() -> None:
    spec = SPECS["nanodet"]
    frames = _at_network_size(_odd_frames(), spec)
    full, _ = TorchPreprocessor(spec, torch.device("cpu"))(frames)
    half, _ = TorchPreprocessor(spec, torch.device("cpu"), torch.float16)(frames)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half, full.half(), rtol=0, atol=0)


def test_out_of_another_shape_or_type_is_refused() -> None:
    spec = SPECS["yolox"]
    frames = _odd_frames()
    preprocessor = TorchPreprocessor(spec, torch.device("cpu"))
    for out in (torch.empty((3, 3, 416, 416)), torch.empty((4, 3, 416, 416), dtype=torch.half)):
        with pytest.raises(ValueError, match=r"out must be a torch.float32 tensor \[4, 3, 416"):
            preprocessor(frames, out=out)
    out = torch.empty((4, 3, 416, 416))
    returned, _ = preprocessor(frames, out=out)  # the canvas path, into out as well
    assert returned is out
    np.testing.assert_array_equal(out.numpy(), preprocessor(frames)[0].numpy())


@pytest.mark.parametrize(
    ("image", "layout", "words"),
    [
        (np.zeros((10, 10), np.uint8), "hwc-bgr", "uint8 \\[H, W, 3\\]"),
        (np.zeros((10, 10, 3), np.float32), "hwc-bgr", "dtype torch.float32"),
        (torch.zeros((10, 10, 3), dtype=torch.uint8), "chw-rgb", "uint8 \\[3, H, W\\]"),
    ],
)
def test_refuses_what_is_not_a_uint8_image(image: Any, layout: str, words: str) -> None:
    preprocessor = TorchPreprocessor(SPECS["yolox"], torch.device("cpu"))
    with pytest.raises(ValueError, match=f"image 0: .*{words}"):
        preprocessor([image], layout=layout)  # type: ignore[arg-type]
