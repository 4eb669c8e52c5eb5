"""The onnxruntime backend: CPU by default, CUDA and TensorRT with ``onnxruntime-gpu``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from panoptes.core.errors import ModelError, ModelNotFoundError
from panoptes.models.backends import TensorInfo

__all__ = [
    "PROVIDER_NAMES",
    "SAVED_MODEL_KEY",
    "OnnxRuntimeBackend",
    "execution_providers",
    "provider_options",
    "saved_model_key",
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


#: The metadata entry that marks an ONNX file as a model panoptes saved (DeepStream's
#: ``model-engine-file``); its value says what the model was built from, as JSON.
SAVED_MODEL_KEY = "panoptes.saved_model"

# How much of a file's end is read to find the entry: a key of a few hundred bytes.
_SAVED_KEY_TAIL_BYTES = 4096
_SAVED_ENTRY_HEAD = b"\x0a" + bytes([len(SAVED_MODEL_KEY)]) + SAVED_MODEL_KEY.encode() + b"\x12"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _saved_model_trailer(key: dict[str, str]) -> bytes:
    """The key as one more ``metadata_props`` entry of an ONNX ``ModelProto`` (field 14).

    Protobuf merges a repeated field wherever it appears in the bytes, so appending it to a
    serialised model adds the entry without parsing the model: panoptes needs no onnx package
    for this, and the entry is always the file's last bytes, where :func:`saved_model_key`
    looks for it.
    """
    value = json.dumps(key, sort_keys=True).encode()
    entry = _SAVED_ENTRY_HEAD + _varint(len(value)) + value
    return b"\x72" + _varint(len(entry)) + entry


def saved_model_key(path: Path) -> dict[str, str] | None:
    """What the model panoptes saved at ``path`` was built from; None when ``path`` is not a
    model panoptes saved (a TensorRT engine, any other file) or cannot be read."""
    try:
        with path.open("rb") as file:
            file.seek(max(0, path.stat().st_size - _SAVED_KEY_TAIL_BYTES))
            tail = file.read()
    except OSError:
        return None
    start = tail.rfind(_SAVED_ENTRY_HEAD)
    if start < 0:
        return None
    rest = tail[start + len(_SAVED_ENTRY_HEAD) :]
    length, shift, used = 0, 0, 0
    for byte in rest[:4]:
        length |= (byte & 0x7F) << shift
        shift, used = shift + 7, used + 1
        if not byte & 0x80:
            break
    if length != len(rest) - used:
        return None
    try:
        key = json.loads(rest[used:])
    except ValueError:
        return None
    return key if isinstance(key, dict) else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


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

    ``saved_model`` is where the model, optimised by onnxruntime, is kept between runs
    (DeepStream's ``model-engine-file``): when that file is one panoptes saved from the same
    model with the same onnxruntime, providers and processor, it is loaded as it is (no
    optimisation pass); when it does not exist, or panoptes saved it from something else, the
    model is built from ``path`` and saved there. A file panoptes did not write (a TensorRT
    engine) is never overwritten: it is left as it is, with a warning. ``saved_model_used``
    says whether the saved model was loaded.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        gpu_id: int = 0,
        precision: str = "fp32",
        saved_model: str | Path | None = None,
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
        wanted = [p if isinstance(p, str) else p[0] for p in provider_list]
        self.saved_model_used = False
        if saved_model is None:
            self._session = self._open(self.path, options, provider_list)
        else:
            self._session = self._open_saved(Path(saved_model), options, provider_list, wanted)
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

    def _open(
        self, path: Path, options: ort.SessionOptions, providers: list[Any]
    ) -> ort.InferenceSession:
        try:
            return ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            message = str(exc)
            if "INVALID_PROTOBUF" in message or "protobuf parsing failed" in message.lower():
                raise ModelError(f"{path} is not an ONNX model: {message}") from exc
            raise ModelError(f"{path}: onnxruntime cannot load it: {message}") from exc

    def _open_saved(
        self, saved: Path, options: ort.SessionOptions, providers: list[Any], names: list[str]
    ) -> ort.InferenceSession:
        """The session of the model saved at ``saved`` when it matches, else of ``self.path``,
        saving the optimised model at ``saved`` when panoptes may write there."""
        from panoptes.models.detector import ModelWarning

        key = {
            "format": "1",
            "source_sha256": _sha256(self.path),
            "onnxruntime": ort.__version__,
            "providers": ",".join(names),
            "machine": platform.machine(),
        }
        if saved.exists():
            stored = saved_model_key(saved)
            if stored is None:
                warnings.warn(
                    f"{saved} is not a model panoptes saved (a TensorRT engine?): it is left as "
                    f"it is, and the model is loaded from {self.path}",
                    ModelWarning,
                    stacklevel=4,
                )
                return self._open(self.path, options, providers)
            if stored == key:
                # Optimised when it was saved: loading it again skips that pass.
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
                session = self._open(saved, options, providers)
                self.saved_model_used = True
                return session
        try:
            saved.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=f".{saved.name}.", dir=saved.parent)
            os.close(handle)
        except OSError as error:
            warnings.warn(
                f"cannot save the model at {saved} ({error}); the next start builds it again",
                ModelWarning,
                stacklevel=4,
            )
            return self._open(self.path, options, providers)
        try:
            options.optimized_model_filepath = temporary
            session = self._open(self.path, options, providers)
            with open(temporary, "ab") as file:
                file.write(_saved_model_trailer(key))
            os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide it from other users
            os.replace(temporary, saved)
        except OSError as error:
            warnings.warn(
                f"cannot save the model at {saved} ({error}); the next start builds it again",
                ModelWarning,
                stacklevel=4,
            )
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        return session

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
