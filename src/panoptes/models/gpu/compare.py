"""Do two inference paths find the same objects? The rule the GPU path is held to.

Every box of one path must have a box of the same class in the other at IoU >= 0.9 with a score
within 0.02, both ways. A box whose score is within that margin of the threshold may lack a
partner: the other path may have scored it just below the threshold (such boxes are counted
apart, as ``borderline``).
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
    for a score near the threshold. ``min_iou`` and ``max_score_difference`` are the worst
    values over the partnered boxes (1.0 and 0.0 when there are none).
    """

    matched: int = 0
    unmatched: list[tuple[int, int, int]] = field(default_factory=list)
    borderline: list[tuple[int, int, int]] = field(default_factory=list)
    min_iou: float = 1.0
    max_score_difference: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every box found a partner or is borderline."""
        return not self.unmatched

    def merge(self, other: MatchReport) -> MatchReport:
        """Both reports' counts together (for a summary over many frames)."""
        return MatchReport(
            self.matched + other.matched,
            self.unmatched + other.unmatched,
            self.borderline + other.borderline,
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
    image: int = 0,
) -> MatchReport:
    """Match two detection sets of one image both ways (see the module's rule).

    A box's partner is a box of the same class in the other set with IoU >= ``min_iou`` and
    a score within ``max_score_difference``; when ``threshold`` is given, a box without one
    whose score is below ``threshold + max_score_difference`` is borderline, not unmatched.
    ``image`` numbers the image in the report's lists.
    """
    report = MatchReport()
    sides = ((first, second), (second, first))
    for side, (ours, theirs) in enumerate(sides):
        iou = _pairwise_iou(
            np.asarray(ours.xyxy, np.float64).reshape(-1, 4),
            np.asarray(theirs.xyxy, np.float64).reshape(-1, 4),
        )
        same_class = ours.class_id[:, None] == theirs.class_id[None, :]
        score_gap = np.abs(ours.confidence[:, None].astype(np.float64) - theirs.confidence[None, :])
        partner = same_class & (iou >= min_iou) & (score_gap <= max_score_difference)
        for index in range(len(ours)):
            candidates = np.flatnonzero(partner[index])
            if len(candidates):
                best = candidates[np.argmax(iou[index, candidates])]
                report.matched += 1
                report.min_iou = min(report.min_iou, float(iou[index, best]))
                report.max_score_difference = max(
                    report.max_score_difference, float(score_gap[index, best])
                )
            elif threshold is not None and ours.confidence[index] < (
                threshold + max_score_difference
            ):
                report.borderline.append((image, side, index))
            else:
                report.unmatched.append((image, side, index))
    return report


def match_many(
    firsts: Sequence[Detections],
    seconds: Sequence[Detections],
    *,
    min_iou: float = 0.9,
    max_score_difference: float = 0.02,
    threshold: float | None = None,
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
                image=image,
            )
        )
    return total
