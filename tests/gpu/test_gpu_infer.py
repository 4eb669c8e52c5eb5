"""A torch detector on the GPU mux's frames: no download before it, and the boxes onnxruntime
finds in the same frames after a download.

On this machine the software stand-in for NVDEC gives tensors on torch's CPU device and the
model runs with ``device: cpu``: the same tensor path as ``device: cuda`` on a GPU, which the
tests marked ``gpu`` run with the hardware decoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from software_decoding import PARKING, RETAIL, SoftwareNv12Backend

from panoptes import Batch, Pipeline
from panoptes.core.negotiation import CPU, CUDA, Conversion
from panoptes.models.detector import Detections
from panoptes.models.gpu.compare import match_many

THRESHOLD = 0.3
NMS_IOU = 0.45


def _infer(**extra: Any) -> dict[str, Any]:
    return {
        "model": "yolox-nano",
        "threshold": THRESHOLD,
        "nms_iou": NMS_IOU,
        "instances": 1,
        **extra,
    }


def _run(infer: dict[str, Any], path: Path, frames: int) -> tuple[Pipeline, dict[Any, Any]]:
    """Run ``path`` decoded by NVDEC (or its stand-in) through the mux (416×416, letterboxed)
    and ``infer``; the objects of each frame by (source, frame number), and the memory the
    detector got each frame in."""
    pipeline = Pipeline(
        {
            "sources": [{"uri": str(path), "decoder": "nvdec", "max_frames": frames}],
            "mux": {"width": 416, "height": 416},
            "infer": [infer],
            "sinks": [{"type": "fakesink"}],
            "perf": {"interval_s": 0},
        }
    )
    seen: dict[Any, Any] = {}

    def keep(batch: Batch) -> None:
        for frame in batch.frames:
            objects = frame.objects
            found = Detections(
                objects.xyxy.copy(), objects.confidence.copy(), objects.class_id.copy()
            )
            seen[(frame.source_id, frame.frame_num)] = (found, frame.memory)

    pipeline.add_probe("infer0", keep)
    summary = pipeline.run()
    assert summary.ok, summary.errors
    return pipeline, seen


def _compare(torch_infer: dict[str, Any], path: Path, frames: int, memory: str) -> None:
    on_device, device_seen = _run(torch_infer, path, frames)
    on_host, host_seen = _run(_infer(), path, frames)
    # The torch detector takes the mux's tensors; onnxruntime gets them downloaded.
    assert on_device.conversions == []
    assert [stats.name for stats in on_device.element_stats()] == ["infer0", "fakesink0"]
    assert on_host.conversions == [Conversion("to-cpu-infer0", CPU, ("infer0",))]
    assert sorted(device_seen) == sorted(host_seen) and len(device_seen) == frames
    assert {memory_seen for _, memory_seen in device_seen.values()} == {memory}
    keys = sorted(device_seen)
    report = match_many(
        [device_seen[key][0] for key in keys],
        [host_seen[key][0] for key in keys],
        threshold=THRESHOLD,
        nms_iou=NMS_IOU,
    )
    assert report.ok, report
    assert report.matched > frames
    # NMS near-ties (see panoptes.models.gpu.compare) are rare: one pair in 268 boxes on the
    # HEVC clip.
    assert len(report.swapped) * 100 <= report.matched, report


def test_a_torch_detector_takes_the_gpu_muxs_tensors(
    software_nvdec: SoftwareNv12Backend,
) -> None:
    _compare(_infer(backend="torch", device="cpu", batch_size=4), PARKING, 8, CUDA)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("path", [PARKING, RETAIL], ids=["h264", "hevc-1080p"])
def test_a_torch_detector_on_the_gpu_takes_nvdec_frames(path: Path) -> None:
    _compare(_infer(backend="torch", device="cuda", batch_size=8), path, 16, CUDA)
