"""Thresholds, class-aware NMS and top-k on the device; only the kept boxes reach the host.

The same selection as :func:`panoptes.models.postprocess.filter_candidates` (per-class
thresholds, NMS that drops a box overlapping a better one of its class by more than the IoU
threshold, best first, at most ``topk`` per image), for a whole batch in one NMS call: boxes of
different images never suppress each other because each (image, class) pair is its own group.

NMS is torchvision's when torchvision loads, else :func:`nms_torch`, written here because
torch itself has no NMS.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping

import numpy as np
import torch

from panoptes.models.gpu.decode import DenseCandidates
from panoptes.models.parsers import Candidates

__all__ = ["batched_nms", "box_iou", "nms_torch", "select_detections", "torchvision_nms"]

#: Above this many boxes, :func:`nms_torch` works group by group (its IoU matrix is N²).
MATRIX_LIMIT = 4096

NmsFunction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]


@functools.cache
def torchvision_nms() -> NmsFunction | None:
    """torchvision's ``batched_nms``, or None when torchvision is missing or cannot load."""
    try:
        from torchvision.ops import batched_nms as found
    except Exception:  # not installed, or built for another torch: RuntimeError, OSError...
        return None
    function: NmsFunction = found
    return function


def box_iou(xyxy: torch.Tensor) -> torch.Tensor:
    """IoU of every pair of ``xyxy`` boxes [N, 4]: [N, N] (NaN for two empty boxes)."""
    area = (xyxy[:, 2] - xyxy[:, 0]).clamp(min=0) * (xyxy[:, 3] - xyxy[:, 1]).clamp(min=0)
    top_left = torch.maximum(xyxy[:, None, :2], xyxy[None, :, :2])
    bottom_right = torch.minimum(xyxy[:, None, 2:], xyxy[None, :, 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    return intersection / (area[:, None] + area[None, :] - intersection)


def _greedy_keep(
    xyxy: torch.Tensor, iou_threshold: float, same: torch.Tensor | None
) -> torch.Tensor:
    """Greedy NMS of boxes sorted best first, as a boolean mask, without a loop over boxes.

    Box j survives iff no surviving box before it overlaps it by more than the threshold. That
    rule has one solution, since it only looks backwards; iterating it from "all survive" fixes
    at least one more box each round (box 0 in the first, then 1...), and usually ends after a
    few rounds: the length of the longest chain of suppressions.
    """
    suppresses = (box_iou(xyxy) > iou_threshold).triu_(diagonal=1)
    if same is not None:
        suppresses &= same
    keep = torch.ones(len(xyxy), dtype=torch.bool, device=xyxy.device)
    for _ in range(len(xyxy)):
        survivors = ~(suppresses & keep[:, None]).any(dim=0)
        if torch.equal(survivors, keep):
            break
        keep = survivors
    return keep


def nms_torch(
    xyxy: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Indices of the boxes that survive NMS within their group, best score first.

    ``xyxy`` [N, 4], ``scores`` [N], ``groups`` int [N]; the same result as torchvision's
    ``batched_nms``, in plain torch, on any device.
    """
    order = torch.sort(scores, descending=True, stable=True).indices
    if len(order) <= MATRIX_LIMIT:
        sorted_groups = groups[order]
        same = sorted_groups[:, None] == sorted_groups[None, :]
        return order[_greedy_keep(xyxy[order], iou_threshold, same)]
    kept = []
    for group in torch.unique(groups):
        members = order[groups[order] == group]
        kept.append(members[_greedy_keep(xyxy[members], iou_threshold, None)])
    survivors = torch.cat(kept)
    return survivors[torch.sort(scores[survivors], descending=True, stable=True).indices]


def batched_nms(
    xyxy: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Indices of the boxes that survive NMS within their group, best score first:
    torchvision's when it loads, else :func:`nms_torch`."""
    if len(xyxy) == 0:
        return torch.zeros(0, dtype=torch.int64, device=xyxy.device)
    found = torchvision_nms()
    if found is None:
        return nms_torch(xyxy, scores, groups, iou_threshold)
    # torchvision separates groups by shifting each group's boxes by group × (largest
    # coordinate + 1); in float32 a shift of millions (128 images × 80 classes) would round the
    # boxes to half pixels. float64 keeps them exact.
    return found(xyxy.double(), scores.double(), groups, iou_threshold)


def select_detections(
    dense: DenseCandidates,
    *,
    threshold: float,
    class_thresholds: Mapping[int, float],
    nms_iou: float,
    topk: int,
    class_agnostic: bool = False,
) -> list[Candidates]:
    """The detections of each image of ``dense``: those that pass their threshold and survive
    NMS, best first, at most ``topk``, copied to the host in one transfer (network pixels).

    ``threshold`` applies to every class without an entry in ``class_thresholds``; NMS works
    within each class unless ``class_agnostic``, never across images.
    """
    confidence, class_id = dense.confidence, dense.class_id
    batch = confidence.shape[0]
    minimum = torch.full_like(confidence, threshold)
    for class_number, class_threshold in class_thresholds.items():
        minimum.masked_fill_(class_id == class_number, class_threshold)
    image, row = torch.nonzero(confidence >= minimum, as_tuple=True)
    xyxy, scores, classes = dense.xyxy[image, row], confidence[image, row], class_id[image, row]
    groups = image if class_agnostic else image * max(1, dense.num_classes) + classes
    keep = batched_nms(xyxy, scores, groups, nms_iou)

    # Best first within each image (a stable sort by image keeps NMS's score order), then the
    # first topk of each image.
    by_image = torch.sort(image[keep], stable=True).indices
    keep = keep[by_image]
    kept_image = image[keep]
    counts = torch.bincount(kept_image, minlength=batch)
    starts = torch.cumsum(counts, dim=0) - counts
    rank = torch.arange(len(keep), device=keep.device) - starts[kept_image]
    keep = keep[rank < topk]

    columns = [
        xyxy[keep].float(),
        scores[keep, None].float(),
        classes[keep, None].float(),  # class ids and image numbers are exact in float32
        image[keep, None].float(),
    ]
    keypoints = dense.keypoints
    if keypoints is not None:
        columns.append(keypoints[image[keep], row[keep]].flatten(1).float())
    host = torch.cat(columns, dim=1).cpu().numpy()

    results = []
    bounds = np.searchsorted(host[:, 6], np.arange(batch + 1) - 0.5)
    for start, end in itertools.pairwise(bounds.tolist()):
        part = host[start:end]
        kept_keypoints = None
        if keypoints is not None:
            kept_keypoints = np.ascontiguousarray(part[:, 7:].reshape(len(part), -1, 3))
        results.append(
            Candidates(
                np.ascontiguousarray(part[:, 0:4]),
                np.ascontiguousarray(part[:, 4]),
                part[:, 5].astype(np.int32),
                kept_keypoints,
            )
        )
    return results
