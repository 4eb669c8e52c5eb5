"""onnxruntime's CUDA and TensorRT providers: the options panoptes gives them, checked without
onnxruntime-gpu (the available providers are given, not asked for)."""

from __future__ import annotations

from pathlib import Path

import onnxruntime
import pytest

from panoptes.core.errors import ModelError
from panoptes.models.backends.onnxruntime import (
    OnnxRuntimeBackend,
    execution_providers,
    provider_options,
    tensorrt_cache_dir,
)

GPU_BUILD = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PANOPTES_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_tensorrt_caches_engines_per_precision_in_the_panoptes_cache(cache: Path) -> None:
    providers = execution_providers(["tensorrt"], GPU_BUILD, gpu_id=1, precision="fp16")
    assert providers == [
        (
            "TensorrtExecutionProvider",
            {
                "device_id": 1,
                "trt_fp16_enable": True,
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(cache / "tensorrt" / "fp16"),
                "trt_timing_cache_enable": True,
                "trt_timing_cache_path": str(cache / "tensorrt" / "fp16"),
            },
        ),
        ("CUDAExecutionProvider", {"device_id": 1}),
        "CPUExecutionProvider",
    ]
    fp32 = provider_options("TensorrtExecutionProvider", precision="fp32")
    assert fp32 is not None and fp32["trt_engine_cache_path"] == str(tensorrt_cache_dir("fp32"))
    assert not fp32["trt_fp16_enable"]


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        (None, ["CPUExecutionProvider"]),
        (["cpu"], ["CPUExecutionProvider"]),
        (["cuda"], [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]),
        (
            ["CUDAExecutionProvider", "cpu"],
            [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"],
        ),
    ],
)
def test_provider_lists(cache: Path, wanted: list[str] | None, expected: list[object]) -> None:
    assert execution_providers(wanted, GPU_BUILD) == expected


def test_tensorrt_without_cuda_provider_goes_straight_to_the_cpu(cache: Path) -> None:
    providers = execution_providers(
        ["tensorrt"], ["TensorrtExecutionProvider", "CPUExecutionProvider"]
    )
    assert [p if isinstance(p, str) else p[0] for p in providers] == [
        "TensorrtExecutionProvider",
        "CPUExecutionProvider",
    ]


def test_a_missing_provider_names_the_package(cache: Path) -> None:
    with pytest.raises(ModelError, match=r"no TensorrtExecutionProvider.*onnxruntime-gpu"):
        execution_providers(["tensorrt"], ["CPUExecutionProvider"])


@pytest.mark.skipif(
    "TensorrtExecutionProvider" in onnxruntime.get_available_providers(), reason="has TensorRT"
)
def test_fp16_needs_tensorrt(shared_models: Path) -> None:
    with pytest.raises(ModelError, match="fp16 only through TensorRT"):
        OnnxRuntimeBackend(shared_models / "yolox_nano.onnx", precision="fp16")
    with pytest.raises(ModelError, match="precision must be fp32 or fp16"):
        OnnxRuntimeBackend(shared_models / "yolox_nano.onnx", precision="int8")
