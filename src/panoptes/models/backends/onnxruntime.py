"""The onnxruntime backend: CPU by default, CUDA and TensorRT with ``onnxruntime-gpu``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from panoptes.core.errors import ModelError, ModelNotFoundError
from panoptes.models.backends import TensorInfo

__all__ = [
    "PROVIDER_NAMES",
    "OnnxRuntimeBackend",
    "execution_providers",
    "provider_options",
    "tensorrt_cache_dir",
]

#: Short provider names accepted besides onnxruntime's own (``CUDAExecutionProvider``...).
PROVIDER_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
    "rocm": "ROCMExecutionProvider",
}

# The pip package that brings each provider, for the error that says it is missing.
_PROVIDER_PACKAGES = {
    "CUDAExecutionProvider": "onnxruntime-gpu",
    "TensorrtExecutionProvider": "onnxruntime-gpu (and TensorRT)",
    "OpenVINOExecutionProvider": "onnxruntime-openvino",
    "DmlExecutionProvider": "onnxruntime-directml",
    "ROCMExecutionProvider": "onnxruntime-rocm",
}

_DTYPES: dict[str, np.dtype[Any]] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(double)": np.dtype(np.float64),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(bool)": np.dtype(np.bool_),
}


def tensorrt_cache_dir(precision: str | None = None) -> Path:
    """Where TensorRT engines built from ONNX models are kept between runs:
    ``$PANOPTES_CACHE_DIR/tensorrt`` (else ``~/.cache/panoptes/tensorrt``), one folder per
    ``precision`` when given."""
    root = os.environ.get("PANOPTES_CACHE_DIR")
    base = (Path(root).expanduser() if root else Path.home() / ".cache" / "panoptes") / "tensorrt"
    return base / precision if precision else base


def _tensor_info(node: Any) -> TensorInfo:
    shape = tuple(dim if isinstance(dim, int) else None for dim in node.shape)
    return TensorInfo(node.name, shape, _DTYPES.get(node.type, np.dtype(np.float32)))


def provider_options(
    provider: str, *, gpu_id: int = 0, precision: str = "fp32"
) -> dict[str, Any] | None:
    """onnxruntime's options for one execution provider (full name), None when it takes none.

    CUDA: the GPU. TensorRT: the GPU, fp16 or not, and the engine and timing caches in
    :func:`tensorrt_cache_dir`, one folder per precision: onnxruntime names a cached engine
    after the model and the GPU, not after its precision, so an fp32 engine would otherwise be
    found for an fp16 run.
    """
    if provider == "CUDAExecutionProvider":
        return {"device_id": gpu_id}
    if provider == "TensorrtExecutionProvider":
        cache = str(tensorrt_cache_dir(precision))
        return {
            "device_id": gpu_id,
            "trt_fp16_enable": precision == "fp16",
            "trt_engine_cache_enable": True,  # building an engine takes minutes
            "trt_engine_cache_path": cache,
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": cache,
        }
    return None


def execution_providers(
    providers: Sequence[str] | None,
    available: Sequence[str],
    *,
    gpu_id: int = 0,
    precision: str = "fp32",
) -> list[str | tuple[str, dict[str, Any]]]:
    """The ``providers`` argument of an onnxruntime session for the wanted ``providers`` (short
    names as ``cpu``, ``cuda``, ``tensorrt``, or onnxruntime's own; default the CPU), given the
    ``available`` ones (``onnxruntime.get_available_providers()``).

    Each provider comes with its :func:`provider_options`; TensorRT is followed by CUDA when this
    onnxruntime has it, for the nodes TensorRT leaves, and the CPU always comes last. Raises
    :class:`ModelError` naming the package to install when a wanted provider is missing.
    """
    names = [PROVIDER_NAMES.get(name.lower(), name) for name in providers or ["cpu"]]
    missing = [name for name in names if name not in available]
    if missing:
        packages = sorted(
            {_PROVIDER_PACKAGES.get(name, "an onnxruntime build with it") for name in missing}
        )
        raise ModelError(
            f"onnxruntime has no {', '.join(missing)}; this onnxruntime offers "
            f"{', '.join(available)}. Install {' or '.join(packages)} in place of onnxruntime "
            f"(pip uninstall onnxruntime && pip install {packages[0].split()[0]})"
        )
    if names[-1] == "TensorrtExecutionProvider" and "CUDAExecutionProvider" in available:
        names.append("CUDAExecutionProvider")
    if "CPUExecutionProvider" not in names:
        names.append("CPUExecutionProvider")  # for the nodes the accelerator cannot run
    result: list[str | tuple[str, dict[str, Any]]] = []
    for name in names:
        options = provider_options(name, gpu_id=gpu_id, precision=precision)
        result.append(name if options is None else (name, options))
    return result


def _provider_list(
    providers: Sequence[str] | None, *, gpu_id: int, precision: str
) -> list[str | tuple[str, dict[str, Any]]]:
    result = execution_providers(
        providers, ort.get_available_providers(), gpu_id=gpu_id, precision=precision
    )
    for entry in result:
        if isinstance(entry, tuple) and "trt_engine_cache_path" in entry[1]:
            Path(entry[1]["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)
    return result


class OnnxRuntimeBackend:
    """An ONNX model in an onnxruntime session.

    ``providers`` are onnxruntime execution providers in order of preference, by full name or as
    ``cpu``, ``cuda``, ``tensorrt``...; the CPU is the default and the last resort. ``threads``
    bounds the threads of one operator (onnxruntime's intra-op pool). ``gpu_id`` picks the GPU
    of the CUDA and TensorRT providers; ``precision`` ``fp16`` lets TensorRT build fp16
    engines (the CUDA provider runs the model in its own precision).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        gpu_id: int = 0,
        precision: str = "fp32",
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelNotFoundError(f"model file {self.path} does not exist")
        if precision not in ("fp32", "fp16"):
            raise ModelError(f"precision must be fp32 or fp16, got {precision!r}")
        provider_list = _provider_list(providers, gpu_id=gpu_id, precision=precision)
        if precision == "fp16" and not any(
            isinstance(entry, tuple) and entry[0] == "TensorrtExecutionProvider"
            for entry in provider_list
        ):
            raise ModelError(
                "onnxruntime runs a model in fp16 only through TensorRT (providers: tensorrt); "
                "the CPU and CUDA providers run it in its own precision: use precision fp32"
            )
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: common exports warn on every load
        if threads is not None:
            options.intra_op_num_threads = threads
        # Idle workers would otherwise spin on the cores that decoding threads need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=provider_list
            )
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            message = str(exc)
            if "INVALID_PROTOBUF" in message or "protobuf parsing failed" in message.lower():
                raise ModelError(f"{self.path} is not an ONNX model: {message}") from exc
            raise ModelError(f"{self.path}: onnxruntime cannot load it: {message}") from exc
        wanted = [p if isinstance(p, str) else p[0] for p in provider_list]
        started = self._session.get_providers()
        lost = [name for name in wanted if name not in started]
        if lost:
            # onnxruntime falls back to the CPU silently when, say, the CUDA libraries are missing.
            raise ModelError(
                f"{self.path}: onnxruntime could not start {', '.join(lost)} (running on "
                f"{', '.join(started)}); check that the CUDA / cuDNN / TensorRT libraries that "
                "onnxruntime-gpu needs are installed and found"
            )
        self.providers: list[str] = started
        self.inputs = [_tensor_info(node) for node in self._session.get_inputs()]
        self.outputs = [_tensor_info(node) for node in self._session.get_outputs()]
        self.metadata: dict[str, str] = dict(self._session.get_modelmeta().custom_metadata_map)
        self._input_name = self.inputs[0].name if self.inputs else ""
        self._input_dtype = self.inputs[0].dtype if self.inputs else np.dtype(np.float32)
        self._output_names = [info.name for info in self.outputs]

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run the NCHW ``batch`` through the model: each output by name, batch first."""
        if batch.dtype != self._input_dtype:
            batch = batch.astype(self._input_dtype)  # float16 models
        values = self._session.run(self._output_names, {self._input_name: batch})
        return dict(zip(self._output_names, values, strict=True))

    def close(self) -> None:
        """Drop the session (its memory goes with it)."""
        self.__dict__.pop("_session", None)

    def __repr__(self) -> str:
        return f"OnnxRuntimeBackend({str(self.path)!r}, providers={self.providers})"
