"""Fixtures for the models tests: sample photos in BGR and tiny ONNX graphs built on the fly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import skimage.data
from onnx import TensorProto, helper

# Old enough for every onnxruntime the project supports.
_IR_VERSION = 8
_OPSET = 13


@pytest.fixture(scope="session")
def models_dir(assets: Path) -> Path:
    return assets / "models"


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """skimage's astronaut photo, 512×512, as BGR (skimage gives RGB)."""
    return np.ascontiguousarray(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))


@pytest.fixture(scope="session")
def chelsea() -> np.ndarray:
    """skimage's cat photo, 451×300, as BGR."""
    return np.ascontiguousarray(cv2.cvtColor(skimage.data.chelsea(), cv2.COLOR_RGB2BGR))


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = _IR_VERSION
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


MeanModelFactory = Callable[..., Path]


@pytest.fixture
def mean_model(tmp_path: Path) -> MeanModelFactory:
    """Builds an end2end-style model: images [B, 3, S, S] -> detections [B, 1, 6].

    Its one row is a fixed box (8, 8, S - 8, S - 8) with score = the mean of the input image and
    class 0, so each image's result tells which input it came from. ``batch`` is an int or a
    symbolic name (dynamic batch).
    """

    def build(batch: int | str = "batch", size: int = 64, name: str = "mean.onnx") -> Path:
        images = helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, size, size])
        detections = helper.make_tensor_value_info("detections", TensorProto.FLOAT, [batch, 1, 6])
        box = np.array([[[8, 8, size - 8, size - 8]]], np.float32)
        nodes = [
            helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=1),
            helper.make_node("Reshape", ["mean", "row_shape"], ["score"]),  # 0 keeps the batch
            helper.make_node("Mul", ["score", "zero"], ["class_id"]),
            helper.make_node("Add", ["class_id", "box"], ["boxes"]),
            helper.make_node("Concat", ["boxes", "score", "class_id"], ["detections"], axis=2),
        ]
        initializers = [
            helper.make_tensor("row_shape", TensorProto.INT64, [3], [0, 1, 1]),
            helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]),
            helper.make_tensor("box", TensorProto.FLOAT, [1, 1, 4], box.ravel().tolist()),
        ]
        graph = helper.make_graph(nodes, "mean", [images], [detections], initializers)
        return _save(graph, tmp_path / name)

    return build


@pytest.fixture
def pooled_model(tmp_path: Path) -> Callable[[list[int | str]], Path]:
    """Builds a model whose input has the given shape and whose one output is its mean per row of
    the second axis ([B, C]): it loads and runs, but no detection head produces such an output.
    """

    def build(input_shape: list[int | str]) -> Path:
        images = helper.make_tensor_value_info("images", TensorProto.FLOAT, input_shape)
        axes = list(range(2, len(input_shape)))
        scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, input_shape[:2])
        node = helper.make_node("ReduceMean", ["images"], ["scores"], axes=axes, keepdims=0)
        graph = helper.make_graph([node], "pooled", [images], [scores])
        return _save(graph, tmp_path / "pooled.onnx")

    return build
