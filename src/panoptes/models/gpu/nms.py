"""Thresholds, class-aware NMS and top-k on the device; only the kept boxes reach the host.

The same selection as :func:`panoptes.models.postprocess.filter_candidates` (per-class
thresholds, NMS that drops a box overlapping a better one of its class by more than the IoU
threshold, best first, at most ``topk`` per image), for a whole batch in one NMS call: boxes of
different images never suppress each other because each (image, class) pair is its own group.

NMS is torchvision's when torchvision loads, else :func:`nms_torch`, written here because
torch itself has no NMS.

:class:`FixedSelection` is the same selection in shapes fixed in advance, so that a CUDA graph can
hold it with the model: no call waits for the device until the kept boxes are copied out.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from panoptes.models.gpu.decode import DenseCandidates
from panoptes.models.parsers import Candidates

__all__ = [
    "FixedSelection",
    "batched_nms",
    "box_iou",
    "nms_torch",
    "select_detections",
    "torchvision_nms",
]

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
    """IoU of every pair of ``xyxy`` boxes [..., N, 4]: [..., N, N] (NaN for two empty boxes)."""
    area = (xyxy[..., 2] - xyxy[..., 0]).clamp(min=0) * (xyxy[..., 3] - xyxy[..., 1]).clamp(min=0)
    top_left = torch.maximum(xyxy[..., :, None, :2], xyxy[..., None, :, :2])
    bottom_right = torch.minimum(xyxy[..., :, None, 2:], xyxy[..., None, :, 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(dim=-1)
    return intersection / (area[..., :, None] + area[..., None, :] - intersection)


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

    bounds = np.searchsorted(host[:, 6], np.arange(batch + 1) - 0.5)
    return [
        _host_candidates(host[start:end], 7 if keypoints is not None else None)
        for start, end in itertools.pairwise(bounds.tolist())
    ]


def _host_candidates(rows: np.ndarray, keypoints_from: int | None) -> Candidates:
    """Candidates from host rows of x1, y1, x2, y2, score, class, ..., with keypoints (x, y,
    visibility each) from column ``keypoints_from`` on, where there are any."""
    keypoints = None
    if keypoints_from is not None:
        keypoints = np.ascontiguousarray(rows[:, keypoints_from:].reshape(len(rows), -1, 3))
    return Candidates(
        np.ascontiguousarray(rows[:, 0:4]),
        np.ascontiguousarray(rows[:, 4]),
        rows[:, 5].astype(np.int32),
        keypoints,
    )


#: The header row of :class:`FixedSelection`'s result: kept boxes, candidates above their
#: threshold, whether the suppression settled (1.0 or 0.0).
_KEPT, _PASSING, _SETTLED = 0, 1, 2


@dataclass
class FixedSelection:
    """:func:`select_detections` in shapes fixed in advance, for a CUDA graph.

    Calling it on :class:`DenseCandidates` launches work on the device and never waits for it
    (no ``nonzero``, no ``.item()``): the ``capacity`` best candidates above their threshold
    of each image, class-aware greedy NMS among them as ``rounds`` steps of the fixed-point
    rule of :func:`_greedy_keep`, and the first ``topk`` survivors, all packed into one float32
    tensor [B, 1 + min(topk, capacity), 6 + 3·keypoints]: a header row per image (kept,
    candidates, settled), then x1, y1, x2, y2, score, class (and keypoints) per kept box, best
    first.

    :meth:`unpack` turns that tensor, on the host, into the same candidates as
    :func:`select_detections` gives, or returns None when an image had more candidates than
    ``capacity`` or a chain of suppressions longer than ``rounds`` allow; it then raises
    ``capacity`` or ``rounds`` to what that batch needed, and the caller selects that batch with
    :func:`select_detections` and builds its fixed shapes again.
    """

    threshold: float
    class_thresholds: Mapping[int, float]
    nms_iou: float
    topk: int
    class_agnostic: bool = False
    capacity: int = 256
    rounds: int = 8
    _used_capacity: int = field(default=0, init=False, repr=False)
    _tables: dict[tuple[int, torch.device], torch.Tensor] = field(
        default_factory=dict, init=False, repr=False
    )

    def _threshold_table(self, num_classes: int, device: torch.device) -> torch.Tensor:
        """Each class's threshold [num_classes] on ``device``, made once (outside any graph:
        making it copies from the host)."""
        key = (num_classes, device)
        table = self._tables.get(key)
        if table is None:
            values = np.full(max(1, num_classes), self.threshold, np.float32)
            for class_number, class_threshold in self.class_thresholds.items():
                if 0 <= class_number < len(values):
                    values[class_number] = class_threshold
            table = self._tables[key] = torch.from_numpy(values).to(device)
        return table

    def __call__(self, dense: DenseCandidates) -> torch.Tensor:
        confidence, class_id = dense.confidence, dense.class_id
        batch, rows = confidence.shape
        capacity = self._used_capacity = max(1, min(self.capacity, rows))
        passing = (
            confidence >= self._threshold_table(dense.num_classes, confidence.device)[class_id]
        )
        # Best first; a stable sort puts equal scores in row order, as nms_torch does.
        ordered = torch.sort(
            confidence.masked_fill(~passing, -torch.inf), dim=1, descending=True, stable=True
        )
        scores, order = ordered.values[:, :capacity], ordered.indices[:, :capacity]
        valid = scores > -torch.inf
        xyxy = dense.xyxy.gather(1, order[..., None].expand(-1, -1, 4))
        classes = class_id.gather(1, order)

        # suppresses[b, i, j]: box i, better than j, overlaps it by more than the threshold.
        suppresses = (box_iou(xyxy) > self.nms_iou).triu_(diagonal=1)
        if not self.class_agnostic:
            suppresses &= classes[:, :, None] == classes[:, None, :]
        keep = previous = valid
        for _ in range(max(2, self.rounds)):
            previous, keep = keep, valid & ~(suppresses & keep[:, :, None]).any(dim=1)
        settled = (keep == previous).all(dim=1)
        final = keep & (keep.cumsum(dim=1) <= self.topk)

        columns = [xyxy.float(), scores[..., None].float(), classes[..., None].float()]
        if dense.keypoints is not None:
            flat = dense.keypoints.flatten(2)
            columns.append(flat.gather(1, order[..., None].expand(-1, -1, flat.shape[2])).float())
        table = torch.cat(columns, dim=2)
        # The kept rows first, in their order (a stable sort of "not kept").
        first = torch.sort((~final).to(torch.uint8), dim=1, stable=True).indices
        first = first[:, : min(self.topk, capacity)]
        kept = table.gather(1, first[..., None].expand(-1, -1, table.shape[2]))
        header = torch.zeros((batch, 1, table.shape[2]), device=table.device)
        header[:, 0, _KEPT] = final.sum(dim=1)
        header[:, 0, _PASSING] = passing.sum(dim=1)
        header[:, 0, _SETTLED] = settled
        return torch.cat([header, kept], dim=1)

    def unpack(self, packed: np.ndarray, count: int) -> list[Candidates] | None:
        """The candidates of the first ``count`` images of a result of :meth:`__call__` copied
        to the host, or None when they are not exact (see the class); the shapes then grow."""
        headers = packed[:count, 0]
        needed = int(headers[:, _PASSING].max(initial=0))
        if needed > self._used_capacity:
            self.capacity = 1 << (needed - 1).bit_length()
            return None
        if not headers[:, _SETTLED].all():
            self.rounds *= 2
            return None
        keypoints_from = 6 if packed.shape[2] > 6 else None
        return [
            _host_candidates(packed[image, 1 : 1 + int(headers[image, _KEPT])], keypoints_from)
            for image in range(count)
        ]
