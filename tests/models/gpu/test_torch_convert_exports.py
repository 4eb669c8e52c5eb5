"""What current exporters write, converted for torch: opset 18 and later, weights fed through
Identity nodes. Each converted module is checked against onnxruntime on the file as written."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper, version_converter
from torch import fx

from panoptes.core.errors import ModelError
from panoptes.models.backends.pytorch import TorchBackend
from panoptes.models.gpu.cache import file_sha256
from panoptes.models.gpu.convert import (
    _onnx2torch_convert,
    _quiet_onnx2torch,
    convert_for_batch,
    fold_identity_initializers,
    free_batch_axis,
    lower_opset,
    output_tuple,
    prepare_for_onnx2torch,
)

CPU = torch.device("cpu")


# --- helpers ---------------------------------------------------------------------------------


def _opset(model: onnx.ModelProto) -> int:
    return next(int(entry.version) for entry in model.opset_import if entry.domain == "")


def _op_types(model: onnx.ModelProto) -> list[str]:
    return [node.op_type for node in model.graph.node]


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def _onnxruntime(path: Path, images: np.ndarray) -> list[np.ndarray]:
    """onnxruntime's outputs for ``images`` [N, 3, H, W], one image at a time (the files fix a
    batch of 1), stacked."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    runs = [session.run(None, {name: image[None]}) for image in images]
    return [np.concatenate([run[index] for run in runs]) for index in range(len(runs[0]))]


def _assert_matches(module: fx.GraphModule, images: np.ndarray, reference: Path) -> None:
    """``module``'s outputs for ``images`` equal onnxruntime's on the file at ``reference``,
    within float tolerance (relative to each output's largest value)."""
    with torch.no_grad():
        ours = output_tuple(module(torch.from_numpy(images)))
    theirs = _onnxruntime(reference, images)
    assert len(ours) == len(theirs)
    for mine, expected in zip(ours, theirs, strict=True):
        assert mine.shape == expected.shape
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(mine.numpy(), expected, rtol=1e-3, atol=1e-4 * scale)


def _images(count: int, size_hw: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (count, 3, *size_hw)).astype(np.float32)


def _weight(name: str, shape: Sequence[int], seed: int) -> onnx.TensorProto:
    values = np.random.default_rng(seed).normal(0, 0.5, shape).astype(np.float32)
    return numpy_helper.from_array(values, name)


def _conv_split_concat(channels: int, parts: int, opset: int = 18) -> onnx.ModelProto:
    """images [1, 3, 8, 8] -> Conv to ``channels`` -> Split-18 into ``parts`` by
    ``num_outputs`` -> Concat of the parts in reverse order -> [1, channels, 8, 8]."""
    pieces = [f"part_{index}" for index in range(parts)]
    nodes = [
        helper.make_node("Conv", ["images", "conv.weight", "conv.bias"], ["conv"], pads=[1] * 4),
        helper.make_node("Split", ["conv"], pieces, "split", axis=1, num_outputs=parts),
        helper.make_node("Concat", pieces[::-1], ["output"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_split_concat",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, channels, 8, 8])],
        [_weight("conv.weight", (channels, 3, 3, 3), 1), _weight("conv.bias", (channels,), 2)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _shared_bias_convs() -> onnx.ModelProto:
    """Two Convs whose biases are equal, stored once as the TorchScript exporter does: the
    second reads it through an Identity node."""
    nodes = [
        helper.make_node("Identity", ["model.0.conv.bias"], ["model.2.cv1.conv.bias"]),
        helper.make_node(
            "Conv", ["images", "model.0.conv.weight", "model.0.conv.bias"], ["first"], pads=[1] * 4
        ),
        helper.make_node("Sigmoid", ["first"], ["act"]),
        helper.make_node(
            "Conv", ["act", "model.2.cv1.conv.weight", "model.2.cv1.conv.bias"], ["output"]
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "shared_bias",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 8, 8])],
        [
            _weight("model.0.conv.weight", (4, 3, 3, 3), 3),
            _weight("model.0.conv.bias", (4,), 4),
            _weight("model.2.cv1.conv.weight", (4, 4, 1, 1), 5),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


# --- Identity-fed weights --------------------------------------------------------------------


def test_a_bias_fed_through_an_identity_converts(tmp_path: Path) -> None:
    path = _save(_shared_bias_convs(), tmp_path / "shared_bias.onnx")
    as_written = free_batch_axis(onnx.load(str(path)), (8, 8))
    # The fault as onnx2torch meets it: the second Conv's bias is no initializer.
    with _quiet_onnx2torch(), pytest.raises(KeyError, match=r"model\.2\.cv1\.conv\.bias"):
        _onnx2torch_convert()(as_written)

    module = convert_for_batch(path, 2, (8, 8), CPU)
    _assert_matches(module, _images(2, (8, 8)), path)


def test_identity_chains_fold_and_graph_outputs_stay() -> None:
    model = _shared_bias_convs()
    graph = model.graph
    # A chain (Identity of an Identity) and an Identity that gives a graph output.
    graph.node.insert(1, helper.make_node("Identity", ["model.2.cv1.conv.bias"], ["again"]))
    graph.node.append(helper.make_node("Identity", ["model.0.conv.bias"], ["bias_out"]))
    graph.output.append(helper.make_tensor_value_info("bias_out", TensorProto.FLOAT, [4]))
    folded = fold_identity_initializers(model)

    assert _op_types(folded) == ["Conv", "Sigmoid", "Conv", "Identity"]
    weights = {init.name: numpy_helper.to_array(init) for init in folded.graph.initializer}
    for name in ("model.2.cv1.conv.bias", "again"):
        np.testing.assert_array_equal(weights[name], weights["model.0.conv.bias"])
    assert "Identity" in _op_types(model)  # the model given is left alone


# --- opset 18 and later ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channels", "parts", "sizes"),
    [(6, 3, [2, 2, 2]), (7, 3, [3, 3, 1]), (8, 2, [4, 4])],
    ids=["even", "uneven", "halves"],
)
def test_split_18_by_num_outputs_converts(
    tmp_path: Path, channels: int, parts: int, sizes: list[int]
) -> None:
    path = _save(_conv_split_concat(channels, parts), tmp_path / "split18.onnx")
    as_written = onnx.load(str(path))
    # The fault as onnx2torch meets it.
    with _quiet_onnx2torch(), pytest.raises(NotImplementedError, match=r"Split.*18"):
        _onnx2torch_convert()(as_written)

    prepared = prepare_for_onnx2torch(as_written)
    assert _opset(prepared) == 17
    (split,) = [node for node in prepared.graph.node if node.op_type == "Split"]
    assert not split.domain and [a.name for a in split.attribute] == ["axis"]
    initializers = {init.name: init for init in prepared.graph.initializer}
    assert numpy_helper.to_array(initializers[split.input[1]]).tolist() == sizes

    module = convert_for_batch(path, 2, (8, 8), CPU)
    _assert_matches(module, _images(2, (8, 8)), path)


@pytest.mark.parametrize(
    ("input_shape", "axis", "parts", "message"),
    [
        ([1, "channels", 8, 8], 1, 2, r"axis 1.*num_outputs=2.*not known before run time"),
        ([1, 5, 8, 8], 1, 4, r"axis 1.*size 5 has no 4 parts"),
        ([1, 6, 8, 8], -1, 3, None),
    ],
    ids=["unknown-size", "too-many-parts", "negative-axis"],
)
def test_split_sizes_come_from_the_shape(
    input_shape: list[int | str], axis: int, parts: int, message: str | None
) -> None:
    pieces = [f"part_{index}" for index in range(parts)]
    graph = helper.make_graph(
        [helper.make_node("Split", ["x"], pieces, "the_split", axis=axis, num_outputs=parts)],
        "split",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info(piece, TensorProto.FLOAT, None) for piece in pieces],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    if message is not None:
        with pytest.raises(ModelError, match=rf"Split node 'the_split' \(input 'x', {message}"):
            lower_opset(model, 17)
        return
    lowered = lower_opset(model, 17)
    sizes = numpy_helper.to_array(lowered.graph.initializer[0]).tolist()
    assert sizes == [3, 3, 2] and _opset(lowered) == 17


def _resize_18(**attributes: Any) -> onnx.ModelProto:
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    graph = helper.make_graph(
        [helper.make_node("Resize", ["images", "", "scales"], ["output"], **attributes)],
        "resize",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 16, 16])],
        [scales],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _pad_18_with_axes() -> onnx.ModelProto:
    pads = numpy_helper.from_array(np.array([1, 1], np.int64), "pads")
    axes = numpy_helper.from_array(np.array([3], np.int64), "axes")
    graph = helper.make_graph(
        [helper.make_node("Pad", ["images", "pads", "", "axes"], ["output"])],
        "pad",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 8, 10])],
        [pads, axes],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (_resize_18(mode="linear", antialias=1), r"Resize antialias=1 is not supported"),
        (_resize_18(mode="nearest", axes=[2, 3]), r"Resize axes is not supported"),
        (_pad_18_with_axes(), r"No Adapter To Version \$17 for Pad"),
    ],
    ids=["resize-antialias", "resize-axes", "pad-axes"],
)
def test_what_cannot_be_taken_down_is_named(
    tmp_path: Path, model: onnx.ModelProto, reason: str
) -> None:
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    expected = (
        rf"{re.escape(str(path))}: its opset 18 is newer than onnx2torch .* converts for "
        r"(Pad|Resize) \(it converts them at opset 17 or older\); onnx's version converter "
        rf"cannot take it down to opset 17: {reason}[^.]*\. Export the model with opset 17"
    )
    with pytest.raises(ModelError, match=expected):
        convert_for_batch(path, 1, (8, 8), CPU)


def test_quantized_exports_name_every_operator_onnx2torch_lacks(shared_models: Path) -> None:
    """The int8 YOLO11-pose is an opset-20 Ultralytics export: its Splits and Resizes could be
    taken down, its quantisation operators converted at no opset."""
    with pytest.raises(
        ModelError,
        match=r"no converter for DequantizeLinear, QuantizeLinear at any opset up to the "
        r"model's 20\. Use backend onnxruntime",
    ):
        convert_for_batch(shared_models / "yolo11n-pose_int8.tailfix.onnx", 1, (640, 640), CPU)


def _bgr_input(frame: np.ndarray, size_wh: tuple[int, int], kind: str) -> np.ndarray:
    """A real frame as the shared model expects it (see ASSETS.md), [3, H, W] float32."""
    image = cv2.resize(frame, size_wh).astype(np.float64)
    if kind == "nanodet":
        image = (image - [103.53, 116.28, 123.675]) / [57.375, 57.12, 58.395]
    elif kind == "fastestdet":
        image = image / 255.0
    return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)


@pytest.mark.parametrize(
    ("file", "opset", "size", "batch", "kind"),
    [
        ("nanodet_m_416.onnx", 18, 416, 1, "nanodet"),  # Splits, Resizes
        ("yolox_nano.onnx", 20, 416, 2, "yolox"),  # Resizes, Reshapes freed for the batch
        ("FastestDet.onnx", 18, 352, 1, "fastestdet"),  # a Pad, a Resize
    ],
)
def test_shared_models_saved_at_a_newer_opset_convert(
    shared_models: Path,
    tmp_path: Path,
    all_frames: list[np.ndarray],
    file: str,
    opset: int,
    size: int,
    batch: int,
    kind: str,
) -> None:
    original = shared_models / file
    newer = version_converter.convert_version(onnx.load(str(original)), opset)
    path = _save(newer, tmp_path / f"{original.stem}_opset{opset}.onnx")
    written = path.read_bytes()

    assert _opset(prepare_for_onnx2torch(onnx.load(str(path)))) == 17
    module = convert_for_batch(path, batch, (size, size), CPU)
    images = np.stack([_bgr_input(frame, (size, size), kind) for frame in all_frames[:batch]])
    _assert_matches(module, images, original)
    assert path.read_bytes() == written  # the user's file is never written


class _Tiny(torch.nn.Module):
    """A Conv, a split into halves, two 1×1 Convs whose biases are equal (stored once, fed
    through an Identity by the TorchScript exporter), an upsampling."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.left = torch.nn.Conv2d(4, 4, 1)
        self.right = torch.nn.Conv2d(4, 4, 1)
        assert self.left.bias is not None and self.right.bias is not None
        with torch.no_grad():
            self.right.bias.copy_(self.left.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        left, right = self.stem(images).split(4, dim=1)
        joined = torch.cat([self.left(left), self.right(right)], dim=1)
        return torch.nn.functional.interpolate(joined, scale_factor=2.0, mode="nearest")


def _export_opset_18(module: torch.nn.Module, size_hw: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    try:
        torch.onnx.export(
            module,
            (torch.zeros((1, 3, *size_hw)),),
            buffer,  # type: ignore[arg-type]  # a file object is documented too
            opset_version=18,
            input_names=["images"],
            output_names=["output"],
            dynamo=False,
        )
    except (TypeError, RuntimeError, ImportError) as error:
        pytest.skip(f"this torch ({torch.__version__}) cannot export at opset 18: {error}")
    return buffer.getvalue()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_torch_export_at_opset_18_converts(tmp_path: Path) -> None:
    tiny = _Tiny().eval()
    path = tmp_path / "tiny_opset18.onnx"
    path.write_bytes(_export_opset_18(tiny, (16, 16)))
    exported = onnx.load(str(path))
    # Both faults are in the file as torch wrote it.
    assert _opset(exported) == 18 and "Split" in _op_types(exported)
    initializers = {init.name for init in exported.graph.initializer}
    assert any(
        node.op_type == "Identity" and node.input[0] in initializers for node in exported.graph.node
    )

    module = convert_for_batch(path, 2, (16, 16), CPU)
    images = _images(2, (16, 16), seed=3)
    _assert_matches(module, images, path)
    with torch.no_grad():
        (ours,) = output_tuple(module(torch.from_numpy(images)))
        expected = tiny(torch.from_numpy(images))
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)


def test_the_backend_loads_a_newer_opset_and_keys_its_cache_by_the_file(
    shared_models: Path, tmp_path: Path, all_frames: list[np.ndarray]
) -> None:
    original = shared_models / "light_person_detector_192.onnx"
    newer = version_converter.convert_version(onnx.load(str(original)), 21)
    path = _save(newer, tmp_path / "light_person_opset21.onnx")
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    cache = tmp_path / "cache"

    backend = TorchBackend(path, batch_size=2, cache_dir=cache)
    images = np.stack([_bgr_input(frame, (192, 192), "yolox") for frame in all_frames[3:5]])
    (ours,) = backend.run(images).values()
    (theirs,) = _onnxruntime(original, images)
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-3)

    stored = torch.load(backend.artefact_path, weights_only=False)
    assert stored["key"]["model_sha256"] == sha256 == file_sha256(path)
    assert not backend.cache_hit
    assert TorchBackend(path, batch_size=2, cache_dir=cache).cache_hit
