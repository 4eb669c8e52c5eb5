"""Do two inference paths find the same objects? The rule the GPU path is held to.

Every box of one path must have a box of the same class in the other at IoU >= 0.9 with a score
within 0.02, both ways. Two cases are excused, and counted apart:

- ``borderline``: a box whose score is within that margin of the threshold may lack a partner,
  the other path having scored it just below the threshold;
- ``swapped``: two candidates for one object that score the same within the margin and overlap
  by more than NMS lets through: each path's NMS keeps one and suppresses the other, and which
  one is up to the last digits of their scores. Seen on the shared HEVC clip, where one box of
  one frame is kept at 0.5156 by the torch path (fp16 or fp32 alike) and its neighbour, at IoU
  0.84, at 0.5153 by onnxruntime. Such a pair is a box without a partner on each side, each the
  other's near-tie.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from panoptes.models.detector import Detections

__all__ = ["MatchReport", "match_detections", "match_many"]


def _pairwise_iou(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` [N, 4] with every box of ``b`` [M, 4]: [N, M]."""
    top_left = np.maximum(a_xyxy[:, None, :2], b_xyxy[None, :, :2])
    bottom_right = np.minimum(a_xyxy[:, None, 2:], b_xyxy[None, :, 2:])
    intersection = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area_a = np.prod(np.clip(a_xyxy[:, 2:] - a_xyxy[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b_xyxy[:, 2:] - b_xyxy[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / union, 0.0)


@dataclass
class MatchReport:
    """How two sets of detections agree.

    ``matched`` counts the boxes (of either side) that found a partner; ``unmatched`` lists
    ``(image, side, index)`` of those that did not (side 0 or 1), ``borderline`` those excused
    for a score near the threshold, ``swapped`` those excused as one of an NMS near-tie pair
    (both of the pair's boxes are listed). ``min_iou`` and ``max_score_difference`` are the worst
    values over the partnered boxes (1.0 and 0.0 when there are none).
    """

    matched: int = 0
    unmatched: list[tuple[int, int, int]] = field(default_factory=list)
    borderline: list[tuple[int, int, int]] = field(default_factory=list)
    swapped: list[tuple[int, int, int]] = field(default_factory=list)
    min_iou: float = 1.0
    max_score_difference: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every box found a partner, is borderline or is one of a swapped pair."""
        return not self.unmatched

    def merge(self, other: MatchReport) -> MatchReport:
        """Both reports' counts together (for a summary over many frames)."""
        return MatchReport(
            self.matched + other.matched,
            self.unmatched + other.unmatched,
            self.borderline + other.borderline,
            self.swapped + other.swapped,
            min(self.min_iou, other.min_iou),
            max(self.max_score_difference, other.max_score_difference),
        )


def match_detections(
    first: Detections,
    second: Detections,
    *,
    min_iou: float = 0.9,
    max_score_difference: float = 0.02,
    threshold: float | None = None,
    nms_iou: float | None = None,
    image: int = 0,
) -> MatchReport:
    """Match two detection sets of one image both ways (see the module's rule).

    A box's partner is a box of the same class in the other set with IoU >= ``min_iou`` and
    a score within ``max_score_difference``; when ``threshold`` is given, a box without one
    whose score is below ``threshold + max_score_difference`` is borderline, not unmatched.
    When ``nms_iou`` (the NMS overlap both paths used) is given, a box without a partner and a
    box of the other set without one, of the same class, overlapping by more than ``nms_iou``
    with scores within ``max_score_difference``, are a swapped pair. ``image`` numbers the image
    in the report's lists.
    """
    report = MatchReport()
    iou = _pairwise_iou(
        np.asarray(first.xyxy, np.float64).reshape(-1, 4),
        np.asarray(second.xyxy, np.float64).reshape(-1, 4),
    )
    score_gap = np.abs(first.confidence[:, None].astype(np.float64) - second.confidence[None, :])
    alike = (first.class_id[:, None] == second.class_id[None, :]) & (
        score_gap <= max_score_difference
    )
    partner = alike & (iou >= min_iou)
    # Every relation is symmetric: the second side's view is the transpose.
    views = ((first, iou, score_gap, partner), (second, iou.T, score_gap.T, partner.T))
    alone: list[list[int]] = [[], []]
    for side, (ours, side_iou, side_gap, side_partner) in enumerate(views):
        for index in range(len(ours)):
            candidates = np.flatnonzero(side_partner[index])
            if len(candidates):
                best = candidates[np.argmax(side_iou[index, candidates])]
                report.matched += 1
                report.min_iou = min(report.min_iou, float(side_iou[index, best]))
                report.max_score_difference = max(
                    report.max_score_difference, float(side_gap[index, best])
                )
            elif threshold is not None and ours.confidence[index] < (
                threshold + max_score_difference
            ):
                report.borderline.append((image, side, index))
            else:
                alone[side].append(index)
    if nms_iou is not None:
        for side, index in _near_ties(alike & (iou > nms_iou), alone):
            report.swapped.append((image, side, index))
            alone[side].remove(index)
    report.unmatched += [(image, side, index) for side in (0, 1) for index in alone[side]]
    return report


def _near_ties(tie: np.ndarray, alone: list[list[int]]) -> list[tuple[int, int]]:
    """``(side, index)`` of the boxes without a partner (``alone``, per side) that pair up
    through ``tie`` [N, M] (first side's box, second side's), each box in one pair at most."""
    pairs: list[tuple[int, int]] = []
    taken: set[int] = set()
    for row in alone[0]:
        for column in alone[1]:
            if column not in taken and tie[row, column]:
                taken.add(column)
                pairs += [(0, row), (1, column)]
                break
    return pairs


def match_many(
    firsts: Sequence[Detections],
    seconds: Sequence[Detections],
    *,
    min_iou: float = 0.9,
    max_score_difference: float = 0.02,
    threshold: float | None = None,
    nms_iou: float | None = None,
) -> MatchReport:
    """:func:`match_detections` over pairs of images (numbered from 0), merged."""
    total = MatchReport()
    for image, (first, second) in enumerate(zip(firsts, seconds, strict=True)):
        total = total.merge(
            match_detections(
                first,
                second,
                min_iou=min_iou,
                max_score_difference=max_score_difference,
                threshold=threshold,
                nms_iou=nms_iou,
                image=image,
            )
        )
    return total
