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
