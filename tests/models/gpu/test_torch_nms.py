"""NMS in torch (its own, and torchvision's where it loads) against OpenCV's on the CPU path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_gpu_helpers import DEVICES, device_or_skip

from panoptes.models.gpu import nms
from panoptes.models.gpu.nms import batched_nms, box_iou, nms_torch, torchvision_nms
from panoptes.models.parsers import Candidates
from panoptes.models.postprocess import filter_candidates


def _crowd(seed: int, count: int = 400, classes: int = 3) -> Candidates:
    """Boxes in a few tight clusters (much overlap), random classes and scores."""
    generator = np.random.default_rng(seed)
    centres = generator.uniform(50, 590, (8, 2))[generator.integers(0, 8, count)]
    centres += generator.normal(0, 6, (count, 2))
    sizes = generator.uniform(20, 80, (count, 2))
    xyxy = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1).astype(np.float32)
    return Candidates(
        xyxy,
        generator.uniform(0.05, 1.0, count).astype(np.float32),
        generator.integers(0, classes, count).astype(np.int32),
    )


def _opencv_kept(candidates: Candidates, iou: float, agnostic: bool) -> list[int]:
    """Indices OpenCV keeps (through the CPU path's filter, which returns them best first)."""
    indexed = Candidates(
        candidates.xyxy,
        candidates.confidence,
        candidates.class_id,
        np.arange(len(candidates), dtype=np.float32)[:, None, None].repeat(3, axis=2),
    )
    kept = filter_candidates(
        indexed,
        threshold=0.0,
        class_thresholds={},
        nms_iou=iou,
        topk=10_000,
        class_agnostic=agnostic,
    )
    assert kept.keypoints is not None
    return [int(value) for value in kept.keypoints[:, 0, 0]]


def _tensors(
    candidates: Candidates, device: torch.device, agnostic: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    groups = np.zeros(len(candidates), np.int64) if agnostic else candidates.class_id
    return (
        torch.from_numpy(candidates.xyxy).to(device),
        torch.from_numpy(candidates.confidence).to(device),
        torch.from_numpy(groups.astype(np.int64)).to(device),
    )


@pytest.mark.parametrize("device_name", DEVICES)
@pytest.mark.parametrize("agnostic", [False, True], ids=["per-class", "agnostic"])
@pytest.mark.parametrize("iou", [0.3, 0.45, 0.7])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_torch_nms_keeps_what_opencv_keeps(
    seed: int, iou: float, agnostic: bool, device_name: str
) -> None:
    candidates = _crowd(seed)
    kept = nms_torch(*_tensors(candidates, device_or_skip(device_name), agnostic), iou)
    assert kept.cpu().tolist() == _opencv_kept(candidates, iou, agnostic)


@pytest.mark.parametrize("device_name", DEVICES)
@pytest.mark.parametrize("seed", [0, 1])
def test_torchvision_nms_keeps_what_opencv_keeps(seed: int, device_name: str) -> None:
    if torchvision_nms() is None:
        pytest.skip("torchvision cannot be loaded here")
    candidates = _crowd(seed)
    kept = batched_nms(*_tensors(candidates, device_or_skip(device_name), False), 0.45)
    assert kept.cpu().tolist() == _opencv_kept(candidates, 0.45, False)


def test_large_inputs_go_group_by_group(monkeypatch: pytest.MonkeyPatch) -> None:
    candidates = _crowd(3, count=600, classes=5)
    whole = nms_torch(*_tensors(candidates, torch.device("cpu"), False), 0.45)
    monkeypatch.setattr(nms, "MATRIX_LIMIT", 50)
    by_group = nms_torch(*_tensors(candidates, torch.device("cpu"), False), 0.45)
    assert by_group.tolist() == whole.tolist()


def test_a_suppressed_box_suppresses_nothing() -> None:
    """A overlaps B, B overlaps C, A does not overlap C: greedy NMS keeps A and C."""
    xyxy = torch.tensor([[0.0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    groups = torch.zeros(3, dtype=torch.int64)
    assert nms_torch(xyxy, scores, groups, 0.3).tolist() == [0, 2]


def test_nothing_in_nothing_out() -> None:
    empty = torch.zeros((0, 4))
    kept = batched_nms(empty, torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.45)
    assert kept.shape == (0,) and kept.dtype == torch.int64


def test_iou_of_touching_and_empty_boxes() -> None:
    xyxy = torch.tensor([[0.0, 0, 10, 10], [10, 0, 20, 10], [0, 0, 10, 5], [3, 3, 3, 3]])
    iou = box_iou(xyxy)
    assert iou[0, 1] == 0 and iou[0, 2] == pytest.approx(0.5)
    assert iou[3, 0] == 0 and torch.isnan(iou[3, 3])


def test_cpu_path_topk_comes_after_suppression() -> None:
    """OpenCV's own top_k cuts the candidates *before* NMS: with three copies of one box and
    two other boxes, a top-3 must still give three objects."""
    xyxy = np.array([[0, 0, 10, 10]] * 3 + [[100, 0, 110, 10], [200, 0, 210, 10]], np.float32)
    candidates = Candidates(
        xyxy, np.array([0.9, 0.85, 0.8, 0.7, 0.6], np.float32), np.zeros(5, np.int32)
    )
    kept = filter_candidates(candidates, threshold=0.1, class_thresholds={}, nms_iou=0.45, topk=3)
    assert kept.confidence.tolist() == pytest.approx([0.9, 0.7, 0.6])
