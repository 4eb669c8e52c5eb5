"""The onnxruntime backend and the backend registry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from panoptes.core.errors import ModelError, ModelNotFoundError
from panoptes.models.backends import BACKENDS, TensorInfo, load_backend
from panoptes.models.backends.onnxruntime import OnnxRuntimeBackend


def test_describes_and_runs_a_model(models_dir: Path) -> None:
    backend = load_backend("onnxruntime", models_dir / "yolox_nano.onnx", threads=1)
    try:
        assert backend.inputs == [TensorInfo("images", (1, 3, 416, 416), np.dtype(np.float32))]
        assert backend.outputs == [TensorInfo("output", (1, 3549, 85), np.dtype(np.float32))]
        assert backend.metadata == {}
        outputs = backend.run(np.zeros((1, 3, 416, 416), np.float32))
        assert list(outputs) == ["output"] and outputs["output"].shape == (1, 3549, 85)
    finally:
        backend.close()


def test_metadata_and_dynamic_dimensions(models_dir: Path, mean_model: Callable[..., Path]) -> None:
    backend = OnnxRuntimeBackend(models_dir / "yolov8n_int8.onnx")
    assert backend.metadata["task"] == "detect" and "names" in backend.metadata
    backend.close()
    dynamic = OnnxRuntimeBackend(mean_model("batch"))
    assert dynamic.inputs[0].shape == (None, 3, 64, 64)
    assert dynamic.outputs[0].shape == (None, 1, 6)
    outputs = dynamic.run(np.ones((3, 3, 64, 64), np.float32))
    assert outputs["detections"].shape == (3, 1, 6)
    dynamic.close()


@pytest.mark.parametrize(
    "content", [b"this is a text file, not a model\n", bytes(range(256)) * 4], ids=["text", "bytes"]
)
def test_not_an_onnx_model(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=f"{path} is not an ONNX model: "):
        OnnxRuntimeBackend(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"nothing\.onnx does not exist"):
        OnnxRuntimeBackend(tmp_path / "nothing.onnx")


@pytest.mark.skipif(
    "CUDAExecutionProvider" in onnxruntime.get_available_providers(), reason="has CUDA"
)
@pytest.mark.parametrize("provider", ["cuda", "tensorrt", "CUDAExecutionProvider"])
def test_missing_gpu_provider_says_what_to_install(models_dir: Path, provider: str) -> None:
    with pytest.raises(ModelError) as caught:
        OnnxRuntimeBackend(models_dir / "yolox_nano.onnx", providers=[provider])
    message = str(caught.value)
    assert "CPUExecutionProvider" in message and "onnxruntime-gpu" in message


def test_unknown_backend_lists_the_known_ones(models_dir: Path) -> None:
    with pytest.raises(ModelError, match="unknown backend 'tensorflow'; known: onnxruntime"):
        load_backend("tensorflow", models_dir / "yolox_nano.onnx")
    assert BACKENDS["onnxruntime"] == "panoptes.models.backends.onnxruntime:OnnxRuntimeBackend"
