"""The infer element's GPU settings: validated with their place, passed to the right backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

# The configuration loader imports every element kind, the media ones (PyAV) with them; a GPU
# machine without PyAV runs the other files of this folder.
pytest.importorskip("av")

from panoptes import Batch, Bus, ConfigError, Frame
from panoptes.config.loader import parse_config
from panoptes.core.element import BuildContext
from panoptes.elements.infer import Infer, InferProperties


def _config(infer: dict[str, Any], sources: int = 1, mux_batch: int = 0) -> Any:
    return parse_config(
        {
            "sources": [{"uri": f"clip{index}.mp4"} for index in range(sources)],
            "mux": {"batch_size": mux_batch},
            "infer": [infer],
        }
    )


@pytest.mark.parametrize(
    ("infer", "place", "words"),
    [
        ({"backend": "tensorflow"}, "infer[0].backend", "'onnxruntime', 'torch' or 'triton'"),
        ({"backend": "torch", "device": "tensorrt"}, "infer[0].device", "TensorRT provider"),
        ({"precision": "fp8"}, "infer[0].precision", "'fp32' or 'fp16'"),
        ({"precision": "fp16"}, "infer[0].precision", "fp16 runs on a GPU only"),
        ({"backend": "torch", "precision": "fp16"}, "infer[0].precision", "GPU only"),
        ({"device": "cuda", "precision": "fp16"}, "infer[0].precision", "in its own precision"),
        ({"batch_size": 8}, "infer[0].batch_size", "model's own batch size"),
        ({"backend": "torch", "batch_size": 0}, "infer[0].batch_size", "greater than or equal"),
        ({"backend": "torch", "cuda_graphs": True}, "infer[0].cuda_graphs", "device cuda"),
        ({"device": "cuda", "cuda_graphs": True}, "infer[0].cuda_graphs", "backend torch"),
        ({"compile": True}, "infer[0].compile", "for backend torch"),
        ({"gpu_id": 1}, "infer[0].gpu_id", "device cuda or tensorrt"),
        ({"device": "cuda", "gpu_id": -1}, "infer[0].gpu_id", "greater than or equal"),
    ],
)
def test_errors_name_their_place(infer: dict[str, Any], place: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _config(infer)
    message = str(caught.value)
    assert f"{place}: " in message and words in message, message


@pytest.mark.parametrize(
    "infer",
    [
        {"backend": "torch", "device": "cuda", "precision": "fp16", "batch_size": 64},
        {"backend": "torch", "device": "cuda", "cuda_graphs": False, "compile": True, "gpu_id": 1},
        {"backend": "torch"},
        {"device": "tensorrt", "precision": "fp16", "gpu_id": 2},
        {"device": "cuda"},
    ],
)
def test_valid_combinations(infer: dict[str, Any]) -> None:
    props = _config(infer).infer[0]
    for key, value in infer.items():
        assert getattr(props, key) == value


def _element(tmp_path: Path, config: Any) -> Infer:
    return Infer(
        config.infer[0], name="infer0", context=BuildContext(Bus(), tmp_path, "infer[0]", config)
    )


@pytest.mark.parametrize(
    ("infer", "sources", "mux_batch", "expected"),
    [
        ({"backend": "torch", "batch_size": 8}, 2, 4, 8),
        ({"backend": "torch"}, 3, 4, 4),
        ({"backend": "torch"}, 3, 0, 3),
    ],
)
def test_torch_batch_size_follows_the_mux(
    tmp_path: Path, infer: dict[str, Any], sources: int, mux_batch: int, expected: int
) -> None:
    element = _element(tmp_path, _config(infer, sources, mux_batch))
    options = element._backend_options()
    assert options["batch_size"] == expected and options["device"] == "cpu"
    assert element._providers() is None


def test_onnxruntime_options(tmp_path: Path) -> None:
    element = _element(tmp_path, _config({"device": "tensorrt", "precision": "fp16", "gpu_id": 1}))
    assert element._providers() == ["tensorrt"]
    assert element._backend_options() == {"gpu_id": 1, "precision": "fp16"}
    assert _element(tmp_path, _config({}))._backend_options() == {}


def test_a_torch_detector_in_a_pipeline_element(
    tmp_path: Path, all_frames: list[np.ndarray], shared_models: Path
) -> None:
    config = _config(
        {"model": str(shared_models / "yolox_nano.onnx"), "backend": "torch", "classes": [0]},
        sources=2,
    )
    element = _element(tmp_path, config)
    element.build()
    try:
        assert element.preferred_batch == 2 and element.detector.instances == 1
        frames = [
            Frame(index, f"cam{index}", 0, None, 0.0, (image.shape[1], image.shape[0]), image)
            for index, image in enumerate(all_frames[1:3])  # people in the one-by-one clip
        ]
        element.process(Batch(frames))
        (batch,) = element.drain()
    finally:
        element.close()
    for frame in batch.frames:
        assert len(frame.objects) >= 1 and set(frame.objects.labels) == {"person"}
        assert frame.meta.inferred_by == {1}


def test_classifiers_stay_on_onnxruntime(tmp_path: Path) -> None:
    config = parse_config(
        {
            "sources": [{"uri": "clip.mp4"}],
            "infer": [
                {"model": "yolox-nano"},
                {
                    "model": "yolox-nano",
                    "backend": "torch",
                    "process_mode": "secondary",
                    "network_type": "classifier",
                },
            ],
        }
    )
    element = Infer(
        config.infer[1], name="colour", context=BuildContext(Bus(), tmp_path, "infer[1]", config)
    )
    with pytest.raises(ConfigError, match=r"infer\[1\].backend: backend torch runs detectors"):
        element.build()


def test_inspect_shows_the_settings() -> None:
    fields = InferProperties.model_fields
    for name in ("backend", "precision", "batch_size", "cuda_graphs", "compile", "gpu_id"):
        assert fields[name].description, name
