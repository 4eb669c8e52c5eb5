"""Inference backends: one small interface in front of onnxruntime, PyTorch and Triton.

A backend is named in :data:`BACKENDS` by a ``"module:Class"`` string that is imported only when
asked for, so an optional runtime costs nothing until a model uses it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from panoptes.core.errors import ModelError

__all__ = ["BACKENDS", "REMOTE_BACKENDS", "Backend", "TensorInfo", "load_backend"]


@dataclass(frozen=True)
class TensorInfo:
    """A model input or output: ``shape`` has None for dynamic dimensions; ``dtype`` is numpy's."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype[Any]


class Backend(Protocol):
    """Runs one model. ``run`` takes the NCHW batch for the model's single image input."""

    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    metadata: dict[str, str]

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs by name, each batch first."""
        ...

    def close(self) -> None:
        """Release the model (sessions, device memory)."""
        ...


#: Backend names to the ``"module:Class"`` that implements them.
BACKENDS: dict[str, str] = {
    "onnxruntime": "panoptes.models.backends.onnxruntime:OnnxRuntimeBackend",
    "torch": "panoptes.models.backends.pytorch:TorchBackend",
    "triton": "panoptes.models.backends.triton:TritonBackend",
}

#: Backends whose models live on a server: the model is named there, not found on this disk.
REMOTE_BACKENDS = frozenset({"triton"})

# The pip packages a backend needs beyond panoptes' own dependencies.
_BACKEND_PACKAGES = {
    "torch": "torch and onnx2torch (pip install 'panoptes[gpu]')",
    "triton": "tritonclient (pip install 'panoptes[triton]')",
}


def load_backend(name: str, path: str | Path, **options: Any) -> Backend:
    """Open the model at ``path`` with the backend called ``name`` (keyword options go to it)."""
    try:
        target = BACKENDS[name]
    except KeyError:
        raise ModelError(
            f"unknown backend {name!r}; known: {', '.join(sorted(BACKENDS))}"
        ) from None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        needed = _BACKEND_PACKAGES.get(name, "its package")
        raise ModelError(f"backend {name} needs {needed}: {error}") from error
    backend_class = getattr(module, class_name)
    backend: Backend = backend_class(path, **options)
    return backend
