"""Each built-in parser on hand-made raw outputs with a known box."""

from __future__ import annotations

import math

import numpy as np
import pytest

from panoptes.core.errors import ModelError
from panoptes.models.parsers import (
    PARSERS,
    Candidates,
    ParserContext,
    default_preprocess,
    parse_end2end,
    parse_fastestdet,
    parse_nanodet,
    parse_ultralytics,
    parse_yolov5,
    parse_yolox,
    resolve_parser,
)

INPUT_WH = (64, 64)  # 8×8 + 4×4 + 2×2 = 84 cells at strides 8, 16, 32


def _context(**changes: object) -> ParserContext:
    fields: dict[str, object] = {"input_size_wh": INPUT_WH, "min_confidence": 0.25}
    fields.update(changes)
    return ParserContext(**fields)  # type: ignore[arg-type]


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def test_yolox_decodes_one_cell() -> None:
    rows = np.zeros((2, 84, 5 + 3), np.float32)
    # Image 0: stride 16, cell (gx=1, gy=2) -> row 64 + 2·4 + 1.
    rows[0, 73, :5] = [0.5, 0.25, math.log(2.0), math.log(3.0), 0.9]
    rows[0, 73, 5:] = [0.1, 0.2, 0.8]
    # Image 1: stride 8, cell (gx=3, gy=0), too weak once objectness × class.
    rows[1, 3, :5] = [0.0, 0.0, 0.0, 0.0, 0.4]
    rows[1, 3, 5:] = [0.5, 0.0, 0.0]
    first, second = parse_yolox({"output": rows}, _context())
    # centre ((0.5 + 1)·16, (0.25 + 2)·16) = (24, 36), size (2·16, 3·16) = (32, 48)
    np.testing.assert_allclose(first.xyxy, [[8.0, 12.0, 40.0, 60.0]], rtol=1e-6)
    np.testing.assert_allclose(first.confidence, [0.72], rtol=1e-6)
    assert first.class_id.tolist() == [2] and first.class_id.dtype == np.int32
    assert first.xyxy.dtype == np.float32 and not first.nms_done
    assert len(second) == 0  # 0.4 × 0.5 = 0.2 < 0.25


def test_yolox_refuses_a_row_count_that_is_not_the_grid() -> None:
    with pytest.raises(ModelError, match="84 cells"):
        parse_yolox({"output": np.zeros((1, 80, 6), np.float32)}, _context())


def test_yolov5_rows_are_decoded_centre_size() -> None:
    rows = np.zeros((1, 10, 5 + 2), np.float32)
    rows[0, 4] = [50.0, 60.0, 20.0, 10.0, 0.9, 0.1, 0.7]
    (candidates,) = parse_yolov5({"output0": rows}, _context())
    np.testing.assert_allclose(candidates.xyxy, [[40.0, 55.0, 60.0, 65.0]])
    np.testing.assert_allclose(candidates.confidence, [0.63], rtol=1e-6)
    assert candidates.class_id.tolist() == [1]


def test_ultralytics_transposes_columns() -> None:
    columns = np.zeros((1, 4 + 3, 10), np.float32)
    columns[0, :, 7] = [50.0, 60.0, 20.0, 10.0, 0.1, 0.2, 0.9]
    columns[0, :, 2] = [10.0, 10.0, 4.0, 4.0, 0.2, 0.1, 0.0]  # below 0.25
    (candidates,) = parse_ultralytics({"output0": columns}, _context())
    np.testing.assert_allclose(candidates.xyxy, [[40.0, 55.0, 60.0, 65.0]])
    np.testing.assert_allclose(candidates.confidence, [0.9])
    assert candidates.class_id.tolist() == [2] and candidates.keypoints is None


def test_ultralytics_pose_keypoints_from_metadata() -> None:
    columns = np.zeros((1, 4 + 1 + 2 * 3, 5), np.float32)
    columns[0, :, 1] = [30.0, 30.0, 10.0, 20.0, 0.8, 28.0, 24.0, 0.9, 33.0, 36.0, 0.1]
    metadata = {"task": "pose", "kpt_shape": "[2, 3]", "names": "{0: 'person'}"}
    (candidates,) = parse_ultralytics({"output0": columns}, _context(metadata=metadata))
    np.testing.assert_allclose(candidates.xyxy, [[25.0, 20.0, 35.0, 40.0]])
    assert candidates.keypoints is not None
    np.testing.assert_allclose(candidates.keypoints, [[[28.0, 24.0, 0.9], [33.0, 36.0, 0.1]]])


def test_ultralytics_two_value_keypoints_get_full_visibility() -> None:
    columns = np.zeros((1, 4 + 1 + 2, 3), np.float32)
    columns[0, :, 0] = [30.0, 30.0, 10.0, 20.0, 0.8, 28.0, 24.0]
    metadata = {"task": "pose", "kpt_shape": "[1, 2]"}
    (candidates,) = parse_ultralytics({"output0": columns}, _context(metadata=metadata))
    assert candidates.keypoints is not None
    np.testing.assert_allclose(candidates.keypoints, [[[28.0, 24.0, 1.0]]])


def test_end2end_four_outputs() -> None:
    boxes = np.zeros((2, 5, 4), np.float32)
    boxes[0, :3] = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
    boxes[1, 0] = [1, 1, 2, 2]  # beyond num_dets: ignored
    scores = np.zeros((2, 5), np.float32)
    scores[0, :3] = [0.9, 0.1, 0.5]
    scores[1, 0] = 0.9
    classes = np.zeros((2, 5), np.int32)
    classes[0, :3] = [3, 4, 5]
    outputs = {
        "num_dets": np.array([[3], [0]], np.int32),
        "det_boxes": boxes,
        "det_scores": scores,
        "det_classes": classes,
    }
    first, second = parse_end2end(outputs, _context(output_names=tuple(outputs)))
    np.testing.assert_allclose(first.xyxy, [[1, 2, 3, 4], [9, 10, 11, 12]])
    np.testing.assert_allclose(first.confidence, [0.9, 0.5])
    assert first.class_id.tolist() == [3, 5]
    assert first.nms_done and second.nms_done and len(second) == 0


def test_end2end_single_output_rows() -> None:
    rows = np.zeros((1, 100, 6), np.float32)
    rows[0, 0] = [10, 20, 30, 40, 0.8, 7]
    rows[0, 1] = [11, 21, 31, 41, 0.1, 2]
    (candidates,) = parse_end2end({"output0": rows}, _context(output_names=("output0",)))
    np.testing.assert_allclose(candidates.xyxy, [[10, 20, 30, 40]])
    assert candidates.class_id.tolist() == [7] and candidates.nms_done


def test_end2end_rows_per_cell_still_need_nms() -> None:
    # DeepStream-Yolo's export: one decoded row per grid cell, nothing suppressed yet.
    rows = np.zeros((1, 84, 6), np.float32)
    rows[0, 0] = [10, 20, 30, 40, 0.8, 7]
    (candidates,) = parse_end2end({"output": rows}, _context())
    assert len(candidates) == 1 and not candidates.nms_done


def _nanodet_outputs(num_classes: int = 6) -> dict[str, np.ndarray]:
    outputs = {}
    for stride, cells in ((8, 64), (16, 16), (32, 4)):
        outputs[f"cls_pred_stride_{stride}"] = np.zeros((1, cells, num_classes), np.float32)
        outputs[f"dis_pred_stride_{stride}"] = np.zeros((1, cells, 32), np.float32)
    return outputs


def test_nanodet_distances_from_the_cell_centre() -> None:
    outputs = _nanodet_outputs()
    outputs["cls_pred_stride_16"][0, 1, 5] = 0.8  # cell (gx=1, gy=0)
    logits = np.zeros((4, 8), np.float32)
    for side, bin_index in enumerate((2, 1, 3, 0)):  # left, top, right, bottom in bins
        logits[side, bin_index] = 50.0  # a softmax that is all but one-hot
    outputs["dis_pred_stride_16"][0, 1] = logits.ravel()
    (candidates,) = parse_nanodet(outputs, _context())
    # centre ((1 + 0.5)·16, (0 + 0.5)·16) = (24, 8); distances (32, 16, 48, 0)
    np.testing.assert_allclose(candidates.xyxy, [[-8.0, -8.0, 72.0, 8.0]], atol=1e-4)
    np.testing.assert_allclose(candidates.confidence, [0.8])
    assert candidates.class_id.tolist() == [5]


def test_nanodet_flat_distribution_is_its_mean() -> None:
    outputs = _nanodet_outputs()
    outputs["cls_pred_stride_32"][0, 3, 0] = 0.5  # cell (gx=1, gy=1)
    (candidates,) = parse_nanodet(outputs, _context())
    # equal bins: expectation 3.5 bins = 112 px each side of (48, 48)
    np.testing.assert_allclose(candidates.xyxy, [[-64.0, -64.0, 160.0, 160.0]], rtol=1e-5)


def test_fastestdet_decodes_one_cell() -> None:
    grid = np.zeros((1, 5 + 2, 4, 4), np.float32)
    grid[0, 0, :, :] = 0.01  # weak objectness elsewhere
    # cell (gx=2, gy=1): offsets tanh -> (0.5, 0), size sigmoid -> (0.25, 0.5) of the input
    grid[0, :, 1, 2] = [0.81, math.atanh(0.5), 0.0, _logit(0.25), _logit(0.5), 0.2, 0.8]
    (candidates,) = parse_fastestdet({"758": grid}, _context())
    # centre ((2 + 0.5) / 4 · 64, (1 + 0) / 4 · 64) = (40, 16), size (16, 32)
    np.testing.assert_allclose(candidates.xyxy, [[32.0, 0.0, 48.0, 32.0]], atol=1e-4)
    np.testing.assert_allclose(candidates.confidence, [0.81**0.6 * 0.8**0.4], rtol=1e-5)
    assert candidates.class_id.tolist() == [1]


def test_candidates_take_and_empty() -> None:
    candidates = Candidates(
        np.arange(8, dtype=np.float32).reshape(2, 4),
        np.array([0.5, 0.9], np.float32),
        np.array([1, 2], np.int32),
        np.zeros((2, 3, 3), np.float32),
    )
    picked = candidates.take(np.array([1]))
    assert picked.class_id.tolist() == [2] and picked.keypoints is not None
    assert picked.keypoints.shape == (1, 3, 3)
    empty = Candidates.empty(num_keypoints=17)
    assert len(empty) == 0 and empty.keypoints is not None and empty.keypoints.shape == (0, 17, 3)


@pytest.mark.parametrize(
    ("parser", "expected"),
    [
        ("yolox", {"color_order": "bgr", "pad_position": "top-left", "std": (1.0, 1.0, 1.0)}),
        ("ultralytics", {"color_order": "rgb", "pad_position": "center", "std": (255.0,) * 3}),
        ("yolov5", {"color_order": "rgb", "pad_value": 114.0, "std": (255.0,) * 3}),
        ("nanodet", {"pad_value": 0.0, "mean": (103.53, 116.28, 123.675)}),
        ("fastestdet", {"keep_ratio": False, "color_order": "bgr", "std": (255.0,) * 3}),
        ("my_module:parse", {"color_order": "bgr", "keep_ratio": True}),
    ],
)
def test_default_preprocess_per_family(parser: str, expected: dict[str, object]) -> None:
    spec = default_preprocess(parser, (320, 256))
    assert spec.input_size_wh == (320, 256)
    for name, value in expected.items():
        assert getattr(spec, name) == value


def test_resolve_parser_by_name_and_reference() -> None:
    assert resolve_parser("yolox") is PARSERS["yolox"]
    assert resolve_parser("panoptes.models.parsers:parse_nanodet") is parse_nanodet
    assert resolve_parser("python:panoptes.models.parsers:parse_nanodet") is parse_nanodet


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("yolo9000", "unknown parser 'yolo9000'; known: end2end, fastestdet, nanodet"),
        ("no_such_module_here:parse", "cannot import 'no_such_module_here'"),
        ("panoptes.models.parsers:no_such_function", "has no 'no_such_function'"),
        ("panoptes.models.parsers:PYRAMID_STRIDES", "is not callable"),
    ],
)
def test_resolve_parser_errors(reference: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        resolve_parser(reference)
