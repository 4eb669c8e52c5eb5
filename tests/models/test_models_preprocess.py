"""PreprocessSpec and preprocess_batch on small synthetic frames."""

from __future__ import annotations

import numpy as np
import pytest

from panoptes.core.errors import ConfigError
from panoptes.core.geometry import Letterbox
from panoptes.models.preprocess import Preprocessor, PreprocessSpec, preprocess_batch

BGR = (10, 20, 30)


def _frame(width: int, height: int, bgr: tuple[int, int, int] = BGR) -> np.ndarray:
    frame = np.empty((height, width, 3), np.uint8)
    frame[...] = bgr
    return frame


def test_spec_normalises_values_from_config() -> None:
    spec = PreprocessSpec([64, 32], mean=[1, 2, 3], std=[4, 5, 6], pad_value=0)  # type: ignore[arg-type]
    assert spec.input_size_wh == (64, 32)
    assert spec.mean == (1.0, 2.0, 3.0) and spec.std == (4.0, 5.0, 6.0)
    assert spec.replace(color_order="rgb").color_order == "rgb"
    assert spec.replace(color_order="rgb").input_size_wh == (64, 32)


@pytest.mark.parametrize(
    ("changes", "place"),
    [
        ({"std": (1.0, 0.0, 1.0)}, "preprocess.std"),
        ({"mean": (1.0, 2.0)}, "preprocess.mean"),
        ({"input_size_wh": (0, 32)}, "preprocess.input_size_wh"),
        ({"pad_position": "bottom"}, "preprocess.pad_position"),
        ({"color_order": "yuv"}, "preprocess.color_order"),
        ({"scale": 2.0}, "preprocess"),
    ],
)
def test_spec_rejects_bad_values(changes: dict[str, object], place: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PreprocessSpec((64, 64)).replace(**changes)
    assert caught.value.place == place


def test_top_left_letterbox_bgr_unscaled() -> None:
    spec = PreprocessSpec((64, 64), pad_position="top-left", pad_value=114.0)
    batch, letterboxes = preprocess_batch([_frame(200, 100)], spec)
    assert batch.shape == (1, 3, 64, 64) and batch.dtype == np.float32
    assert letterboxes == [Letterbox((0.32, 0.32), (0.0, 0.0))]
    # 200×100 -> 64×32 at the top; below it, padding.
    expected = np.broadcast_to(np.array(BGR, np.float32)[:, None, None], (3, 32, 64))
    np.testing.assert_array_equal(batch[0, :, :32, :], expected)
    assert np.all(batch[0, :, 32:, :] == 114.0)


def test_centred_rgb_unit_scale() -> None:
    spec = PreprocessSpec((64, 64), color_order="rgb", std=(255.0, 255.0, 255.0))
    batch, (letterbox,) = preprocess_batch([_frame(200, 100)], spec)
    assert letterbox.pad_xy == (0.0, 16.0)
    np.testing.assert_allclose(batch[0, :, 32, 10], np.array(BGR[::-1]) / 255.0, rtol=1e-6)
    np.testing.assert_allclose(batch[0, :, 0, 0], 114.0 / 255.0, rtol=1e-6)
    np.testing.assert_allclose(batch[0, :, 63, 0], 114.0 / 255.0, rtol=1e-6)


def test_mean_and_std_apply_per_channel_in_model_order() -> None:
    mean, std = (103.53, 116.28, 123.675), (57.375, 57.12, 58.395)
    spec = PreprocessSpec((32, 32), mean=mean, std=std, pad_value=0.0)
    batch, _ = preprocess_batch([_frame(32, 32)], spec)
    expected = (np.array(BGR) - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(batch[0, :, 5, 5], expected, rtol=1e-5)
    rgb, _ = preprocess_batch([_frame(32, 32)], spec.replace(color_order="rgb"))
    expected_rgb = (np.array(BGR[::-1]) - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(rgb[0, :, 5, 5], expected_rgb, rtol=1e-5)


def test_stretch_fills_the_whole_input() -> None:
    spec = PreprocessSpec((64, 48), keep_ratio=False)
    batch, (letterbox,) = preprocess_batch([_frame(200, 100)], spec)
    assert batch.shape == (1, 3, 48, 64)
    assert letterbox.scale_xy == (0.32, 0.48) and letterbox.pad_xy == (0.0, 0.0)
    np.testing.assert_array_equal(batch[0, :, 20, 30], BGR)


def test_batch_of_mixed_sizes_matches_one_by_one() -> None:
    rng = np.random.default_rng(0)
    frames = [
        rng.integers(0, 256, (100, 200, 3), dtype=np.uint8),
        rng.integers(0, 256, (90, 60, 3), dtype=np.uint8),
    ]
    spec = PreprocessSpec((64, 64), color_order="rgb", std=(255.0, 255.0, 255.0))
    batch, letterboxes = preprocess_batch(frames, spec)
    for index, frame in enumerate(frames):
        single, (letterbox,) = preprocess_batch([frame], spec)
        np.testing.assert_array_equal(batch[index], single[0])
        assert letterboxes[index] == letterbox


def test_out_is_filled_in_place_and_buffers_are_reused() -> None:
    spec = PreprocessSpec((32, 32))
    out = np.zeros((2, 3, 32, 32), np.float32)
    batch, _ = preprocess_batch([_frame(32, 32), _frame(32, 32, (1, 2, 3))], spec, out=out)
    assert batch is out
    np.testing.assert_array_equal(out[1, :, 0, 0], (1, 2, 3))
    preprocessor = Preprocessor(spec)
    first, _ = preprocessor([_frame(32, 32)])
    second, _ = preprocessor([_frame(32, 32, (1, 2, 3))])
    assert np.shares_memory(first, second)  # no allocation per frame


@pytest.mark.parametrize(
    "image",
    [np.zeros((32, 32), np.uint8), np.zeros((32, 32, 4), np.uint8), np.zeros((32, 32, 3))],
    ids=["gray", "bgra", "float"],
)
def test_rejects_what_is_not_bgr_uint8(image: np.ndarray) -> None:
    with pytest.raises(ValueError, match="BGR HWC uint8"):
        preprocess_batch([image], PreprocessSpec((32, 32)))
