"""Real ONNX classifiers built on the fly, whose answer for any crop is known in advance.

The "dominant colour" classifier takes ``images`` [B, 3, 32, 32] (BGR 0..255, the default
pre-processing of a classifier), averages each channel over the image and gives
``output`` = softmax(scale · mean) over (blue, green, red): the expected label of a crop is the
channel with the highest mean, and its confidence is :func:`expected_scores` of those means.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

COLOURS = ("blue", "green", "red")
BRIGHTNESS = ("dark", "bright")
SIZE = 32

# Old enough for every onnxruntime the project supports.
_IR_VERSION = 8
_OPSET = 13


def expected_scores(channel_means: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """What the colour output gives for crops whose BGR channel means are ``channel_means``
    [N, 3]: softmax(scale · means), float64 [N, 3]."""
    logits = scale * np.asarray(channel_means, np.float64)
    logits -= logits.max(axis=-1, keepdims=True)
    exp = np.exp(logits)
    return np.asarray(exp / exp.sum(axis=-1, keepdims=True))


def colour_classifier(
    path: Path,
    *,
    batch: int | str = "batch",
    size: int | None = SIZE,
    scale: float = 1.0,
    softmax: bool = True,
    brightness: bool = False,
    labels: bool = True,
    names_metadata: bool = False,
) -> Path:
    """Write the dominant-colour classifier to ``path`` and return ``path``.

    ``batch`` is a fixed batch size or a symbolic name (dynamic); ``size`` the input's height
    and width, None for a dynamic size. Without ``softmax`` the output
    is the logits (scale · means). ``brightness`` adds a second output ``brightness`` [B, 2]:
    softmax(scale · (128 - m, m - 128)) over (dark, bright), m the mean of all channels.
    ``labels`` writes ``path.with_suffix(".txt")`` as DeepStream writes classifier labels: one
    line per output, its labels separated by ``;``. ``names_metadata`` stores the colour names
    as Ultralytics does, in the model's ``names`` metadata.
    """
    height: int | str = "height" if size is None else size
    width: int | str = "width" if size is None else size
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, height, width])
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 3])]
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["means"], axes=[2, 3], keepdims=0),
        helper.make_node("Mul", ["means", "scale"], ["logits"]),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["output"], axis=1))
    else:
        nodes.append(helper.make_node("Identity", ["logits"], ["output"]))
    initializers = [
        helper.make_tensor("scale", TensorProto.FLOAT, [1], [scale]),
        helper.make_tensor("middle", TensorProto.FLOAT, [1], [128.0]),
        helper.make_tensor("column", TensorProto.INT64, [2], [0, 1]),
    ]
    if brightness:
        outputs.append(helper.make_tensor_value_info("brightness", TensorProto.FLOAT, [batch, 2]))
        nodes += [
            helper.make_node("ReduceMean", ["images"], ["level4d"], axes=[1, 2, 3], keepdims=1),
            helper.make_node("Reshape", ["level4d", "column"], ["level"]),  # [B, 1]
            helper.make_node("Sub", ["level", "middle"], ["above"]),
            helper.make_node("Neg", ["above"], ["below"]),
            helper.make_node("Concat", ["below", "above"], ["sides"], axis=1),
            helper.make_node("Mul", ["sides", "scale"], ["side_logits"]),
            helper.make_node("Softmax", ["side_logits"], ["brightness"], axis=1),
        ]
    graph = helper.make_graph(nodes, "dominant_colour", [images], outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = _IR_VERSION
    if names_metadata:
        helper.set_model_props(model, {"names": str(dict(enumerate(COLOURS)))})
    onnx.checker.check_model(model)
    onnx.save(model, path)
    if labels:
        lines = [";".join(COLOURS)] + ([";".join(BRIGHTNESS)] if brightness else [])
        path.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    return path


def feature_model(path: Path) -> Path:
    """A model whose output is a feature map [B, 3, 8, 8], not [B, classes]: no classifier."""
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])
    features = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 3, 8, 8])
    node = helper.make_node(
        "AveragePool", ["images"], ["features"], kernel_shape=[4, 4], strides=[4, 4]
    )
    graph = helper.make_graph([node], "features", [images], [features])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = _IR_VERSION
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def solid(bgr: tuple[int, int, int], size_wh: tuple[int, int] = (40, 30)) -> np.ndarray:
    """An image of one colour, BGR HWC uint8."""
    width, height = size_wh
    return np.full((height, width, 3), bgr, np.uint8)
