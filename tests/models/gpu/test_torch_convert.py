"""ONNX to a fixed-batch torch module: the batch axis freed, host work traced away, checked."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import fx
from torch.fx.experimental.proxy_tensor import make_fx

from panoptes.core.errors import ModelError
from panoptes.models.gpu.convert import (
    convert_for_batch,
    fp32_stem,
    free_batch_axis,
    fuse_silu,
    output_tuple,
    place_on_device,
)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def yolox_traced(shared_models: Path) -> fx.GraphModule:
    return convert_for_batch(shared_models / "yolox_nano.onnx", 2, (416, 416), CPU)


def _reshape_shapes(model: onnx.ModelProto) -> list[list[int]]:
    initializers = {init.name: init for init in model.graph.initializer}
    return [
        numpy_helper.to_array(initializers[node.input[1]]).tolist()
        for node in model.graph.node
        if node.op_type == "Reshape"
    ]


def test_reshapes_no_longer_fix_the_batch(shared_models: Path) -> None:
    original = onnx.load(str(shared_models / "yolox_nano.onnx"))
    assert _reshape_shapes(original) == [[1, 85, -1]] * 3
    freed = free_batch_axis(original, (416, 416))
    assert _reshape_shapes(freed) == [[0, 85, -1]] * 3
    assert freed.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert _reshape_shapes(original) == [[1, 85, -1]] * 3  # the original is left alone


def test_channel_shuffles_are_freed_one_after_another(shared_models: Path) -> None:
    """NanoDet's ShuffleNet blocks reshape [1, 116, H, W] -> [1, 58, 2, H, W] -> ... in chains:
    each freed Reshape lets shape inference carry the batch to the next."""
    freed = free_batch_axis(onnx.load(str(shared_models / "nanodet_m_416.onnx")), (416, 416))
    shapes = _reshape_shapes(freed)
    assert shapes and all(shape[0] == 0 for shape in shapes)


def test_each_image_of_the_batch_matches_onnxruntime(
    yolox_traced: fx.GraphModule, shared_models: Path
) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(
        str(shared_models / "yolox_nano.onnx"), providers=["CPUExecutionProvider"]
    )
    generator = np.random.default_rng(1)
    images = generator.uniform(0, 255, (2, 3, 416, 416)).astype(np.float32)
    with torch.no_grad():
        (ours,) = output_tuple(yolox_traced(torch.from_numpy(images)))
    assert ours.shape == (2, 3549, 85)
    for index in range(2):
        (theirs,) = session.run(None, {"images": images[index : index + 1]})
        np.testing.assert_allclose(ours[index].numpy(), theirs[0], atol=2e-3, rtol=1e-3)


def test_no_host_work_is_left_in_forward(yolox_traced: fx.GraphModule) -> None:
    """Placed on the meta device, the module must still run: a tensor left on the host, a value
    read back from the device (``.item()``, ``.tolist()``) or a tensor made on the host inside
    ``forward`` would fail there, as they would stall a GPU stream and break CUDA-graph
    capture."""
    assert not any("local_scalar_dense" in str(node.target) for node in yolox_traced.graph.nodes)
    meta = place_on_device(copy.deepcopy(yolox_traced), torch.device("meta"))
    for node in meta.graph.nodes:
        if node.op == "get_attr":
            value: object = meta
            for part in str(node.target).split("."):
                value = getattr(value, part)
            assert not isinstance(value, torch.Tensor) or value.device.type == "meta", node
    (output,) = output_tuple(meta(torch.empty((2, 3, 416, 416), device="meta")))
    assert output.device.type == "meta" and output.shape == (2, 3549, 85)


def test_half_precision_reaches_every_operation(yolox_traced: fx.GraphModule) -> None:
    half = place_on_device(copy.deepcopy(yolox_traced), torch.device("meta"), torch.float16)
    (output,) = output_tuple(
        half(torch.empty((2, 3, 416, 416), device="meta", dtype=torch.float16))
    )
    assert output.dtype == torch.float16


def _convolution_dtypes(module: fx.GraphModule) -> list[torch.dtype]:
    """The dtype of each convolution's weight, in graph order."""
    return [
        getattr(module, str(node.args[1].target)).dtype
        for node in module.graph.nodes
        if node.op == "call_function" and node.target == torch.ops.aten.convolution.default
    ]


def test_in_half_precision_the_stem_stays_float32(yolox_traced: fx.GraphModule) -> None:
    """The first three convolutions and the input keep fp32, the rest is fp16, and the stem's
    result is cast to fp16 once, where the rest of the network reads it."""
    module = copy.deepcopy(yolox_traced)
    stem = fp32_stem(module)
    half = place_on_device(module, torch.device("meta"), torch.float16, keep_fp32=stem)
    dtypes = _convolution_dtypes(half)
    assert dtypes[:3] == [torch.float32] * 3
    assert set(dtypes[3:]) == {torch.float16} and len(dtypes) == 113
    casts = [node for node in half.graph.nodes if node.target == torch.ops.aten._to_copy.default]
    assert len(casts) == 1 and casts[0].args[0].target == torch.ops.aten.silu.default
    (output,) = output_tuple(half(torch.empty((2, 3, 416, 416), device="meta")))
    assert output.dtype == torch.float16 and output.shape == (2, 3549, 85)


def test_no_stem_and_a_whole_model_as_stem(yolox_traced: fx.GraphModule) -> None:
    assert fp32_stem(yolox_traced, 0) == set()
    everything = fp32_stem(yolox_traced, 1000)  # fewer convolutions than that: all of it
    assert everything == {node for node in yolox_traced.graph.nodes if node.op != "output"}
    module = copy.deepcopy(yolox_traced)
    whole = place_on_device(
        module, torch.device("meta"), torch.float16, keep_fp32=fp32_stem(module, 1000)
    )
    assert set(_convolution_dtypes(whole)) == {torch.float32}
    (output,) = output_tuple(whole(torch.empty((2, 3, 416, 416), device="meta")))
    assert output.dtype == torch.float16  # the output is still the precision asked for


def _scores(output: torch.Tensor) -> torch.Tensor:
    output = output.float()
    return output[..., 4:5] * output[..., 5:]  # objectness x class


def test_the_float32_stem_brings_half_precision_scores_closer(
    yolox_traced: fx.GraphModule, all_frames: list[np.ndarray]
) -> None:
    """On two frames of the shared clips, fp16 with the fp32 stem changes yolox-nano's scores
    (those above 0.2) less than fp16 throughout. Run on the CPU, whose float16 convolutions
    round as a GPU's do, though not bit for bit."""
    from panoptes.models.preprocess import PreprocessSpec, preprocess_batch

    batch, _ = preprocess_batch([all_frames[0], all_frames[-1]], PreprocessSpec((416, 416)))
    images = torch.from_numpy(batch.copy())
    with torch.no_grad():
        (reference,) = output_tuple(yolox_traced(images))
        wanted = _scores(reference) > 0.2
        errors = {}
        for name, convolutions in (("fp16", 0), ("fp32 stem", 3)):
            module = copy.deepcopy(yolox_traced)
            stem = fp32_stem(module, convolutions)
            place_on_device(module, CPU, torch.float16, keep_fp32=stem)
            model_input = images if stem else images.half()
            (output,) = output_tuple(module(model_input))
            assert output.dtype == torch.float16
            errors[name] = (_scores(output) - _scores(reference))[wanted].abs()
    assert wanted.sum() > 50
    print({name: f"max {e.max():.4f} mean {e.mean():.5f}" for name, e in errors.items()})
    assert errors["fp32 stem"].mean() < 0.8 * errors["fp16"].mean()
    assert errors["fp32 stem"].max() < 0.02


def test_a_model_that_folds_its_batch_is_refused(shared_models: Path) -> None:
    """FastestDet reshapes [1, 48, 44, 44] to [2, 24, 1936] (batch × 2 groups): no constant
    says "batch" there, so the conversion fails, and says how to get on."""
    with pytest.raises(ModelError, match=r"cannot run a batch of 2.*batch_size: 1"):
        convert_for_batch(shared_models / "FastestDet.onnx", 2, (352, 352), CPU)


def test_a_model_onnx2torch_cannot_convert_says_why(shared_models: Path) -> None:
    """The int8 YOLOv8 uses onnxruntime's dynamic quantisation operators."""
    with pytest.raises(ModelError, match=r"onnx2torch cannot convert.*DynamicQuantizeLinear"):
        convert_for_batch(shared_models / "yolov8n_int8.onnx", 1, (640, 640), CPU)


def test_without_the_trace_the_module_reads_shapes_back_on_every_call(
    shared_models: Path,
) -> None:
    """The control for the test above: onnx2torch's own module, moved to a device, reads its
    Reshape and Slice arguments back from that device inside ``forward``."""
    from panoptes.models.gpu.convert import _onnx2torch_convert, _quiet_onnx2torch

    freed = free_batch_axis(onnx.load(str(shared_models / "yolox_nano.onnx")), (416, 416))
    with _quiet_onnx2torch():
        module = _onnx2torch_convert()(freed).to("meta")
        with pytest.raises(Exception, match="meta"):
            module(torch.empty((2, 3, 416, 416), device="meta"))


def _activations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a = x * torch.sigmoid(x)  # SiLU as ONNX writes it
    b = torch.sigmoid(a) * a  # the other order
    gate = torch.sigmoid(b)
    c = b * gate  # a sigmoid read again below stays
    return c, gate + x * torch.sigmoid(x + 1.0)  # not the same x: no SiLU


def test_silu_written_as_x_times_sigmoid_x_becomes_one_op() -> None:
    x = torch.linspace(-8.0, 8.0, 64).reshape(2, 32)
    traced = make_fx(_activations)(x)
    expected = traced(x)
    assert fuse_silu(traced) == 3
    targets = [str(node.target) for node in traced.graph.nodes if node.op == "call_function"]
    assert targets.count("aten.silu.default") == 3
    assert targets.count("aten.sigmoid.default") == 2  # the gate read twice, and sigmoid(x + 1)
    assert targets.count("aten.mul.Tensor") == 1
    for got, want in zip(traced(x), expected, strict=True):
        torch.testing.assert_close(got, want)


def test_the_converted_yolox_runs_silu(yolox_traced: fx.GraphModule) -> None:
    targets = [str(node.target) for node in yolox_traced.graph.nodes]
    # 110 sigmoids in the ONNX graph: 104 SiLUs and the head's 6 scores.
    assert targets.count("aten.silu.default") == 104
    assert targets.count("aten.sigmoid.default") == 6
