"""Detector on the real shared models, on models built in the test, and its build-time errors."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from panoptes.core.errors import ConfigError, ModelError
from panoptes.models import Detections, Detector, ModelWarning, preprocess_batch
from panoptes.models.labels import COCO_LABELS

PERSON, CAT = 0, 15
YOLOX_ASTRONAUT = [11.0, 20.0, 369.0, 507.0]  # the reference person box on skimage's astronaut


def _iou(a: np.ndarray | list[float], b: np.ndarray | list[float]) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return float(inter / (area_a + area_b - inter))


def _best(detections: Detections, class_id: int) -> tuple[float, np.ndarray]:
    """Confidence and box of the most confident detection of ``class_id``."""
    matching = np.flatnonzero(detections.class_id == class_id)
    assert len(matching), f"no class {class_id} in {detections}"
    best = matching[np.argmax(detections.confidence[matching])]
    return float(detections.confidence[best]), detections.xyxy[best]


@pytest.fixture(scope="module")
def yolox(models_dir: Path) -> Detector:
    return Detector(models_dir / "yolox_nano.onnx", threads=2)


def test_yolox_nano(yolox: Detector, astronaut: np.ndarray, chelsea: np.ndarray) -> None:
    assert (yolox.parser_name, yolox.input_size_wh, yolox.batch_size) == ("yolox", (416, 416), 1)
    assert yolox.labels == list(COCO_LABELS)
    assert yolox.preprocess.pad_position == "top-left" and yolox.preprocess.color_order == "bgr"
    (result,) = yolox.detect([astronaut])
    confidence, box = _best(result.detections, PERSON)
    assert confidence >= 0.85 and _iou(box, YOLOX_ASTRONAUT) >= 0.9
    assert result.letterbox.scale_xy == (416 / 512, 416 / 512) and result.tensors is None
    detections = yolox.detect([chelsea])[0].detections
    assert detections.class_id[np.argmax(detections.confidence)] == CAT
    assert yolox.label(CAT) == "cat" and yolox.label(1000) == "class_1000"
    assert detections.xyxy.dtype == np.float32 and detections.class_id.dtype == np.int32
    assert detections.xyxy.min() >= 0 and detections.xyxy[:, 2].max() <= chelsea.shape[1]
    raw = yolox.run_tensors(np.zeros((1, 3, 416, 416), np.float32))
    assert raw["output"].shape == (1, 3549, 85)


def test_batch_gives_what_one_by_one_gives(
    yolox: Detector, astronaut: np.ndarray, chelsea: np.ndarray
) -> None:
    together = yolox.detect([astronaut, chelsea], keep_tensors=True)
    apart = [yolox.detect([image], keep_tensors=True)[0] for image in (astronaut, chelsea)]
    assert len(together) == 2
    for joint, single in zip(together, apart, strict=True):
        np.testing.assert_array_equal(joint.detections.xyxy, single.detections.xyxy)
        np.testing.assert_array_equal(joint.detections.class_id, single.detections.class_id)
        assert joint.letterbox == single.letterbox
        assert joint.tensors is not None and single.tensors is not None
        assert joint.tensors["output"].shape == (3549, 85)
        np.testing.assert_array_equal(joint.tensors["output"], single.tensors["output"])
    assert yolox.detect([]) == []


def test_yolov8n_from_metadata(
    models_dir: Path, astronaut: np.ndarray, chelsea: np.ndarray
) -> None:
    with Detector(models_dir / "yolov8n_int8.onnx", threads=2) as detector:
        assert detector.parser_name == "ultralytics" and detector.preprocess.color_order == "rgb"
        assert len(detector.labels) == 80 and detector.labels[CAT] == "cat"
        astronaut_result, chelsea_result = detector.detect([astronaut, chelsea])
    confidence, box = _best(astronaut_result.detections, PERSON)
    assert confidence >= 0.7 and _iou(box, YOLOX_ASTRONAUT) >= 0.8  # the two detectors agree
    assert _best(chelsea_result.detections, CAT)[0] >= 0.7


def test_nanodet(models_dir: Path, astronaut: np.ndarray, chelsea: np.ndarray) -> None:
    with Detector(models_dir / "nanodet_m_416.onnx", threads=2) as detector:
        assert detector.parser_name == "nanodet" and detector.preprocess.pad_value == 0.0
        astronaut_result, chelsea_result = detector.detect([astronaut, chelsea])
    confidence, box = _best(astronaut_result.detections, PERSON)
    assert confidence >= 0.5 and _iou(box, YOLOX_ASTRONAUT) >= 0.78
    confidence, box = _best(chelsea_result.detections, CAT)
    # Ultralytics' box for the cat is about [2, 1, 436, 295].
    assert confidence >= 0.55 and _iou(box, [2.0, 1.0, 436.0, 295.0]) >= 0.85


def test_fastestdet(models_dir: Path, astronaut: np.ndarray, chelsea: np.ndarray) -> None:
    with Detector(models_dir / "FastestDet.onnx", threads=2) as detector:
        assert detector.parser_name == "fastestdet" and not detector.preprocess.keep_ratio
        astronaut_result, chelsea_result = detector.detect([astronaut, chelsea])
    confidence, box = _best(astronaut_result.detections, PERSON)
    assert confidence >= 0.7 and _iou(box, YOLOX_ASTRONAUT) >= 0.8
    assert _best(chelsea_result.detections, CAT)[0] >= 0.7


def test_light_person(models_dir: Path, astronaut: np.ndarray, chelsea: np.ndarray) -> None:
    with Detector(
        models_dir / "light_person_detector_192.onnx", labels=["person"], threads=2
    ) as detector:
        assert detector.parser_name == "yolox" and detector.input_size_wh == (192, 192)
        astronaut_result, chelsea_result = detector.detect([astronaut, chelsea])
    confidence, box = _best(astronaut_result.detections, PERSON)
    assert confidence >= 0.8 and _iou(box, YOLOX_ASTRONAUT) >= 0.9
    assert len(chelsea_result.detections) == 0


def test_pose_keypoints(models_dir: Path, astronaut: np.ndarray) -> None:
    with Detector(models_dir / "yolo11n-pose_int8.tailfix.onnx", threads=2) as detector:
        assert detector.parser_name == "ultralytics" and detector.labels == ["person"]
        (result,) = detector.detect([astronaut])
    detections = result.detections
    best = int(np.argmax(detections.confidence))
    assert detections.class_id[best] == PERSON and detections.confidence[best] >= 0.8
    assert detections.keypoints is not None and detections.keypoints.shape[1:] == (17, 3)
    keypoints = detections.keypoints[best]
    visible = keypoints[keypoints[:, 2] > 0.5]
    assert len(visible) >= 8
    x1, y1, x2, y2 = detections.xyxy[best]
    assert np.all((visible[:, 0] >= x1 - 5) & (visible[:, 0] <= x2 + 5))
    assert np.all((visible[:, 1] >= y1 - 5) & (visible[:, 1] <= y2 + 5))


def _network_means(images: list[np.ndarray], detector: Detector) -> np.ndarray:
    batch, _ = preprocess_batch(images, detector.preprocess)
    return batch.mean(axis=(1, 2, 3))


def test_dynamic_batch_runs_in_one_call(
    mean_model: Callable[..., Path], astronaut: np.ndarray, chelsea: np.ndarray
) -> None:
    detector = Detector(mean_model("batch"), threshold=0.0)
    calls = []
    run = detector._backend.run
    detector._backend.run = lambda batch: calls.append(len(batch)) or run(batch)  # type: ignore[method-assign]
    images = [astronaut, chelsea, astronaut[:200]]
    results = detector.detect(images)
    assert detector.batch_size is None and detector.parser_name == "end2end"
    assert calls == [3]
    confidences = [float(result.detections.confidence[0]) for result in results]
    np.testing.assert_allclose(confidences, _network_means(images, detector), rtol=1e-5)
    # The box (8, 8, 56, 56) of the 64×64 input, back in astronaut pixels (scale 1/8).
    np.testing.assert_allclose(results[0].detections.xyxy, [[64.0, 64.0, 448.0, 448.0]])
    detector.close()


def test_fixed_batch_runs_in_chunks(
    mean_model: Callable[..., Path], astronaut: np.ndarray, chelsea: np.ndarray
) -> None:
    detector = Detector(mean_model(2), threshold=0.0)
    images = [astronaut, chelsea, astronaut[:200]]
    results = detector.detect(images)
    assert detector.batch_size == 2 and len(results) == 3
    confidences = [float(result.detections.confidence[0]) for result in results]
    np.testing.assert_allclose(confidences, _network_means(images, detector), rtol=1e-5)
    detector.close()


def test_labels_explicit_from_file_and_too_few(
    models_dir: Path, tmp_path: Path, mean_model: Callable[..., Path]
) -> None:
    (tmp_path / "labels.txt").write_text("face;plate\n")
    path = mean_model()
    assert Detector(path, labels="labels.txt", base_dir=tmp_path).labels == ["face", "plate"]
    assert Detector(path, labels=["a"]).labels == ["a"]
    assert Detector(path).labels == []  # an end2end head does not say how many classes
    with pytest.warns(ModelWarning, match="80 classes but only 2 labels"):
        detector = Detector(models_dir / "FastestDet.onnx", labels=["person", "bicycle"])
    assert detector.label(15) == "class_15"


def test_preprocess_overrides(models_dir: Path) -> None:
    detector = Detector(
        models_dir / "yolox_nano.onnx",
        preprocess={"pad_position": "center", "input_size_wh": [416, 416]},
    )
    assert detector.preprocess.pad_position == "center"
    assert detector.preprocess.color_order == "bgr"  # the rest of yolox's defaults stay


def test_input_size_that_contradicts_the_model(models_dir: Path) -> None:
    with pytest.raises(ModelError, match=r"expects 416×416 input, config asks for 640×640"):
        Detector(models_dir / "yolox_nano.onnx", preprocess={"input_size_wh": (640, 640)})


def test_dynamic_input_size_needs_one(tmp_path: Path, mean_model: Callable[..., Path]) -> None:
    import onnx

    model = onnx.load(mean_model())
    for dim in model.graph.input[0].type.tensor_type.shape.dim[2:]:
        dim.dim_param = "side"
    onnx.save(model, tmp_path / "any_size.onnx")
    with pytest.raises(ModelError, match=r"dynamic input size \?×\?: set preprocess input_size_wh"):
        Detector(tmp_path / "any_size.onnx")
    detector = Detector(tmp_path / "any_size.onnx", preprocess={"input_size_wh": (96, 64)})
    assert detector.input_size_wh == (96, 64)
    assert len(detector.detect([np.zeros((64, 96, 3), np.uint8)])) == 1


def test_text_file_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_text("not a model")
    with pytest.raises(ModelError, match=r"model.onnx is not an ONNX model"):
        Detector(tmp_path / "model.onnx")


def test_outputs_no_parser_knows(pooled_model: Callable[[list[int | str]], Path]) -> None:
    path = pooled_model([1, 3, 32, 32])
    with pytest.raises(ModelError) as caught:
        Detector(path)
    message = str(caught.value)
    assert str(path) in message and "'scores' [1, 3]" in message and "yolox" in message


@pytest.mark.parametrize(
    ("input_shape", "message"),
    [
        ([1, 3, 32], "is not a 4-D NCHW image tensor"),
        ([1, 32, 32, 3], "looks channels-last"),
        ([1, 1, 32, 32], "has 1 channels"),
    ],
)
def test_input_that_is_not_an_image(
    pooled_model: Callable[[list[int | str]], Path], input_shape: list[int | str], message: str
) -> None:
    with pytest.raises(ModelError, match=message):
        Detector(pooled_model(input_shape), parser="yolox")


def test_unknown_parser(models_dir: Path) -> None:
    with pytest.raises(ModelError, match="unknown parser 'yolo9000'"):
        Detector(models_dir / "yolox_nano.onnx", parser="yolo9000")


USER_PARSER = '''
import numpy as np
from panoptes.models.parsers import Candidates, parse_yolox

CALLS = []

def person_only(outputs, ctx):
    """Wraps the YOLOX parser and keeps only people."""
    CALLS.append(ctx.input_size_wh)
    return [c.take(np.flatnonzero(c.class_id == 0)) for c in parse_yolox(outputs, ctx)]
'''


def test_user_parser_from_a_module(
    models_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    astronaut: np.ndarray,
) -> None:
    (tmp_path / "my_parsers.py").write_text(USER_PARSER)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_parsers", raising=False)
    detector = Detector(
        models_dir / "yolox_nano.onnx",
        parser="my_parsers:person_only",
        preprocess={"pad_position": "top-left"},
    )
    assert detector.parser_name == "my_parsers:person_only"
    detections = detector.detect([astronaut])[0].detections
    assert set(detections.class_id.tolist()) == {PERSON}
    assert sys.modules["my_parsers"].CALLS == [(416, 416)]
    by_path = Detector(
        models_dir / "yolox_nano.onnx", parser=f"python:{tmp_path / 'my_parsers.py'}:person_only"
    )
    assert len(by_path.detect([astronaut])[0].detections) >= 1


def test_user_parser_that_cannot_be_imported(models_dir: Path) -> None:
    with pytest.raises(ModelError, match=r"cannot import 'no_such_package\.parsers'"):
        Detector(models_dir / "yolox_nano.onnx", parser="no_such_package.parsers:parse")


def test_zoo_name(monkeypatch: pytest.MonkeyPatch, models_dir: Path) -> None:
    monkeypatch.setenv("PANOPTES_MODEL_PATH", str(models_dir))
    monkeypatch.setenv("PANOPTES_OFFLINE", "1")
    detector = Detector("fastestdet")
    assert detector.model_path == models_dir / "FastestDet.onnx"
    assert detector.parser_name == "fastestdet"


@pytest.mark.parametrize(
    ("option", "place"),
    [({"threshold": 1.5}, "threshold"), ({"class_thresholds": {3: -0.1}}, "class_thresholds[3]"),
     ({"topk": 0}, "topk")],
)  # fmt: skip
def test_bad_options(models_dir: Path, option: dict[str, object], place: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Detector(models_dir / "yolox_nano.onnx", **option)  # type: ignore[arg-type]
    assert caught.value.place == place
