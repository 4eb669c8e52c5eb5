"""The PyTorch backend: an ONNX model converted for torch, at a fixed batch, on the CPU or a GPU.

The model is converted with onnx2torch and prepared for one batch size and one device (see
:mod:`panoptes.models.gpu.convert`); the result is cached on disk (see
:mod:`panoptes.models.gpu.cache`), so that a second start loads it instead. On CUDA the model
runs in fp32 or fp16, replayed from a CUDA graph captured after warm-up (one launch per batch
instead of hundreds), optionally compiled with ``torch.compile`` first.

Besides the :class:`~panoptes.models.backends.Backend` interface (numpy in, numpy out), it offers
:meth:`TorchBackend.run_device`, tensors in and out on its device, which
:class:`~panoptes.models.gpu.pipeline.DevicePipeline` uses to keep a batch on the GPU from
pre-processing to NMS.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.metadata
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import torch
from torch import fx

from panoptes.core.errors import ModelError, ModelNotFoundError
from panoptes.core.gpu_wait import set_gpu_wait
from panoptes.models.backends import TensorInfo
from panoptes.models.detector import ModelWarning, _metadata_size
from panoptes.models.gpu.cache import ArtefactCache, ArtefactKey, CacheWarning, file_sha256
from panoptes.models.gpu.convert import (
    convert_for_batch,
    fp32_stem,
    onnx_interface,
    output_tuple,
    place_on_device,
)
from panoptes.models.gpu.preprocess import on_device
from panoptes.models.image_input import check_image_input, image_input_size

__all__ = ["ARTEFACT_FORMAT", "Precision", "TorchBackend", "device_label", "resolve_device"]

Precision = Literal["fp32", "fp16"]

#: The version of what :mod:`panoptes.models.gpu.convert` stores; a change rebuilds the cache.
ARTEFACT_FORMAT = 3

#: Forward passes before a CUDA graph is captured (cuDNN picks its algorithms, memory settles).
WARMUP_RUNS = 3

_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16}


def resolve_device(device: str, gpu_id: int = 0) -> torch.device:
    """``cpu`` or ``cuda`` (GPU ``gpu_id``) as a torch device, checked against this torch."""
    if device == "cpu":
        return torch.device("cpu")
    if device != "cuda":
        raise ModelError(f"backend torch runs on cpu or cuda, not {device!r}")
    set_gpu_wait()  # before torch starts the GPU's context, where it can
    if not torch.cuda.is_available():
        raise ModelError(
            f"device cuda: this PyTorch ({torch.__version__}) sees no CUDA GPU; install a CUDA "
            "build of torch (https://pytorch.org/get-started/locally/) and check nvidia-smi, or "
            "use device: cpu"
        )
    count = torch.cuda.device_count()
    if not 0 <= gpu_id < count:
        raise ModelError(f"gpu_id {gpu_id}: this machine has {count} GPU(s), 0 to {count - 1}")
    return torch.device("cuda", gpu_id)


def device_label(device: torch.device) -> str:
    """The device's model, for cache keys: ``cpu``, or ``cuda <name> sm<major><minor>``."""
    if device.type != "cuda":
        return device.type
    major, minor = torch.cuda.get_device_capability(device)
    return f"cuda {torch.cuda.get_device_name(device)} sm{major}{minor}"


def _tool_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def _numpy(value: torch.Tensor) -> np.ndarray:
    if value.dtype in (torch.float16, torch.bfloat16):
        value = value.float()
    result: np.ndarray = value.cpu().numpy()
    return result


class TorchBackend:
    """An ONNX model run by PyTorch at a fixed batch on ``device`` (``cpu`` or ``cuda``).

    ``precision`` is ``fp32`` or ``fp16`` (CUDA only; the model's first three convolutions and
    its input stay fp32, see :func:`~panoptes.models.gpu.convert.fp32_stem`). ``batch_size`` is
    the fixed batch every run is padded to (default: the model's own, else 1). ``cuda_graphs``
    replays the model from a CUDA graph (default: on CUDA). ``compile`` runs it through
    ``torch.compile`` first.
    ``gpu_id`` picks the GPU. ``input_size_wh`` sets the input size of a model whose size is
    dynamic. ``cache_dir`` holds the converted model (default ``$PANOPTES_CACHE_DIR/torch``).
    ``threads`` sets torch's CPU threads (process-wide: torch has no per-model setting).
    ``providers`` exists for the common backend options and must stay None.

    After loading, ``cache_hit`` says whether the converted model came from the cache,
    ``artefact_path`` where it is, and ``load_s`` how long loading took.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "cpu",
        precision: Precision = "fp32",
        batch_size: int | None = None,
        cuda_graphs: bool | None = None,
        compile: bool = False,
        gpu_id: int = 0,
        input_size_wh: Sequence[int] | None = None,
        cache_dir: Path | None = None,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> None:
        started = time.perf_counter()
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelNotFoundError(f"model file {self.path} does not exist")
        if providers:
            raise ModelError(
                f"providers {list(providers)} are onnxruntime's; backend torch takes device "
                "(cpu or cuda)"
            )
        if precision not in _DTYPES:
            raise ModelError(f"precision must be fp32 or fp16, got {precision!r}")
        if batch_size is not None and batch_size < 1:
            raise ModelError(f"batch_size must be at least 1, got {batch_size}")
        self.device = resolve_device(device, gpu_id)
        if precision == "fp16" and self.device.type != "cuda":
            raise ModelError(
                "precision fp16 runs on cuda only (on the CPU, torch's float16 convolutions are "
                "slow and inexact): use precision fp32, or device cuda"
            )
        if cuda_graphs and self.device.type != "cuda":
            raise ModelError("cuda_graphs needs device cuda")
        if threads is not None and self.device.type == "cpu":
            torch.set_num_threads(threads)
        if self.device.type == "cuda":
            # Every batch has the same shape: let cuDNN time its algorithms once and keep the best.
            torch.backends.cudnn.benchmark = True
        self.precision: Precision = precision
        self.dtype = _DTYPES[precision]
        # In fp16 the model's first layers run in fp32 (see convert.fp32_stem), and so does its
        # input, which keeps the pre-processed pixels exact.
        self.input_dtype = torch.float32

        model = onnx.load(str(self.path))
        inputs, outputs, self.metadata = onnx_interface(model)
        image_input = check_image_input(inputs, str(self.path), "model")
        width, height = image_input_size(
            image_input, input_size_wh, str(self.path), fallback=_metadata_size(self.metadata)
        )
        self.batch_size: int = batch_size or image_input.shape[0] or 1
        self.input_size_wh = (width, height)
        self._input_shape = (self.batch_size, 3, height, width)
        self.inputs = [TensorInfo(image_input.name, self._input_shape, np.dtype(np.float32))]
        self.outputs = [
            TensorInfo(info.name, (self.batch_size, *info.shape[1:]), info.dtype)
            for info in outputs
        ]
        self._output_names = [info.name for info in outputs]

        key = ArtefactKey(
            model_sha256=file_sha256(self.path),
            backend="torch",
            precision=precision,
            batch_size=self.batch_size,
            input_size_wh=self.input_size_wh,
            device=device_label(self.device),
            tools=(
                ("panoptes-artefact", str(ARTEFACT_FORMAT)),
                ("torch", torch.__version__),
                ("onnx2torch", _tool_version("onnx2torch")),
            ),
        )
        cache = ArtefactCache(cache_dir)
        stem = self.path.stem
        module = cache.load(key, stem, lambda file: self._read_artefact(file, key))
        self.cache_hit = module is not None
        if module is None:
            module = convert_for_batch(self.path, self.batch_size, self.input_size_wh, self.device)
            fp32_nodes = fp32_stem(module) if precision == "fp16" else None
            place_on_device(module, self.device, self.dtype, keep_fp32=fp32_nodes)
            prepared = module
            cache.store(
                key, stem, lambda file: torch.save({"key": key.as_dict(), "module": prepared}, file)
            )
        self.artefact_path = cache.path(key, stem)
        module.eval().requires_grad_(False)
        self._module: fx.GraphModule = module
        self._forward: Callable[[torch.Tensor], Any] = module
        self._static_input: torch.Tensor | None = None
        self._static_outputs: tuple[torch.Tensor, ...] = ()
        self._graph: torch.cuda.CUDAGraph | None = None
        if compile:
            self._forward = self._compile(module, cache, key, stem)
        self.cuda_graphs = False
        if cuda_graphs or (cuda_graphs is None and self.device.type == "cuda"):
            self._capture(explicit=bool(cuda_graphs))
        self.load_s = time.perf_counter() - started

    # -- loading ---------------------------------------------------------------------------------

    def _read_artefact(self, file: Path, key: ArtefactKey) -> fx.GraphModule:
        # A GraphModule is stored with its generated code, which only a full unpickling restores.
        # The file is one panoptes wrote in the user's own cache folder, trusted as the model
        # file beside it is.
        # Its code may name modules that tracing imported in the process that wrote it and a
        # fresh process has not (torch 2.11 with Triton: ``torch._higher_order_ops.
        # triton_kernel_wrap``): the tracer's modules are imported first, as tracing would.
        for name in (
            "torch.fx.experimental.proxy_tensor",
            "torch._higher_order_ops.triton_kernel_wrap",
        ):
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
        stored = torch.load(file, map_location=self.device, weights_only=False)
        if not isinstance(stored, dict) or not isinstance(stored.get("module"), fx.GraphModule):
            raise ValueError("not a panoptes torch artefact")
        if stored.get("key") != key.as_dict():
            raise ValueError("built for another model, precision, batch size or device")
        module: fx.GraphModule = stored["module"]
        return module

    def _example(self) -> torch.Tensor:
        return torch.zeros(self._input_shape, dtype=self.input_dtype, device=self.device)

    def _compile(
        self, module: fx.GraphModule, cache: ArtefactCache, key: ArtefactKey, stem: str
    ) -> Callable[[torch.Tensor], Any]:
        """``torch.compile`` of the module, compiled now rather than on the first batch; its
        kernels are kept in the cache (torch's portable compile cache) for the next start."""
        compile_key = dataclasses.replace(key, tools=(*key.tools, ("compile", "inductor")))

        def load_kernels(file: Path) -> bool:
            torch.compiler.load_cache_artifacts(file.read_bytes())
            return True

        warm = cache.load(compile_key, stem, load_kernels, suffix=".compile.bin")
        compiled: Callable[[torch.Tensor], Any] = torch.compile(
            module, fullgraph=True, dynamic=False
        )
        with torch.no_grad():
            compiled(self._example())
        if not warm:
            try:
                saved = torch.compiler.save_cache_artifacts()
            except Exception as error:  # an inductor that cannot pack its caches: no reuse
                warnings.warn(
                    f"model {self.path}: the compiled kernels cannot be kept ({error}); the next "
                    "start compiles again",
                    CacheWarning,
                    stacklevel=3,
                )
                saved = None
            if saved is not None:
                kernels = saved[0]
                cache.store(
                    compile_key, stem, lambda file: file.write_bytes(kernels), suffix=".compile.bin"
                )
        return compiled

    def _capture(self, *, explicit: bool) -> None:
        """Record one forward pass at the fixed batch into a CUDA graph, replayed by
        :meth:`run_device`. Fails with :class:`ModelError` when ``explicit``, else warns and
        stays eager."""
        static_input = self._example()
        try:
            side = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side), torch.no_grad():
                for _ in range(WARMUP_RUNS):
                    self._forward(static_input)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.no_grad(), torch.cuda.graph(graph):
                static_outputs = output_tuple(self._forward(static_input))
        except Exception as error:
            reason = (
                f"model {self.path}: CUDA graph capture failed ({type(error).__name__}: {error})"
            )
            if explicit:
                raise ModelError(f"{reason}; set cuda_graphs: false") from error
            warnings.warn(f"{reason}; running without", ModelWarning, stacklevel=3)
            return
        self._static_input, self._static_outputs, self._graph = (
            static_input,
            static_outputs,
            graph,
        )
        self.cuda_graphs = True

    # -- running ---------------------------------------------------------------------------------

    def input_buffer(self, count: int) -> torch.Tensor | None:
        """Where a batch of ``count`` images for :meth:`run_device` is best written: the CUDA
        graph's own input (in ``input_dtype``), which then needs no copy; None without a graph
        or for more than ``batch_size`` images."""
        if self._static_input is None or not 0 < count <= self.batch_size:
            return None
        return self._static_input[:count]

    def graph_outputs(self) -> dict[str, torch.Tensor] | None:
        """The CUDA graph's output buffers by name, whole batch (None without a graph): what
        every :meth:`run_device` writes, so that a second graph can read them."""
        if self._graph is None:
            return None
        return dict(zip(self._output_names, self._static_outputs, strict=True))

    def run_device(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run an NCHW ``batch`` of at most ``batch_size`` images (moved to the device and
        precision if need be): each output by name, batch first, on the device.

        The outputs may be the CUDA graph's own buffers: consume them before the next call.
        """
        count = batch.shape[0]
        if not 0 < count <= self.batch_size:
            raise ValueError(f"batch of {count} images; this model runs 1 to {self.batch_size}")
        if not on_device(batch, self.device) or batch.dtype != self.input_dtype:
            batch = batch.to(self.device, self.input_dtype, non_blocking=True)
        with torch.no_grad():
            if self._graph is not None and self._static_input is not None:
                target = self._static_input[:count]
                if batch.data_ptr() != target.data_ptr() or batch.stride() != target.stride():
                    target.copy_(batch)  # else written there already (input_buffer)
                self._graph.replay()
                values = self._static_outputs
            else:
                if count < self.batch_size:
                    padding = batch.new_zeros((self.batch_size - count, *batch.shape[1:]))
                    batch = torch.cat([batch, padding])
                values = output_tuple(self._forward(batch))
        return {
            name: value if len(value) == count else value[:count]
            for name, value in zip(self._output_names, values, strict=True)
        }

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run an NCHW float ``batch`` of any length (in chunks of ``batch_size``): each output
        by name, batch first, as numpy (float16 widened to float32)."""
        tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        parts: list[dict[str, np.ndarray]] = []
        for start in range(0, len(tensor), self.batch_size):
            outputs = self.run_device(tensor[start : start + self.batch_size])
            parts.append({name: _numpy(value) for name, value in outputs.items()})
        if len(parts) == 1:
            return parts[0]
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    def close(self) -> None:
        """Drop the model, its CUDA graph and buffers (device memory goes with them)."""
        for name in ("_graph", "_static_input", "_forward", "_module"):
            self.__dict__.pop(name, None)
        self._static_outputs = ()
        self._graph = None

    def __repr__(self) -> str:
        return (
            f"TorchBackend({str(self.path)!r}, device={self.device}, precision={self.precision}, "
            f"batch={self.batch_size}, cuda_graphs={self.cuda_graphs})"
        )
