"""From an ONNX file to a PyTorch module that runs a fixed batch on one device, with no host work.

Four steps, each for a fault found on the GPU or in a current exporter's files:

1. **Free the batch axis** (:func:`free_batch_axis`). Many exports fix the batch in their Reshape
   shapes (yolox-nano reshapes to ``[1, 85, -1]``): converted as they are, a batch of 8 comes out
   as *one* image of 8 × 3549 rows, silently. A Reshape whose shape is a constant starting with the
   model's batch size, applied to a tensor whose first axis is not a known constant, gets 0 there
   (ONNX: "copy this axis from the input").
2. **Meet onnx2torch** (:func:`fold_identity_initializers`, :func:`lower_opset`). PyTorch's
   TorchScript exporter stores equal weights once and feeds their other users through Identity
   nodes, while onnx2torch needs a Conv's weight and bias to be initializers themselves
   (``KeyError: 'model.2.cv1.conv.bias'``): each such Identity becomes a copy of its initializer.
   Current exporters write opset 18 and later, where onnx2torch 1.5 has no converter for Split,
   Resize, Reshape and others: such a model is taken down to the newest opset at which
   onnx2torch converts every operator of its graph.
3. **Convert and trace** (:func:`convert_for_batch`). onnx2torch's Reshape, Slice and Resize read
   their shape arguments back from tensors on every call (``.tolist()``): on a GPU that is a
   device-to-host copy in the middle of ``forward``, which stalls the stream and makes CUDA-graph
   capture fail. Traced once at the fixed batch with real tensors (``make_fx``), those values
   become constants of a plain ATen graph. The traced module is checked against onnxruntime on
   the user's file, on two different images of the batch, which also proves that the batch axis
   is really free and that the rewrites of steps 1 and 2 changed nothing. Before the check,
   ``x * sigmoid(x)``, how ONNX writes SiLU (110 times in yolox-nano), becomes one ``silu``
   (:func:`fuse_silu`): one kernel where eager PyTorch launched two, each reading and writing
   the whole feature map (on an H100, 34 µs of each 1080p frame's 216 µs of GPU time went to
   them), and one rounding instead of two in fp16.
4. **Place on the device** (:func:`place_on_device`). Every tensor the graph reads (parameters,
   buffers, and the constants tracing leaves as plain attributes, which ``Module.to`` does not
   move) is moved to the device once, in the model's precision, and every device or dtype the
   graph names is pointed at the target.

Every rewrite works on a copy in memory: the user's file is never written, and the conversion
cache stays keyed by its bytes.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.metadata
import sys
import types
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper, shape_inference, version_converter
from torch import fx
from torch.fx.experimental.proxy_tensor import make_fx
from torch.fx.node import map_aggregate

from panoptes.core.errors import ModelError
from panoptes.models.backends import TensorInfo

__all__ = [
    "FP32_STEM_CONVOLUTIONS",
    "OLDEST_LOWERED_OPSET",
    "convert_for_batch",
    "fold_identity_initializers",
    "fp32_stem",
    "free_batch_axis",
    "fuse_silu",
    "lower_opset",
    "onnx_interface",
    "output_tuple",
    "place_on_device",
    "prepare_for_onnx2torch",
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


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copied: onnx.ModelProto = onnx.ModelProto.FromString(model.SerializeToString())
    return copied


def fold_identity_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` in which every Identity node fed by an initializer is replaced by a
    copy of that initializer under the node's output name: the same computation, with every
    weight an initializer (see the module's notes). An Identity that gives a graph output is
    kept, since an initializer cannot be one."""
    model = _copy(model)
    graph = model.graph
    initializers = {initializer.name: initializer for initializer in graph.initializer}
    graph_outputs = {value.name for value in graph.output}
    kept: list[onnx.NodeProto] = []
    for node in graph.node:  # in graph order, so a chain of Identities folds from its start
        source = node.input[0] if node.op_type == "Identity" and node.input else ""
        if node.domain or source not in initializers or node.output[0] in graph_outputs:
            kept.append(node)
            continue
        weight = onnx.TensorProto()
        weight.CopyFrom(initializers[source])
        weight.name = node.output[0]
        graph.initializer.append(weight)
        initializers[weight.name] = weight
    if len(kept) < len(graph.node):
        del graph.node[:]
        graph.node.extend(kept)
    return model


def _default_opset(model: onnx.ModelProto) -> int | None:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return None


def _attribute(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _explicit_split_sizes(model: onnx.ModelProto) -> None:
    """Give every Split of ``model`` that says ``num_outputs`` (opset 18 and later) the sizes of
    its parts as a ``split`` input instead, the form opset 13 also reads. In place.

    The sizes come from the split axis' size, so that it must be known before run time. As in
    the ONNX specification and onnxruntime, parts are ``ceil(size / num_outputs)`` long, the
    last one shorter (7 into 3: 3, 3, 1)."""
    splits = [
        node
        for node in model.graph.node
        if node.op_type == "Split" and not node.domain and _attribute(node, "num_outputs")
    ]
    if not splits:
        return
    inferred = shape_inference.infer_shapes(model)
    shapes = {
        value.name: value.type.tensor_type.shape
        for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
        if value.type.tensor_type.HasField("shape")
    }
    for index, node in enumerate(splits):
        parts = int(_attribute(node, "num_outputs"))
        axis = int(_attribute(node, "axis", 0))
        where = f"Split node {node.name or index!r} (input {node.input[0]!r}, axis {axis})"
        shape = shapes.get(node.input[0])
        rank = len(shape.dim) if shape is not None else 0
        if shape is None or not -rank <= axis < rank:
            raise ModelError(f"{where}: the shape of its input is not known before run time")
        dim = shape.dim[axis % rank]
        if not dim.HasField("dim_value"):
            raise ModelError(
                f"{where}: it splits into num_outputs={parts} parts an axis whose size is not "
                "known before run time, a form only opset 18 and later have"
            )
        size = dim.dim_value
        part = -(-size // parts)
        sizes = [part] * (parts - 1) + [size - part * (parts - 1)]
        if sizes[-1] < 0:
            raise ModelError(f"{where}: an axis of size {size} has no {parts} parts")
        name = f"panoptes_split_sizes_{index}"
        model.graph.initializer.append(numpy_helper.from_array(np.array(sizes, np.int64), name))
        if len(node.input) > 1:
            node.input[1] = name
        else:
            node.input.append(name)
        kept = [attribute for attribute in node.attribute if attribute.name != "num_outputs"]
        del node.attribute[:]
        node.attribute.extend(kept)


#: The oldest opset :func:`lower_opset` takes a model down to. Below 13, Split, Squeeze and the
#: reductions take their axes as attributes, which onnx2torch does not need.
OLDEST_LOWERED_OPSET = 13

#: Where nodes wait while onnx's version converter takes the rest of the graph down.
_SET_ASIDE_DOMAIN = "panoptes.set_aside"


def _same_as_opset_13(node: onnx.NodeProto) -> bool:
    """Whether ``node`` means the same at opset 13 as at its own, newer, opset, for the
    operators onnx's version converter has no adapter to take down (onnx 1.23: "No Adapter From
    Version $18 for Split", "No Adapter To Version $17 for Pad")."""
    if node.domain:
        return False
    if node.op_type == "Split":  # once its sizes are explicit (see _explicit_split_sizes)
        return not _attribute(node, "num_outputs")
    if node.op_type == "Pad":  # opset 18 added an axes input, 19 the wrap mode
        has_axes = len(node.input) > 3 and bool(node.input[3])
        return not has_axes and _attribute(node, "mode", b"constant") != b"wrap"
    return False


def lower_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """A copy of ``model`` with its default-domain operators at ``opset`` (13 or later, older
    than the model's), by onnx's version converter.

    Splits and Pads, for which that converter has no adapter from opset 18 down, mean the same
    at opset 13 in the form exporters write (Splits once :func:`_explicit_split_sizes` has
    given their sizes): they are set aside while the converter takes the rest down, and put
    back unchanged. Raises :class:`ModelError` naming the node or operator that cannot be taken
    down, and why.
    """
    if not OLDEST_LOWERED_OPSET <= opset < (_default_opset(model) or 0):
        raise ModelError(
            f"cannot take a model of opset {_default_opset(model)} down to opset {opset}"
        )
    model = _copy(model)
    _explicit_split_sizes(model)
    set_aside = [node for node in model.graph.node if _same_as_opset_13(node)]
    for node in set_aside:
        node.domain = _SET_ASIDE_DOMAIN
    model.opset_import.append(helper.make_opsetid(_SET_ASIDE_DOMAIN, 1))
    try:
        lowered = version_converter.convert_version(model, opset)
    except Exception as error:  # the converter's C++ assertions come as RuntimeError, and more
        # "…/resize_18_17.h:29: adapt: Assertion `value == 0` failed: Resize antialias=1 is…"
        reason = str(error).rpartition("failed: ")[2].strip().rstrip(".") or type(error).__name__
        raise ModelError(
            f"onnx's version converter cannot take it down to opset {opset}: {reason}"
        ) from error
    for node in lowered.graph.node:
        if node.domain == _SET_ASIDE_DOMAIN:
            node.domain = ""
    imports = [entry for entry in lowered.opset_import if entry.domain != _SET_ASIDE_DOMAIN]
    del lowered.opset_import[:]
    lowered.opset_import.extend(imports)
    return lowered


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


def _onnx2torch_version() -> str:
    try:
        return importlib.metadata.version("onnx2torch")
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown)"


def _onnx2torch_has_converter(op_type: str, opset: int, domain: str = "") -> bool:
    """Whether onnx2torch converts ``op_type`` of ``domain`` in a model of that domain's
    ``opset`` (it picks the operator's newest version up to it, as onnx does)."""
    _onnx2torch_convert()  # imports onnx2torch, or says how to install it
    get_converter = importlib.import_module("onnx2torch.node_converters").get_converter
    try:
        get_converter(operation_type=op_type, version=opset, domain=domain)
    except NotImplementedError:
        return False
    return True


def _opset_for_onnx2torch(model: onnx.ModelProto) -> int | None:
    """The opset ``model`` must be taken down to for onnx2torch, or None when it converts the
    model's own. Raises :class:`ModelError` naming the operators it converts at no opset."""
    opsets = {entry.domain or "": int(entry.version) for entry in model.opset_import}
    opset = _default_opset(model)
    operators = {(node.domain, node.op_type) for node in model.graph.node}
    if opset is None:
        return None

    def convertible(domain: str, op_type: str, at: int) -> bool:
        # ``at`` is the default domain's opset; another domain keeps its own
        return _onnx2torch_has_converter(op_type, opsets.get(domain, 1) if domain else at, domain)

    unknown = sorted(
        f"{domain}.{op_type}" if domain else op_type
        for domain, op_type in operators
        if not any(convertible(domain, op_type, at) for at in range(1, opset + 1))
    )
    if unknown:
        raise ModelError(
            f"onnx2torch cannot convert this model: onnx2torch {_onnx2torch_version()} has no "
            f"converter for {', '.join(unknown)} at any opset up to the model's {opset}. Use "
            "backend onnxruntime for it"
        )
    oldest = min(opset, OLDEST_LOWERED_OPSET)
    newest = next(
        (
            at
            for at in range(opset, oldest - 1, -1)
            if all(convertible(domain, op_type, at) for domain, op_type in operators)
        ),
        None,
    )
    if newest is None:
        missing = sorted(
            op_type for domain, op_type in operators if not convertible(domain, op_type, opset)
        )
        raise ModelError(
            f"onnx2torch cannot convert this model: onnx2torch {_onnx2torch_version()} has, at "
            f"no opset from {opset} down to {oldest}, a converter for all of its "
            f"operators ({', '.join(missing)} have none at opset {opset}). Use backend "
            "onnxruntime for it"
        )
    return None if newest == opset else newest


def prepare_for_onnx2torch(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` (a copy) in a form onnx2torch converts: weights fed through Identity nodes
    folded, the opset taken down where onnx2torch lacks converters for the model's own (see the
    module's notes). Raises :class:`ModelError` saying what cannot be converted."""
    model = fold_identity_initializers(model)
    opset = _default_opset(model)
    target = _opset_for_onnx2torch(model)
    if target is None:
        return model
    needing = sorted(
        {
            node.op_type
            for node in model.graph.node
            if not node.domain and not _onnx2torch_has_converter(node.op_type, opset or 1)
        }
    )
    try:
        return lower_opset(model, target)
    except ModelError as error:
        raise ModelError(
            f"its opset {opset} is newer than onnx2torch {_onnx2torch_version()} converts for "
            f"{', '.join(needing)} (it converts them at opset {target} or older); {error}. "
            f"Export the model with opset {target} (torch.onnx.export(opset_version={target}), "
            f"Ultralytics opset={target}), or use backend onnxruntime"
        ) from error


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
    try:
        prepared = prepare_for_onnx2torch(free_batch_axis(original, input_size_wh))
    except ModelError as error:
        raise ModelError(f"{path}: {error}") from error
    try:
        with _quiet_onnx2torch():
            module = convert(prepared).eval().to(device)
    except NotImplementedError as error:
        raise ModelError(f"{path}: onnx2torch cannot convert this model: {error}") from error
    except ModelError:
        raise
    except Exception as error:  # onnx2torch meets a graph it does not expect with any error
        raise ModelError(
            f"{path}: onnx2torch {_onnx2torch_version()} failed on this model "
            f"({type(error).__name__}: {error}); use backend onnxruntime for it"
        ) from error
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
    fuse_silu(traced)
    _check_against_onnxruntime(path, model_batch, traced, example)
    return traced


def fuse_silu(module: fx.GraphModule) -> int:
    """Replace each ``mul(x, sigmoid(x))`` of ``module``'s ATen graph (either order) by
    ``silu(x)``; the sigmoid goes too when nothing else reads it. In place; returns how many."""
    aten = torch.ops.aten
    fused = 0
    for node in list(module.graph.nodes):
        if node.op != "call_function" or node.target != aten.mul.Tensor or len(node.args) != 2:
            continue
        first, second = node.args
        for sigmoid, other in ((first, second), (second, first)):
            if (
                isinstance(sigmoid, fx.Node)
                and sigmoid.op == "call_function"
                and sigmoid.target == aten.sigmoid.default
                and sigmoid.args[0] is other
            ):
                with module.graph.inserting_before(node):
                    silu = module.graph.call_function(aten.silu.default, (other,))
                silu.meta = dict(node.meta)
                node.replace_all_uses_with(silu)
                module.graph.erase_node(node)
                if not sigmoid.users:
                    module.graph.erase_node(sigmoid)
                fused += 1
                break
    module.graph.lint()
    module.recompile()
    return fused


# --- the device ------------------------------------------------------------------------------


def _owner(root: torch.nn.Module, target: str) -> tuple[torch.nn.Module, str]:
    *path, name = target.split(".")
    owner = root
    for part in path:
        owner = getattr(owner, part)
    return owner, name


#: How many of a model's first convolutions run in fp32 when it runs in fp16 (see
#: :func:`fp32_stem`).
FP32_STEM_CONVOLUTIONS = 3

_ACTIVATIONS = {
    torch.ops.aten.silu.default,
    torch.ops.aten.relu.default,
    torch.ops.aten.leaky_relu.default,
    torch.ops.aten.hardswish.default,
    torch.ops.aten.hardtanh.default,
    torch.ops.aten.sigmoid.default,
    torch.ops.aten.gelu.default,
    torch.ops.aten.elu.default,
    torch.ops.aten.mish.default,
}


def fp32_stem(module: fx.GraphModule, convolutions: int = FP32_STEM_CONVOLUTIONS) -> set[fx.Node]:
    """The nodes of ``module``'s graph that stay in fp32 when it runs in fp16: its input, and
    every node up to its ``convolutions``-th convolution and the activation that follows it
    (all of them for a model with fewer convolutions; none for ``convolutions`` 0).

    Why: the first layers see the image at full resolution, where batch norm, folded into the
    convolutions by the exporter, leaves large weights and biases that cancel each other (in
    yolox-nano's third convolution the bias reaches 76 for outputs of about 2). In fp16, the
    rounding of those layers' inputs and sums is amplified through the whole network. In an
    fp16 run of yolox-nano on the CPU in which only one convolution rounds to fp16, that
    convolution alone moves scores by up to 0.021 when it is the third, and by 0.006 or less
    when it is any of the 110 after it. With the first three in fp32, the worst score gap to
    onnxruntime over the test clips' frames on an H100 fell from 0.0245 to 0.013. They are a
    small part of the work: few channels, however large the image.
    """
    if convolutions <= 0:
        return set()
    stem: set[fx.Node] = set()
    seen = 0
    for node in module.graph.nodes:
        if node.op == "output":
            break
        stem.add(node)
        if node.op == "call_function" and node.target == torch.ops.aten.convolution.default:
            seen += 1
            if seen == convolutions:
                users = list(node.users)
                if (
                    len(users) == 1
                    and users[0].op == "call_function"
                    and users[0].target in _ACTIVATIONS
                ):
                    stem.add(users[0])
                break
    return stem


def place_on_device(
    module: fx.GraphModule,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    *,
    keep_fp32: set[fx.Node] | None = None,
) -> fx.GraphModule:
    """Move every tensor ``module``'s graph reads to ``device`` (floating ones cast to
    ``dtype``), and point the devices and float32 dtypes named in the graph at them. In place;
    returns ``module``.

    The nodes of ``keep_fp32`` (see :func:`fp32_stem`) keep float32: their tensors and dtypes
    stay float32, and each of their results that a node outside them reads is cast to ``dtype``
    for it, once. The graph's input is float32 when it is one of them."""
    keep = keep_fp32 or set()
    module.to(device)

    def retarget(value: Any, *, to: torch.dtype) -> Any:
        if isinstance(value, torch.device):
            return device
        if isinstance(value, torch.dtype) and value == torch.float32:
            return to
        return value

    for node in list(module.graph.nodes):
        to = torch.float32 if node in keep else dtype
        if node.op == "get_attr":
            owner, name = _owner(module, str(node.target))
            value = getattr(owner, name)
            if not isinstance(value, torch.Tensor):
                continue
            moved = value.detach().to(
                device=device, dtype=to if value.is_floating_point() else value.dtype
            )
            if name in owner._parameters:
                owner._parameters[name] = torch.nn.Parameter(moved, requires_grad=False)
            elif name in owner._buffers:
                owner._buffers[name] = moved
            else:
                setattr(owner, name, moved)
        elif node.op == "call_function":
            node.args = map_aggregate(node.args, functools.partial(retarget, to=to))
            node.kwargs = map_aggregate(node.kwargs, functools.partial(retarget, to=to))
        if node in keep and dtype != torch.float32:
            outside = [user for user in node.users if user not in keep]
            if outside and _is_float_tensor(node):
                with module.graph.inserting_after(node):
                    cast = module.graph.call_function(
                        torch.ops.aten._to_copy.default, (node,), {"dtype": dtype}
                    )
                for user in outside:
                    user.replace_input_with(node, cast)
    module.graph.lint()
    module.recompile()
    return module


def _is_float_tensor(node: fx.Node) -> bool:
    """Whether tracing recorded ``node``'s value as a floating tensor (a get_attr is looked up
    on its owner when it has no record)."""
    value = node.meta.get("val")
    if value is None and node.op == "get_attr":
        owner, name = _owner(node.graph.owning_module, str(node.target))  # type: ignore[arg-type]
        value = getattr(owner, name)
    return isinstance(value, torch.Tensor) and value.is_floating_point()
