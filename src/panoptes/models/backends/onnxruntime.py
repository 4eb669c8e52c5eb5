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

__all__ = ["PROVIDER_NAMES", "OnnxRuntimeBackend", "tensorrt_cache_dir"]

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


def tensorrt_cache_dir() -> Path:
    """Where TensorRT engines built from ONNX models are kept between runs."""
    root = os.environ.get("PANOPTES_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "panoptes"
    return base / "tensorrt"


def _tensor_info(node: Any) -> TensorInfo:
    shape = tuple(dim if isinstance(dim, int) else None for dim in node.shape)
    return TensorInfo(node.name, shape, _DTYPES.get(node.type, np.dtype(np.float32)))


def _provider_list(providers: Sequence[str] | None) -> list[str | tuple[str, dict[str, Any]]]:
    names = [PROVIDER_NAMES.get(name.lower(), name) for name in providers or ["cpu"]]
    available = ort.get_available_providers()
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
    result: list[str | tuple[str, dict[str, Any]]] = []
    for name in names:
        if name == "TensorrtExecutionProvider":
            # Building an engine takes minutes: keep it for the next start.
            cache = tensorrt_cache_dir()
            cache.mkdir(parents=True, exist_ok=True)
            options = {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)}
            result.append((name, options))
        else:
            result.append(name)
    if "CPUExecutionProvider" not in names:
        result.append("CPUExecutionProvider")  # for the nodes the accelerator cannot run
    return result


class OnnxRuntimeBackend:
    """An ONNX model in an onnxruntime session.

    ``providers`` are onnxruntime execution providers in order of preference, by full name or as
    ``cpu``, ``cuda``, ``tensorrt``...; the CPU is the default and the last resort. ``threads``
    bounds the threads of one operator (onnxruntime's intra-op pool).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelNotFoundError(f"model file {self.path} does not exist")
        provider_list = _provider_list(providers)
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
