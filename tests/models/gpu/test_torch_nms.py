"""NMS in torch (its own, and torchvision's where it loads) against OpenCV's on the CPU path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_gpu_helpers import DEVICES, device_or_skip

from panoptes.models.gpu import nms
from panoptes.models.gpu.decode import DenseCandidates
from panoptes.models.gpu.nms import (
    FixedSelection,
    batched_nms,
    box_iou,
    nms_torch,
    select_detections,
    torchvision_nms,
)
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


def _dense(images: list[Candidates], device: torch.device, classes: int = 3) -> DenseCandidates:
    """Images of as many candidates each, stacked as a device decoder gives them."""
    return DenseCandidates(
        torch.from_numpy(np.stack([image.xyxy for image in images])).to(device),
        torch.from_numpy(np.stack([image.confidence for image in images])).to(device),
        torch.from_numpy(np.stack([image.class_id for image in images]).astype(np.int64)).to(
            device
        ),
        classes,
    )


def _fixed(selection: FixedSelection, dense: DenseCandidates) -> list[Candidates] | None:
    return selection.unpack(selection(dense).cpu().numpy(), len(dense.confidence))


def _assert_same(ours: list[Candidates], theirs: list[Candidates]) -> None:
    assert len(ours) == len(theirs)
    for mine, reference in zip(ours, theirs, strict=True):
        assert mine.class_id.tolist() == reference.class_id.tolist()
        assert mine.confidence.tolist() == reference.confidence.tolist()
        assert mine.xyxy.tolist() == reference.xyxy.tolist()


@pytest.mark.parametrize("device_name", DEVICES)
@pytest.mark.parametrize("agnostic", [False, True], ids=["per-class", "agnostic"])
def test_fixed_selection_grows_to_the_candidates_it_is_given(
    agnostic: bool, device_name: str
) -> None:
    """Too small a capacity gives no result, only a larger capacity (these crowds' chains of
    suppression may also want more rounds); then the result is select_detections'."""
    device = device_or_skip(device_name)
    dense = _dense([_crowd(seed) for seed in range(4)], device)
    options = {
        "threshold": 0.3,
        "class_thresholds": {1: 0.6},
        "nms_iou": 0.45,
        "topk": 20,
        "class_agnostic": agnostic,
    }
    selection = FixedSelection(**options, capacity=16)
    assert _fixed(selection, dense) is None
    passing = dense.confidence >= torch.where(dense.class_id == 1, 0.6, 0.3)
    needed = int(passing.sum(dim=1).max())
    assert needed <= selection.capacity < 2 * needed
    while (ours := _fixed(selection, dense)) is None:
        assert selection.rounds <= 64
    assert selection.capacity < 2 * needed
    _assert_same(ours, select_detections(dense, **options))
    assert max(map(len, ours)) == 20  # topk cut some


@pytest.mark.parametrize("device_name", DEVICES)
def test_fixed_selection_wants_more_rounds_for_a_long_chain(device_name: str) -> None:
    """Twelve boxes in a row, each overlapping the next: greedy NMS keeps every other one, and
    the fixed-point rule needs a round per link to see it."""
    device = device_or_skip(device_name)
    xyxy = np.array([[4.0 * i, 0, 4.0 * i + 10, 10] for i in range(12)], np.float32)
    chain = Candidates(xyxy, np.linspace(0.9, 0.5, 12, dtype=np.float32), np.zeros(12, np.int32))
    dense = _dense([chain, _crowd(0, count=12)], device)
    options = {
        "threshold": 0.1,
        "class_thresholds": {},
        "nms_iou": 0.3,
        "topk": 300,
        "class_agnostic": False,
    }
    selection = FixedSelection(**options, rounds=2)
    while (ours := _fixed(selection, dense)) is None:
        assert selection.rounds <= 16
    assert selection.rounds > 2
    _assert_same(ours, select_detections(dense, **options))
    assert ours[0].confidence.tolist() == pytest.approx(chain.confidence[::2].tolist())


def test_fixed_selection_keeps_nothing_from_nothing() -> None:
    dense = _dense([_crowd(0, count=30)], torch.device("cpu"))
    options = {"class_thresholds": {}, "nms_iou": 0.45, "topk": 5}
    ours = _fixed(FixedSelection(threshold=1.0, **options), dense)
    assert ours is not None and len(ours[0]) == 0 and ours[0].xyxy.shape == (0, 4)
