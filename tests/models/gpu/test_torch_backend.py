"""backend: torch end to end, against onnxruntime on frames of the shared clips.

The rule (:mod:`panoptes.models.gpu.compare`): every box of one path has a box of the same class
at IoU >= 0.9 in the other, scores within 0.02. On the CPU the torch path runs in fp32; on a GPU
(``-m gpu``) in fp16 with CUDA graphs, and in fp32.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch_gpu_helpers import device_or_skip

from panoptes.core.errors import ModelError
from panoptes.models.backends import load_backend
from panoptes.models.backends.pytorch import TorchBackend
from panoptes.models.detector import Detections, Detector, ModelWarning
from panoptes.models.gpu.compare import MatchReport, match_detections, match_many

THRESHOLD = 0.25
NMS_IOU = 0.45  # the detectors' default


@pytest.fixture(scope="module")
def onnxruntime_results(
    shared_models: Path, all_frames: list[np.ndarray]
) -> dict[str, list[Detections]]:
    """The CPU path's detections of every frame, per model."""
    results = {}
    for name in ("yolox_nano", "nanodet_m_416"):
        with Detector(shared_models / f"{name}.onnx", threads=1, threshold=THRESHOLD) as cpu:
            results[name] = [result.detections for result in cpu.detect(all_frames)]
    return results


@pytest.fixture(scope="module")
def torch_yolox(shared_models: Path, torch_cache: Path) -> Iterator[Detector]:
    """yolox-nano on backend torch, CPU, fp32, batches of 4 (9 frames: 4 + 4 + 1 padded)."""
    options = {"batch_size": 4, "cache_dir": torch_cache}
    with Detector(
        shared_models / "yolox_nano.onnx", backend="torch", backend_options=options
    ) as detector:
        yield detector


def _report(
    name: str,
    report: MatchReport,
    capsys: pytest.CaptureFixture[str],
    sides: tuple[list[Detections], list[Detections]] | None = None,
) -> None:
    with capsys.disabled():  # the figures, for the record
        print(
            f"\n{name}: {report.matched} boxes matched, min IoU {report.min_iou:.4f}, max score "
            f"difference {report.max_score_difference:.5f}, unmatched {report.unmatched}, "
            f"borderline {report.borderline}, swapped {report.swapped}"
        )
        for image, side, index in report.unmatched:
            if sides is None:
                break
            ours, other = sides[side][image], sides[1 - side][image]
            print(f"  {_box(ours, index)}; nearest on the other side:")
            if len(other):
                print(f"    {_box(other, int(np.argmax(box_iou(ours.xyxy[index], other.xyxy))))}")


def box_iou(xyxy: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one box [4] with each of ``others`` [N, 4]."""
    top_left = np.maximum(xyxy[:2], others[:, :2])
    bottom_right = np.minimum(xyxy[2:], others[:, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(axis=1)
    area = np.prod(xyxy[2:] - xyxy[:2])
    union = area + np.prod(others[:, 2:] - others[:, :2], axis=1) - inter
    return np.asarray(inter / union)


def _box(detections: Detections, index: int) -> str:
    xyxy = np.round(detections.xyxy[index], 1).tolist()
    return (
        f"box {xyxy} score {float(detections.confidence[index]):.4f} "
        f"class {int(detections.class_id[index])}"
    )


def assert_identical(ours: list[Detections], theirs: list[Detections]) -> None:
    """The same boxes, scores and classes, in the same order, image by image."""
    assert len(ours) == len(theirs)
    for mine, reference in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(mine.xyxy, reference.xyxy)
        np.testing.assert_array_equal(mine.confidence, reference.confidence)
        np.testing.assert_array_equal(mine.class_id, reference.class_id)


def test_torch_matches_onnxruntime_on_the_shared_clips(
    torch_yolox: Detector,
    all_frames: list[np.ndarray],
    onnxruntime_results: dict[str, list[Detections]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    ours = [result.detections for result in torch_yolox.detect(all_frames)]
    report = match_many(
        ours, onnxruntime_results["yolox_nano"], threshold=THRESHOLD, nms_iou=NMS_IOU
    )
    _report("yolox_nano torch fp32 cpu vs onnxruntime", report, capsys)
    assert report.ok, report
    assert report.matched >= 2 * 10  # people and cars on every clip, both ways


def test_batches_smaller_than_the_fixed_batch_are_padded(
    torch_yolox: Detector,
    all_frames: list[np.ndarray],
    onnxruntime_results: dict[str, list[Detections]],
) -> None:
    for index in (0, 4, 8):
        (result,) = torch_yolox.detect([all_frames[index]])
        assert match_detections(
            result.detections, onnxruntime_results["yolox_nano"][index], threshold=THRESHOLD
        ).ok


def test_a_batch_beyond_the_fixed_selection_is_still_selected_exactly(
    torch_yolox: Detector, all_frames: list[np.ndarray]
) -> None:
    """Fewer slots than candidates: that batch is selected call by call, and the slots grow."""
    before = [result.detections for result in torch_yolox.detect(all_frames)]
    selection = torch_yolox._device_path._selection
    selection.capacity = 2
    after = [result.detections for result in torch_yolox.detect(all_frames)]
    assert_identical(after, before)
    assert selection.capacity > 2


def test_raw_tensors_for_probes(torch_yolox: Detector, all_frames: list[np.ndarray]) -> None:
    results = torch_yolox.detect(all_frames[:5], keep_tensors=True)
    for result in results:
        assert result.tensors is not None
        assert result.tensors["output"].shape == (3549, 85)
        assert result.tensors["output"].dtype == np.float32


def test_numpy_interface_runs_any_number_of_images(torch_yolox: Detector) -> None:
    batch = np.random.default_rng(0).uniform(0, 255, (6, 3, 416, 416)).astype(np.float32)
    outputs = torch_yolox.run_tensors(batch)  # 4 + 2
    assert outputs["output"].shape == (6, 3549, 85)
    np.testing.assert_allclose(
        outputs["output"][5], torch_yolox.run_tensors(batch[5:])["output"][0], atol=1e-3
    )


def test_a_head_without_a_device_decoder_is_decoded_on_the_host(
    shared_models: Path,
    all_frames: list[np.ndarray],
    onnxruntime_results: dict[str, list[Detections]],
    torch_cache: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.warns(ModelWarning, match="parser nanodet has no decoder on the device"):
        detector = Detector(
            shared_models / "nanodet_m_416.onnx",
            backend="torch",
            threshold=THRESHOLD,
            backend_options={"batch_size": 3, "cache_dir": torch_cache},
        )
    with detector:
        ours = [result.detections for result in detector.detect(all_frames)]
    report = match_many(
        ours, onnxruntime_results["nanodet_m_416"], threshold=THRESHOLD, nms_iou=NMS_IOU
    )
    _report("nanodet_m_416 torch fp32 cpu vs onnxruntime", report, capsys)
    assert report.ok, report


def test_registry_and_interface(shared_models: Path, torch_cache: Path) -> None:
    backend = load_backend(
        "torch", shared_models / "yolox_nano.onnx", batch_size=4, cache_dir=torch_cache
    )
    assert isinstance(backend, TorchBackend)
    assert backend.inputs[0].shape == (4, 3, 416, 416)
    assert backend.outputs[0].name == "output" and backend.outputs[0].shape == (4, 3549, 85)
    assert backend.metadata == {} and not backend.cuda_graphs
    assert "device=cpu" in repr(backend)
    backend.close()


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"precision": "fp16"}, "precision fp16 runs on cuda only"),
        ({"precision": "int8"}, "precision must be fp32 or fp16"),
        ({"device": "tensorrt"}, "backend torch runs on cpu or cuda, not 'tensorrt'"),
        ({"cuda_graphs": True}, "cuda_graphs needs device cuda"),
        ({"providers": ["cuda"]}, "are onnxruntime's; backend torch takes device"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
    ],
)
def test_option_errors(shared_models: Path, options: dict[str, Any], words: str) -> None:
    with pytest.raises(ModelError, match=words):
        TorchBackend(shared_models / "yolox_nano.onnx", **options)


@pytest.mark.skipif(torch.cuda.is_available(), reason="has CUDA")
def test_cuda_without_a_gpu_says_so(shared_models: Path) -> None:
    with pytest.raises(ModelError, match=r"device cuda: this PyTorch .* sees no CUDA GPU"):
        TorchBackend(shared_models / "yolox_nano.onnx", device="cuda")


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        TorchBackend(tmp_path / "nothing.onnx")


# --- on a GPU ---------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("precision", "cuda_graphs", "batch_size"),
    [("fp16", True, 4), ("fp16", True, 64), ("fp32", False, 4), ("fp32", True, 4)],
)
def test_gpu_matches_onnxruntime_on_the_shared_clips(
    shared_models: Path,
    all_frames: list[np.ndarray],
    onnxruntime_results: dict[str, list[Detections]],
    torch_cache: Path,
    capsys: pytest.CaptureFixture[str],
    precision: str,
    cuda_graphs: bool,
    batch_size: int,
) -> None:
    device_or_skip("cuda")
    options = {
        "device": "cuda",
        "precision": precision,
        "cuda_graphs": cuda_graphs,
        "batch_size": batch_size,
        "cache_dir": torch_cache,
    }
    with Detector(
        shared_models / "yolox_nano.onnx",
        backend="torch",
        threshold=THRESHOLD,
        backend_options=options,
    ) as detector:
        assert detector._backend.cuda_graphs is cuda_graphs  # type: ignore[attr-defined]
        ours = [result.detections for result in detector.detect(all_frames)]
        again = [result.detections for result in detector.detect(all_frames)]  # graph replayed
    report = match_many(
        ours, onnxruntime_results["yolox_nano"], threshold=THRESHOLD, nms_iou=NMS_IOU
    )
    _report(
        f"yolox_nano torch {precision} cuda graphs={cuda_graphs} vs onnxruntime",
        report,
        capsys,
        (ours, onnxruntime_results["yolox_nano"]),
    )
    assert report.ok, report
    assert match_many(again, ours, max_score_difference=1e-6).ok


@pytest.mark.gpu
def test_gpu_decoding_and_nms_replay_from_a_graph(
    shared_models: Path, all_frames: list[np.ndarray], torch_cache: Path
) -> None:
    """The head is captured beside the model; a batch it cannot hold is selected call by call
    and the graph is captured again, larger, for the next."""
    device_or_skip("cuda")
    options = {"device": "cuda", "precision": "fp16", "batch_size": 4, "cache_dir": torch_cache}
    with Detector(
        shared_models / "yolox_nano.onnx", backend="torch", backend_options=options
    ) as detector:
        pipeline = detector._device_path
        assert pipeline._head is not None
        replayed = [result.detections for result in detector.detect(all_frames)]
        pipeline._selection.capacity = 2
        pipeline._capture_head()
        grown = [result.detections for result in detector.detect(all_frames)]
        assert pipeline._head is not None and pipeline._selection.capacity > 2
        again = [result.detections for result in detector.detect(all_frames)]
    assert sum(map(len, replayed)) > 0
    assert_identical(grown, replayed)
    assert_identical(again, replayed)


@pytest.mark.gpu
def test_gpu_frames_as_cuda_tensors(
    shared_models: Path, all_frames: list[np.ndarray], torch_cache: Path
) -> None:
    device = device_or_skip("cuda")
    options = {"device": "cuda", "precision": "fp16", "batch_size": 8, "cache_dir": torch_cache}
    with Detector(
        shared_models / "yolox_nano.onnx", backend="torch", backend_options=options
    ) as detector:
        from_host = [result.detections for result in detector.detect(all_frames)]
        on_device = [torch.from_numpy(frame).to(device) for frame in all_frames]
        from_device = [result.detections for result in detector.detect(on_device)]  # type: ignore[arg-type]
    assert match_many(from_device, from_host, max_score_difference=1e-6).ok


@pytest.mark.gpu
# Inductor advises TF32 for float32 matrix products on every compile (this model runs fp16),
# through the TF32 setting that torch 2.9 and later call old.
@pytest.mark.filterwarnings("ignore:TensorFloat32 tensor cores:UserWarning")
@pytest.mark.filterwarnings("ignore:Please use the new API settings to control TF32:UserWarning")
# Inductor itself still calls it (torch 2.11).
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_gpu_compiled_model_matches_and_its_kernels_are_cached(
    shared_models: Path,
    all_frames: list[np.ndarray],
    onnxruntime_results: dict[str, list[Detections]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    device_or_skip("cuda")
    options = {
        "device": "cuda",
        "precision": "fp16",
        "batch_size": 8,
        "compile": True,
        "cache_dir": tmp_path,
    }
    with Detector(
        shared_models / "yolox_nano.onnx",
        backend="torch",
        threshold=THRESHOLD,
        backend_options=options,
    ) as detector:
        ours = [result.detections for result in detector.detect(all_frames)]
        first_load_s = detector._backend.load_s  # type: ignore[attr-defined]
    assert list(tmp_path.glob("*.compile.bin")), "compiled kernels were not kept"
    report = match_many(
        ours, onnxruntime_results["yolox_nano"], threshold=THRESHOLD, nms_iou=NMS_IOU
    )
    _report("yolox_nano torch fp16 compiled + cuda graphs vs onnxruntime", report, capsys)
    assert report.ok, report
    second = TorchBackend(shared_models / "yolox_nano.onnx", **options)  # type: ignore[arg-type]
    with capsys.disabled():
        print(f"\ncompiled load: first {first_load_s:.1f} s, cached {second.load_s:.1f} s")
    assert second.cache_hit


def test_no_input_buffer_without_a_cuda_graph(shared_models: Path, torch_cache: Path) -> None:
    backend = TorchBackend(shared_models / "yolox_nano.onnx", batch_size=2, cache_dir=torch_cache)
    assert backend.input_buffer(1) is None


@pytest.mark.gpu
def test_gpu_a_batch_written_into_the_input_buffer_runs_as_a_copied_one(
    shared_models: Path, torch_cache: Path
) -> None:
    """Pre-processing writes into the CUDA graph's own input (no copy): the graph reads it, and
    a batch from elsewhere is still copied in."""
    device_or_skip("cuda")
    backend = TorchBackend(
        shared_models / "yolox_nano.onnx",
        device="cuda",
        precision="fp16",
        batch_size=4,
        cache_dir=torch_cache,
    )
    assert backend.cuda_graphs
    assert backend.input_buffer(5) is None
    generator = torch.Generator().manual_seed(5)
    batches = [torch.rand((3, 3, 416, 416), generator=generator) * 255 for _ in range(2)]
    copied = [
        {name: value.clone() for name, value in backend.run_device(batch).items()}
        for batch in batches
    ]
    for batch, expected in zip(batches, copied, strict=True):
        buffer = backend.input_buffer(3)
        assert buffer is not None and buffer.shape == (3, 3, 416, 416)
        buffer.copy_(batch)
        outputs = backend.run_device(buffer)
        for name, value in expected.items():
            torch.testing.assert_close(outputs[name], value, rtol=0, atol=0)
    assert not torch.equal(copied[0]["output"], copied[1]["output"])
