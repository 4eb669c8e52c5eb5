"""The classifier on crops whose answer is known: a real ONNX "dominant colour" model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onnx_classifier import (
    BRIGHTNESS,
    COLOURS,
    colour_classifier,
    expected_scores,
    feature_model,
    solid,
)
from panoptes.core.errors import ConfigError, ModelError
from panoptes.models.classifier import Classifier, classifier_labels, to_probabilities
from panoptes.models.crops import crop_boxes
from panoptes.models.detector import ModelWarning

# BGR colours, the label the model gives them, and their size (width, height).
CROPS = [
    ((220, 40, 30), "blue", (40, 30)),
    ((20, 200, 60), "green", (7, 90)),
    ((30, 60, 210), "red", (300, 200)),
    ((90, 100, 110), "red", (1, 1)),
    ((120, 110, 100), "blue", (33, 31)),
]


@pytest.fixture
def colour_model(tmp_path: Path) -> Path:
    return colour_classifier(tmp_path / "colour.onnx", scale=0.1)


def test_labels_and_confidences_of_known_crops(colour_model: Path) -> None:
    with Classifier(colour_model, labels=colour_model.with_suffix(".txt")) as classifier:
        assert classifier.input_size_wh == (32, 32)
        assert classifier.batch_size is None
        assert classifier.output_names == ["output"]
        assert classifier.labels == [list(COLOURS)]
        result = classifier.classify([solid(bgr, size) for bgr, _, size in CROPS])
    assert [labels for labels in result.labels] == [[label] for _, label, _ in CROPS]
    # A solid crop keeps its colour through the resize: the model sees exactly its means.
    expected = expected_scores(np.array([bgr for bgr, _, _ in CROPS]), scale=0.1)
    np.testing.assert_allclose(result.confidence[:, 0], expected.max(axis=1), rtol=1e-4)
    np.testing.assert_allclose(result.probabilities["output"], expected, rtol=1e-4, atol=1e-7)
    assert result.class_id.dtype == np.int32 and result.class_id.shape == (len(CROPS), 1)
    assert result.tensors is None
    assert len(result.letterboxes) == len(CROPS)


def test_stretches_crops_by_default_and_letterboxes_when_asked(colour_model: Path) -> None:
    """A 64×16 crop, half red (left) half blue: stretched, the model sees both halves equally;
    letterboxed into the top-left corner with a black pad, it sees them on a quarter of its
    input, so the red and blue means are a quarter of what they were."""
    crop = np.zeros((16, 64, 3), np.uint8)
    crop[:, :32] = (0, 0, 200)
    crop[:, 32:] = (100, 0, 0)
    with Classifier(colour_model) as stretched:
        result = stretched.classify([crop], keep_tensors=True)
    assert result.tensors is not None
    np.testing.assert_allclose(result.tensors["output"][0], expected_scores([[50, 0, 100]], 0.1)[0])
    overrides = {"keep_ratio": True, "pad_position": "top-left"}
    with Classifier(colour_model, preprocess=overrides) as boxed:
        assert boxed.preprocess.pad_value == 0.0
        result = boxed.classify([crop], keep_tensors=True)
    assert result.tensors is not None
    np.testing.assert_allclose(
        result.tensors["output"][0], expected_scores([[12.5, 0, 25]], 0.1)[0], rtol=1e-4
    )
    assert result.letterboxes[0].scale_xy == (0.5, 0.5)


@pytest.mark.parametrize("crops", [1, 4, 6, 9])
def test_fixed_batch_runs_in_chunks(tmp_path: Path, crops: int) -> None:
    model = colour_classifier(tmp_path / "colour4.onnx", batch=4)
    colours = [(200, 0, 0), (0, 200, 0), (0, 0, 200)]
    images = [solid(colours[i % 3], (10 + i, 20)) for i in range(crops)]
    with Classifier(model, labels=model.with_suffix(".txt")) as classifier:
        assert classifier.batch_size == 4
        result = classifier.classify(images)
    assert [labels[0] for labels in result.labels] == [COLOURS[i % 3] for i in range(crops)]


def test_dynamic_batch_runs_in_calls_of_max_batch(colour_model: Path) -> None:
    calls: list[int] = []
    with Classifier(colour_model, max_batch=2) as classifier:
        run = classifier._backend.run

        def counted(batch: np.ndarray) -> dict[str, np.ndarray]:
            calls.append(len(batch))
            return run(batch)

        classifier._backend.run = counted  # type: ignore[method-assign]
        result = classifier.classify([solid((0, 0, 200))] * 5)
    assert calls == [2, 2, 1]
    assert [labels[0] for labels in result.labels] == ["class_2"] * 5


def test_no_crops(colour_model: Path) -> None:
    with Classifier(colour_model) as classifier:
        result = classifier.classify([])
    assert len(result) == 0 and result.confidence.shape == (0, 1)


def test_logits_go_through_a_softmax(tmp_path: Path) -> None:
    model = colour_classifier(tmp_path / "logits.onnx", scale=0.1, softmax=False)
    with Classifier(model) as classifier:
        result = classifier.classify([solid((90, 100, 110))], keep_tensors=True)
    assert result.tensors is not None
    np.testing.assert_allclose(result.tensors["output"][0], [9.0, 10.0, 11.0], rtol=1e-5)
    np.testing.assert_allclose(
        result.probabilities["output"][0], expected_scores([[90, 100, 110]], 0.1)[0], rtol=1e-5
    )


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        # Probabilities (a softmax in the model) are kept.
        ([[0.1, 0.7, 0.2]], [[0.1, 0.7, 0.2]]),
        # So are independent scores in [0, 1] (a sigmoid), and a single score.
        ([[0.9, 0.8, 0.1]], [[0.9, 0.8, 0.1]]),
        ([[0.3]], [[0.3]]),
        # Float rounding just outside [0, 1] is still a probability.
        ([[1.00001, 0.0, -0.00001]], [[1.00001, 0.0, -0.00001]]),
        # Any value outside [0, 1]: logits, softmax over the row.
        ([[0.0, np.log(3.0)]], [[0.25, 0.75]]),
        ([[-1.0, -1.0]], [[0.5, 0.5]]),
        ([[2.0]], [[1.0]]),
        # The rule is per row.
        ([[0.2, 0.8], [3.0, 3.0]], [[0.2, 0.8], [0.5, 0.5]]),
    ],
)
def test_softmax_rule(scores: list[list[float]], expected: list[list[float]]) -> None:
    probabilities = to_probabilities(np.array(scores, np.float32))
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-7)


def test_several_outputs_one_labels_line_each(tmp_path: Path) -> None:
    model = colour_classifier(tmp_path / "two.onnx", scale=0.1, brightness=True)
    assert model.with_suffix(".txt").read_text() == "blue;green;red\ndark;bright\n"
    with Classifier(model, labels=model.with_suffix(".txt")) as classifier:
        assert classifier.output_names == ["output", "brightness"]
        assert classifier.num_classes == [3, 2]
        assert classifier.labels == [list(COLOURS), list(BRIGHTNESS)]
        result = classifier.classify([solid((220, 40, 30)), solid((20, 220, 240))])
    assert result.labels == [["blue", "dark"], ["red", "bright"]]
    assert result.class_id.tolist() == [[0, 0], [2, 1]]
    # Brightness: mean 96.7 → softmax(0.1 · (31.3, -31.3)).
    np.testing.assert_allclose(
        result.confidence[0, 1], expected_scores([[31.33, -31.33]], 0.1)[0, 0], rtol=1e-3
    )


@pytest.mark.parametrize(
    ("labels", "outputs", "expected"),
    [
        (["black", "blue"], 1, [["black", "blue"]]),
        (["black;blue;red;"], 1, [["black", "blue", "red"]]),
        (["a;b", "x; y ;z"], 2, [["a", "b"], ["x", "y", "z"]]),
        (None, 2, [[], []]),
    ],
)
def test_classifier_labels_from_lists(
    labels: list[str] | None, outputs: int, expected: list[list[str]]
) -> None:
    assert classifier_labels(labels, outputs=outputs) == expected


def test_classifier_labels_from_files(tmp_path: Path) -> None:
    one_line = tmp_path / "colour.txt"
    one_line.write_text("black;blue;red\n")
    per_line = tmp_path / "per_line.txt"
    per_line.write_text("black\nblue\nred\n\n")
    assert classifier_labels(one_line, outputs=1) == [["black", "blue", "red"]]
    assert classifier_labels("per_line.txt", outputs=1, base_dir=tmp_path) == [
        ["black", "blue", "red"]
    ]
    with pytest.raises(ConfigError, match=r"has 1 line.* 2 outputs") as caught:
        classifier_labels(one_line, outputs=2)
    assert caught.value.place == "labels"
    with pytest.raises(ModelError, match="does not exist"):
        classifier_labels(tmp_path / "missing.txt", outputs=2)


def test_labels_from_metadata_else_class_ids(tmp_path: Path) -> None:
    named = colour_classifier(tmp_path / "named.onnx", labels=False, names_metadata=True)
    with Classifier(named) as classifier:
        assert classifier.labels == [list(COLOURS)]
    bare = colour_classifier(tmp_path / "bare.onnx", labels=False)
    with Classifier(bare) as classifier:
        assert classifier.classify([solid((0, 0, 250))]).labels == [["class_2"]]
    with (
        pytest.warns(ModelWarning, match="3 classes but only 2 labels"),
        Classifier(bare, labels=["blue", "green"]) as classifier,
    ):
        assert classifier.classify([solid((0, 0, 250))]).labels == [["class_2"]]


def test_outputs_that_are_not_class_scores(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'features' is float32 \[\?, 3, 8, 8\], not scores"):
        Classifier(feature_model(tmp_path / "features.onnx"))


def test_input_size_from_the_model_or_the_config(tmp_path: Path) -> None:
    fixed = colour_classifier(tmp_path / "colour.onnx")
    with pytest.raises(ModelError, match=r"expects 32×32 input, config asks for 64×48"):
        Classifier(fixed, preprocess={"input_size_wh": (64, 48)})
    dynamic = colour_classifier(tmp_path / "dynamic.onnx", size=None)
    with pytest.raises(ModelError, match=r"dynamic input size \?×\?: set preprocess input_size_wh"):
        Classifier(dynamic)
    with Classifier(dynamic, preprocess={"input_size_wh": [64, 48]}) as classifier:
        assert classifier.input_size_wh == (64, 48)
        assert classifier.classify([solid((0, 250, 0))]).class_id.tolist() == [[1]]


def test_crop_boxes_whole_pixels_clipped_never_empty() -> None:
    image = np.arange(10 * 20 * 3, dtype=np.uint8).reshape(10, 20, 3)
    boxes = np.array(
        [
            [2.5, 1.2, 7.1, 4.0],  # widened to whole pixels
            [-5.0, -3.0, 30.0, 40.0],  # clipped to the image
            [25.0, 12.0, 30.0, 15.0],  # outside: the nearest pixel
            [4.0, 4.0, 4.0, 4.0],  # no area: one pixel
        ],
        np.float32,
    )
    crops, origins_xy = crop_boxes(image, boxes)
    assert [crop.shape[:2] for crop in crops] == [(3, 6), (10, 20), (1, 1), (1, 1)]
    assert origins_xy.tolist() == [[2, 1], [0, 0], [19, 9], [4, 4]]
    assert np.shares_memory(crops[0], image)
    np.testing.assert_array_equal(crops[0], image[1:4, 2:8])
