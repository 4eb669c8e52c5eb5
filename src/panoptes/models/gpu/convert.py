"""From an ONNX file to a PyTorch module that runs a fixed batch on one device, with no host work.

Three steps, each for a fault found on the GPU:

1. **Free the batch axis** (:func:`free_batch_axis`). Many exports fix the batch in their Reshape
   shapes (yolox-nano reshapes to ``[1, 85, -1]``): converted as they are, a batch of 8 comes out
   as *one* image of 8 × 3549 rows, silently. A Reshape whose shape is a constant starting with the
   model's batch size, applied to a tensor whose first axis is not a known constant, gets 0 there
   (ONNX: "copy this axis from the input").
2. **Convert and trace** (:func:`convert_for_batch`). onnx2torch's Reshape, Slice and Resize read
   their shape arguments back from tensors on every call (``.tolist()``): on a GPU that is a
   device-to-host copy in the middle of ``forward``, which stalls the stream and makes CUDA-graph
   capture fail. Traced once at the fixed batch with real tensors (``make_fx``), those values
   become constants of a plain ATen graph. The traced module is checked against onnxruntime on
   two different images of the batch, which also proves that the batch axis is really free.
3. **Place on the device** (:func:`place_on_device`). Every tensor the graph reads (parameters,
   buffers, and the constants tracing leaves as plain attributes, which ``Module.to`` does not
   move) is moved to the device once, in the model's precision, and every device or dtype the
   graph names is pointed at the target.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import types
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper, shape_inference
from torch import fx
from torch.fx.experimental.proxy_tensor import make_fx
from torch.fx.node import map_aggregate

from panoptes.core.errors import ModelError
from panoptes.models.backends import TensorInfo

__all__ = [
    "convert_for_batch",
    "free_batch_axis",
    "onnx_interface",
    "output_tuple",
    "place_on_device",
]

#: How far the traced module may be from onnxruntime, relative to the output's largest value.
MATCH_TOLERANCE = 1e-3


# --- the ONNX side ---------------------------------------------------------------------------


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initializers = {initializer.name for initializer in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in initializers]


def _info(value: onnx.ValueInfoProto) -> TensorInfo:
    tensor_type = value.type.tensor_type
    shape = tuple(
        dim.dim_value if dim.HasField("dim_value") else None for dim in tensor_type.shape.dim
    )
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
    except KeyError:
        dtype = np.dtype(np.float32)
    return TensorInfo(value.name, shape, dtype)


def onnx_interface(
    model: onnx.ModelProto,
) -> tuple[list[TensorInfo], list[TensorInfo], dict[str, str]]:
    """The model's inputs, outputs (shapes with None for dynamic axes) and custom metadata."""
    inputs = [_info(value) for value in _graph_inputs(model)]
    outputs = [_info(value) for value in model.graph.output]
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    return inputs, outputs, metadata


def _first_dims(model: onnx.ModelProto) -> dict[str, int | None]:
    """The first axis of every tensor whose shape inference knows: its size, or None when it is
    symbolic (follows the input's batch, or is unknown)."""
    del model.graph.value_info[:]  # an export's stale shapes would hide the symbolic batch
    inferred = shape_inference.infer_shapes(model)
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    dims: dict[str, int | None] = {}
    for value in values:
        shape = value.type.tensor_type.shape
        if value.type.tensor_type.HasField("shape") and len(shape.dim):
            first = shape.dim[0]
            dims[value.name] = first.dim_value if first.HasField("dim_value") else None
    return dims


def free_batch_axis(model: onnx.ModelProto, input_size_wh: tuple[int, int]) -> onnx.ModelProto:
    """A copy of ``model`` whose batch axis is symbolic, input and outputs, and whose Reshapes
    no longer fix it (see the module's notes). Spatial axes are set to ``input_size_wh``."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    image_input = _graph_inputs(model)[0]
    dims = image_input.type.tensor_type.shape.dim
    batch_dim = dims[0]
    fixed_batch = batch_dim.dim_value if batch_dim.HasField("dim_value") else 1
    batch_dim.dim_param = "batch"
    if len(dims) == 4:
        dims[2].dim_value, dims[3].dim_value = input_size_wh[1], input_size_wh[0]
    for output in graph.output:
        if len(output.type.tensor_type.shape.dim):
            output.type.tensor_type.shape.dim[0].dim_param = "batch"

    initializers = {initializer.name: initializer for initializer in graph.initializer}
    constants = {
        node.output[0]: node.attribute[0].t
        for node in graph.node
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value"
    }
    reshapes = [
        node
        for node in graph.node
        if node.op_type == "Reshape"
        and not any(a.name == "allowzero" and a.i == 1 for a in node.attribute)
    ]
    # Each rewrite lets shape inference carry the batch one Reshape further: repeat until stable.
    for _ in range(len(reshapes) + 1):
        first_dims = _first_dims(model)
        changed = False
        for index, node in enumerate(reshapes):
            proto = initializers.get(node.input[1]) or constants.get(node.input[1])
            if proto is None or node.input[0] not in first_dims:
                continue
            shape = numpy_helper.to_array(proto)
            if shape.ndim != 1 or len(shape) == 0 or shape[0] != fixed_batch:
                continue
            if first_dims[node.input[0]] is not None:
                continue  # a tensor of known size: its first axis is not the batch
            freed = shape.astype(np.int64).copy()
            freed[0] = 0
            name = f"panoptes_batch_free_shape_{index}"
            initializer = numpy_helper.from_array(freed, name)
            graph.initializer.append(initializer)
            initializers[name] = initializer
            node.input[1] = name
            changed = True
        if not changed:
            break
    return model


# --- onnx2torch ------------------------------------------------------------------------------


@contextlib.contextmanager
def _torchvision_or_placeholder() -> Iterator[None]:
    """Lets onnx2torch import when torchvision is installed but cannot load.

    onnx2torch imports torchvision at import time, for its NonMaxSuppression and RoiAlign
    converters only. A torchvision that does not match torch (a CUDA build beside a CPU torch,
    the wrong version) raises then, and would stop every conversion. In that case a placeholder
    stands in while onnx2torch imports, and is removed after: those two operators then fail
    with the reason, and every other model converts.
    """
    try:
        importlib.import_module("torchvision")
    except Exception as error:  # torchvision raises RuntimeError, OSError... when it cannot load
        reason = f"torchvision cannot be loaded ({type(error).__name__}: {error})"
    else:
        yield
        return

    def unavailable(*args: object, **kwargs: object) -> None:
        raise ModelError(f"this model needs torchvision, and {reason}")

    placeholder = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    for name in ("nms", "batched_nms", "box_convert", "roi_align"):
        setattr(ops, name, unavailable)
    placeholder.ops = ops  # type: ignore[attr-defined]
    names = ("torchvision", "torchvision.ops")
    saved = {name: sys.modules[name] for name in names if name in sys.modules}
    sys.modules.update(zip(names, (placeholder, ops), strict=True))
    try:
        yield
    finally:
        for name in names:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


def _onnx2torch_convert() -> Callable[[onnx.ModelProto], fx.GraphModule]:
    module = sys.modules.get("onnx2torch")
    if module is None:
        with _torchvision_or_placeholder():
            try:
                module = importlib.import_module("onnx2torch")
            except ImportError as error:
                raise ModelError(
                    "backend torch converts ONNX models with onnx2torch, which is not installed "
                    f"({error}): pip install onnx2torch"
                ) from error
    convert: Callable[[onnx.ModelProto], fx.GraphModule] = module.convert
    return convert


@contextlib.contextmanager
def _quiet_onnx2torch() -> Iterator[None]:
    # onnx2torch warns about operator options PyTorch may treat differently, and torch warns
    # about the list indexing onnx2torch's Slice uses; the comparison with onnxruntime that
    # follows every conversion decides whether the result is right.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"onnx2torch(\.|$)")
        warnings.filterwarnings(
            "ignore", "Using a non-tuple sequence for multidimensional indexing", UserWarning
        )
        yield


@contextlib.contextmanager
def _exact_fp32(device: torch.device) -> Iterator[None]:
    """TF32 off on CUDA while the conversion is checked, so that fp32 means fp32 on Ampere and
    later. torch 2.9 and later name the setting ``fp32_precision`` and warn about the old
    ``allow_tf32`` flags."""
    if device.type != "cuda":
        yield
        return
    conv: Any = getattr(torch.backends.cudnn, "conv", None)
    matmul: Any = torch.backends.cuda.matmul
    if conv is not None and hasattr(conv, "fp32_precision"):
        saved = conv.fp32_precision, matmul.fp32_precision
        conv.fp32_precision = matmul.fp32_precision = "ieee"
        try:
            yield
        finally:
            conv.fp32_precision, matmul.fp32_precision = saved
        return
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def output_tuple(value: object) -> tuple[torch.Tensor, ...]:
    """A module's result as a tuple of tensors (a single output comes back bare)."""
    if isinstance(value, torch.Tensor):
        return (value,)
    if isinstance(value, tuple | list) and all(isinstance(v, torch.Tensor) for v in value):
        return tuple(value)
    raise ModelError(f"the converted model returned {type(value).__name__}, not tensors")


def _reference_outputs(path: Path, model_batch: int | None, image: np.ndarray) -> list[np.ndarray]:
    """onnxruntime's outputs for one [3, H, W] image, on the CPU, row 0 of each."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )
    batch = np.repeat(image[None], model_batch or 1, axis=0)
    name = session.get_inputs()[0].name
    return [np.asarray(value)[0] for value in session.run(None, {name: batch})]


def _check_against_onnxruntime(
    path: Path, model_batch: int | None, module: fx.GraphModule, example: torch.Tensor
) -> None:
    with torch.no_grad(), _exact_fp32(example.device):
        outputs = output_tuple(module(example))
    batch_size = example.shape[0]
    for row in sorted({0, batch_size - 1}):
        reference = _reference_outputs(path, model_batch, example[row].cpu().numpy())
        for index, (ours, theirs) in enumerate(zip(outputs, reference, strict=True)):
            if ours.shape[0] != batch_size or tuple(ours.shape[1:]) != theirs.shape:
                raise ModelError(
                    f"{path}: after conversion for batch {batch_size}, output {index} has shape "
                    f"{list(ours.shape)}, expected {[batch_size, *theirs.shape]}: the model fixes "
                    "its batch size in a way panoptes cannot free. Export it with a dynamic "
                    "batch axis, or use batch_size: 1"
                )
            difference = float(np.abs(ours[row].float().cpu().numpy() - theirs).max())
            scale = max(1.0, float(np.abs(theirs).max()))
            if not difference <= MATCH_TOLERANCE * scale:
                raise ModelError(
                    f"{path}: the PyTorch conversion does not match onnxruntime (output {index}, "
                    f"image {row} of a batch of {batch_size}: largest difference {difference:.3g} "
                    f"for values up to {scale:.3g}). Its graph may fix the batch size, or use an "
                    "operator onnx2torch converts differently: use backend onnxruntime, or "
                    "batch_size: 1"
                )


def convert_for_batch(
    path: Path,
    batch_size: int,
    input_size_wh: tuple[int, int],
    device: torch.device,
) -> fx.GraphModule:
    """The ONNX model at ``path`` as an fp32 ATen graph for [batch_size, 3, H, W] input on
    ``device``, checked against onnxruntime. Raises :class:`ModelError` when onnx2torch cannot
    convert it or the result does not match."""
    convert = _onnx2torch_convert()
    original = onnx.load(str(path))
    model_batch = _info(_graph_inputs(original)[0]).shape[0]
    freed = free_batch_axis(original, input_size_wh)
    try:
        with _quiet_onnx2torch():
            module = convert(freed).eval().to(device)
    except NotImplementedError as error:
        raise ModelError(f"{path}: onnx2torch cannot convert this model: {error}") from error
    width, height = input_size_wh
    generator = torch.Generator().manual_seed(0)
    example = torch.rand((batch_size, 3, height, width), generator=generator)
    # Two kinds of images, so that the check sees outputs far from zero whatever the model's
    # input range: 0..1 for the first, 0..255 for the others.
    example[1:] *= 255.0
    example = example.to(device)
    try:
        with torch.no_grad(), _quiet_onnx2torch():
            # Real tensors, and values read back from constant tensors burnt into the graph:
            # that is the point (see the module's notes). The check below catches a model
            # whose control flow depends on its input.
            traced = make_fx(module, tracing_mode="real", _error_on_data_dependent_ops=False)(
                example
            )
    except ModelError:
        raise
    except Exception as error:
        raise ModelError(
            f"{path}: the converted model cannot run a batch of {batch_size} "
            f"({type(error).__name__}: {error}). Its graph may fix the batch size in a way "
            "panoptes cannot free: export it with a dynamic batch axis, or use batch_size: 1"
        ) from error
    traced.graph.eliminate_dead_code()
    traced.delete_all_unused_submodules()
    traced.recompile()
    _check_against_onnxruntime(path, model_batch, traced, example)
    return traced


# --- the device ------------------------------------------------------------------------------


def _owner(root: torch.nn.Module, target: str) -> tuple[torch.nn.Module, str]:
    *path, name = target.split(".")
    owner = root
    for part in path:
        owner = getattr(owner, part)
    return owner, name


def place_on_device(
    module: fx.GraphModule, device: torch.device, dtype: torch.dtype = torch.float32
) -> fx.GraphModule:
    """Move every tensor ``module``'s graph reads to ``device`` (floating ones cast to
    ``dtype``), and point the devices and float32 dtypes named in the graph at them. In place;
    returns ``module``."""
    module.to(device)

    def retarget(value: Any) -> Any:
        if isinstance(value, torch.device):
            return device
        if isinstance(value, torch.dtype) and value == torch.float32:
            return dtype
        return value

    for node in module.graph.nodes:
        if node.op == "get_attr":
            owner, name = _owner(module, str(node.target))
            value = getattr(owner, name)
            if not isinstance(value, torch.Tensor):
                continue
            moved = value.detach().to(
                device=device, dtype=dtype if value.is_floating_point() else value.dtype
            )
            if name in owner._parameters:
                owner._parameters[name] = torch.nn.Parameter(moved, requires_grad=False)
            elif name in owner._buffers:
                owner._buffers[name] = moved
            else:
                setattr(owner, name, moved)
        elif node.op == "call_function":
            node.args = map_aggregate(node.args, retarget)
            node.kwargs = map_aggregate(node.kwargs, retarget)
    module.recompile()
    return module
