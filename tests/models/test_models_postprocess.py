"""filter_candidates: thresholds per class, NMS, top-k."""

from __future__ import annotations

import numpy as np

from panoptes.models.parsers import Candidates
from panoptes.models.postprocess import filter_candidates

DEFAULTS = {"threshold": 0.25, "class_thresholds": {}, "nms_iou": 0.45, "topk": 300}


def _candidates(
    rows: list[tuple[float, float, float, float, float, int]], nms_done: bool = False
) -> Candidates:
    array = np.array(rows, np.float32).reshape(-1, 6)
    keypoints = np.arange(len(array) * 3, dtype=np.float32).reshape(-1, 1, 3)
    return Candidates(
        array[:, :4].copy(), array[:, 4].copy(), array[:, 5].astype(np.int32), keypoints, nms_done
    )


# Two boxes of IoU 0.68, one far away.
OVERLAPPING = [(0, 0, 10, 10, 0.6, 0), (1, 1, 11, 11, 0.9, 0), (50, 50, 60, 60, 0.7, 0)]


def test_nms_keeps_the_best_of_overlapping_boxes_best_first() -> None:
    kept = filter_candidates(_candidates(OVERLAPPING), **DEFAULTS)  # type: ignore[arg-type]
    np.testing.assert_allclose(kept.confidence, [0.9, 0.7])
    np.testing.assert_allclose(kept.xyxy, [[1, 1, 11, 11], [50, 50, 60, 60]])
    assert kept.keypoints is not None
    np.testing.assert_allclose(kept.keypoints[:, 0, 0], [3.0, 6.0])  # rows 1 and 2 follow


def test_nms_is_per_class_unless_class_agnostic() -> None:
    rows = [(0, 0, 10, 10, 0.6, 1), (1, 1, 11, 11, 0.9, 0)]
    assert len(filter_candidates(_candidates(rows), **DEFAULTS)) == 2  # type: ignore[arg-type]
    agnostic = filter_candidates(_candidates(rows), **DEFAULTS, class_agnostic=True)  # type: ignore[arg-type]
    assert agnostic.class_id.tolist() == [0]


def test_nms_iou_threshold() -> None:
    options = {**DEFAULTS, "nms_iou": 0.7}
    kept = filter_candidates(_candidates(OVERLAPPING), **options)  # type: ignore[arg-type]
    assert len(kept) == 3  # 0.68 < 0.7


def test_class_thresholds_override_the_threshold() -> None:
    rows = [(0, 0, 1, 1, 0.5, 0), (5, 5, 6, 6, 0.5, 1), (9, 9, 10, 10, 0.2, 2)]
    options = {**DEFAULTS, "class_thresholds": {1: 0.6, 2: 0.1}}
    kept = filter_candidates(_candidates(rows), **options)  # type: ignore[arg-type]
    assert sorted(kept.class_id.tolist()) == [0, 2]


def test_topk_keeps_the_best() -> None:
    rows = [(i * 20, 0, i * 20 + 10, 10, 0.3 + i / 100, 0) for i in range(10)]
    kept = filter_candidates(_candidates(rows), **{**DEFAULTS, "topk": 3})  # type: ignore[arg-type]
    np.testing.assert_allclose(kept.confidence, [0.39, 0.38, 0.37])


def test_no_nms_when_the_graph_did_it() -> None:
    kept = filter_candidates(_candidates(OVERLAPPING, nms_done=True), **DEFAULTS)  # type: ignore[arg-type]
    np.testing.assert_allclose(kept.confidence, [0.9, 0.7, 0.6])
    assert kept.nms_done


def test_nothing_in_nothing_out() -> None:
    kept = filter_candidates(Candidates.empty(), **DEFAULTS)  # type: ignore[arg-type]
    assert len(kept) == 0 and kept.xyxy.shape == (0, 4)
    weak = filter_candidates(_candidates([(0, 0, 1, 1, 0.1, 0)]), **DEFAULTS)  # type: ignore[arg-type]
    assert len(weak) == 0
