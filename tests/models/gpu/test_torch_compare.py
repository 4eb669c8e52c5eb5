"""The rule two inference paths are compared by, on hand-made detections."""

from __future__ import annotations

import numpy as np
import pytest

from panoptes.models.detector import Detections
from panoptes.models.gpu.compare import match_detections, match_many


def _detections(*rows: tuple[float, float, float, float, float, int]) -> Detections:
    array = np.array(rows, np.float64).reshape(-1, 6)
    return Detections(
        array[:, :4].astype(np.float32),
        array[:, 4].astype(np.float32),
        array[:, 5].astype(np.int32),
    )


REFERENCE = _detections((10, 10, 110, 210, 0.9, 0), (300, 50, 400, 150, 0.6, 2))


@pytest.mark.parametrize(
    ("other", "ok", "unmatched"),
    [
        (REFERENCE, True, []),
        (_detections((11, 10, 111, 210, 0.91, 0), (300, 50, 400, 150, 0.585, 2)), True, []),
        # the person's box moved by 15 px: IoU 0.74
        (
            _detections((25, 10, 125, 210, 0.9, 0), (300, 50, 400, 150, 0.6, 2)),
            False,
            [(0, 0, 0), (0, 1, 0)],
        ),
        # the car became a truck
        (
            _detections((10, 10, 110, 210, 0.9, 0), (300, 50, 400, 150, 0.6, 7)),
            False,
            [(0, 0, 1), (0, 1, 1)],
        ),
        # the car's score is 0.03 off
        (
            _detections((10, 10, 110, 210, 0.9, 0), (300, 50, 400, 150, 0.63, 2)),
            False,
            [(0, 0, 1), (0, 1, 1)],
        ),
        # one box missing from the other side
        (_detections((10, 10, 110, 210, 0.9, 0)), False, [(0, 0, 1)]),
    ],
    ids=["same", "close", "moved", "class", "score", "missing"],
)
def test_each_box_needs_a_partner_both_ways(
    other: Detections, ok: bool, unmatched: list[tuple[int, int, int]]
) -> None:
    report = match_detections(REFERENCE, other)
    assert report.ok is ok and report.unmatched == unmatched


def test_a_box_just_above_the_threshold_may_lack_a_partner() -> None:
    weak = _detections((10, 10, 110, 210, 0.9, 0), (500, 50, 600, 150, 0.26, 5))
    report = match_detections(weak, _detections((10, 10, 110, 210, 0.9, 0)), threshold=0.25)
    assert report.ok and report.borderline == [(0, 0, 1)]
    assert not match_detections(weak, _detections((10, 10, 110, 210, 0.9, 0))).ok


def test_worst_figures_over_many_images() -> None:
    nothing = _detections()
    close = _detections((11, 10, 111, 210, 0.91, 0), (300, 50, 400, 150, 0.585, 2))
    report = match_many([REFERENCE, nothing], [close, nothing])
    assert report.ok and report.matched == 4
    assert report.min_iou == pytest.approx(99 * 200 / (101 * 200), rel=1e-6)  # 1 px shift
    assert report.max_score_difference == pytest.approx(0.015, abs=1e-6)
    failing = match_many([nothing, REFERENCE], [nothing, nothing])
    assert failing.unmatched == [(1, 0, 0), (1, 0, 1)]


# Frame 9 of the shared HEVC clip: the torch path kept the first of two candidates for one
# person, onnxruntime the second (IoU 0.84 between them, scores 0.0003 apart).
KEPT_BY_TORCH = (299.0, 497.4, 650.6, 928.8, 0.5156, 0)
KEPT_BY_ONNXRUNTIME = (322.6, 500.1, 652.5, 890.3, 0.5153, 0)


@pytest.mark.parametrize(
    ("theirs", "swapped"),
    [
        (KEPT_BY_ONNXRUNTIME, True),
        # the same two boxes, their scores 0.03 apart: a real difference
        ((322.6, 500.1, 652.5, 890.3, 0.4856, 0), False),
        # another class
        ((322.6, 500.1, 652.5, 890.3, 0.5153, 1), False),
        # overlapping by less than NMS suppresses (IoU 0.31): both paths would have kept both
        ((480.0, 500.1, 812.5, 890.3, 0.5153, 0), False),
    ],
    ids=["near-tie", "score", "class", "apart"],
)
def test_an_nms_near_tie_kept_differently_by_each_path_is_a_swapped_pair(
    theirs: tuple[float, float, float, float, float, int], swapped: bool
) -> None:
    ours = _detections((10, 10, 110, 210, 0.9, 0), KEPT_BY_TORCH)
    other = _detections(theirs, (10, 10, 110, 210, 0.9, 0))
    report = match_detections(ours, other, threshold=0.3, nms_iou=0.45)
    assert report.matched == 2
    if swapped:
        assert report.ok and report.swapped == [(0, 0, 1), (0, 1, 0)] and not report.unmatched
    else:
        assert not report.ok and report.unmatched == [(0, 0, 1), (0, 1, 0)] and not report.swapped
    # Without the NMS overlap the rule has no ties to excuse.
    assert match_detections(ours, other, threshold=0.3).unmatched == [(0, 0, 1), (0, 1, 0)]


def test_a_box_without_a_partner_on_one_side_only_is_not_a_tie() -> None:
    report = match_many(
        [_detections(KEPT_BY_TORCH, KEPT_BY_ONNXRUNTIME)],
        [_detections(KEPT_BY_ONNXRUNTIME)],
        nms_iou=0.45,
    )
    assert report.unmatched == [(0, 0, 0)] and not report.swapped
