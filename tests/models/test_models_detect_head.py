"""detect_head: which parser a model's outputs call for."""

from __future__ import annotations

from pathlib import Path

import pytest

from panoptes.core.errors import ModelError
from panoptes.models.backends.onnxruntime import OnnxRuntimeBackend
from panoptes.models.parsers import TensorShape, detect_head

ULTRALYTICS_DETECT = {"task": "detect", "stride": "32", "end2end": "False"}
ULTRALYTICS_POSE = {"task": "pose", "kpt_shape": "[17, 3]", "names": "{0: 'person'}"}
NANODET_416 = [
    (f"{kind}_pred_stride_{stride}", (1, cells, width))
    for kind, width in (("cls", 80), ("dis", 32))
    for stride, cells in ((8, 2704), (16, 676), (32, 169))
]
CENTERFACE = [
    ("537", (10, 1, 8, 8)),
    ("538", (10, 2, 8, 8)),
    ("539", (10, 2, 8, 8)),
    ("540", (10, 10, 8, 8)),
]

# (case, outputs, metadata, input size, parser); the shared models' rows are their real shapes.
HEADS: list[tuple[str, list[tuple[str, TensorShape]], dict[str, str], tuple[int, int], str]] = [
    ("yolox_nano.onnx", [("output", (1, 3549, 85))], {}, (416, 416), "yolox"),
    ("light_person_detector_192.onnx", [("output", (1, 756, 6))], {}, (192, 192), "yolox"),
    ("nanodet_m_416.onnx", NANODET_416, {}, (416, 416), "nanodet"),
    ("FastestDet.onnx", [("758", (1, 85, 22, 22))], {}, (352, 352), "fastestdet"),
    (
        "yolov8n_int8.onnx",
        [("output0", (1, 84, 8400))],
        ULTRALYTICS_DETECT,
        (640, 640),
        "ultralytics",
    ),
    (
        "yolo11n-pose_int8.tailfix.onnx",
        [("output0", (1, 56, 8400))],
        ULTRALYTICS_POSE,
        (640, 640),
        "ultralytics",
    ),
    ("yolov8 without metadata", [("output0", (1, 84, 8400))], {}, (640, 640), "ultralytics"),
    (
        "yolov8 dynamic",
        [("output0", (None, 84, None))],
        ULTRALYTICS_DETECT,
        (640, 640),
        "ultralytics",
    ),
    ("yolox dynamic batch", [("output", (None, 3549, 85))], {}, (416, 416), "yolox"),
    ("yolov5 640", [("output0", (1, 25200, 85))], {}, (640, 640), "yolov5"),
    ("yolov7 320", [("output", (1, 6300, 85))], {}, (320, 320), "yolov5"),
    (
        "yolov5 with raw heads",
        [("output0", (1, 25200, 85)), ("345", (1, 3, 80, 80, 85))],
        {},
        (640, 640),
        "yolov5",
    ),
    (
        "efficientnms",
        [
            ("num_dets", (1, 1)),
            ("det_boxes", (1, 100, 4)),
            ("det_scores", (1, 100)),
            ("det_classes", (1, 100)),
        ],
        {},
        (640, 640),
        "end2end",
    ),
    (
        "efficientnms unnamed",
        [("o1", (None, 1)), ("o2", (None, 100, 4)), ("o3", (None, 100)), ("o4", (None, 100))],
        {},
        (640, 640),
        "end2end",
    ),
    ("rows of six", [("output", (1, 100, 6))], {}, (640, 640), "end2end"),
    (
        "yolov10",
        [("output0", (1, 300, 6))],
        {"task": "detect", "end2end": "True"},
        (640, 640),
        "end2end",
    ),
]


@pytest.mark.parametrize(
    ("outputs", "metadata", "input_size_wh", "parser"),
    [case[1:] for case in HEADS],
    ids=[case[0] for case in HEADS],
)
def test_detect_head(
    outputs: list[tuple[str, TensorShape]],
    metadata: dict[str, str],
    input_size_wh: tuple[int, int],
    parser: str,
) -> None:
    assert detect_head(outputs, metadata, input_size_wh) == parser


SHARED = [case for case in HEADS if case[0].endswith(".onnx")]


@pytest.mark.parametrize(
    ("filename", "outputs", "metadata"),
    [case[:3] for case in SHARED],
    ids=[case[0] for case in SHARED],
)
def test_table_matches_the_shared_models(
    models_dir: Path,
    filename: str,
    outputs: list[tuple[str, TensorShape]],
    metadata: dict[str, str],
) -> None:
    backend = OnnxRuntimeBackend(models_dir / filename)
    try:
        assert [(info.name, info.shape) for info in backend.outputs] == outputs
        assert metadata.items() <= backend.metadata.items()
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("outputs", "input_size_wh"),
    [
        (CENTERFACE, (32, 32)),
        ([("logits", (1, 1000))], (224, 224)),
        ([("output", (1, 1000, 85))], (416, 416)),
        ([], (416, 416)),
    ],
    ids=["centerface", "classifier", "rows matching no grid", "no outputs"],
)
def test_unrecognised_outputs_are_explained(
    outputs: list[tuple[str, TensorShape]], input_size_wh: tuple[int, int]
) -> None:
    with pytest.raises(ModelError) as caught:
        detect_head(outputs, {}, input_size_wh, model="models/mystery.onnx")
    message = str(caught.value)
    assert message.startswith("models/mystery.onnx: cannot tell which detection head")
    for name, shape in outputs:
        assert f"'{name}' [{', '.join(map(str, shape))}]" in message
    assert "end2end, fastestdet, nanodet, none, ultralytics, yolov5, yolox" in message
    assert "parser: yolox" in message and "my_module:parse" in message
