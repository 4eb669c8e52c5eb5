"""Box overlap and track-detection matching."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from panoptes.tracking.association import (
    box_iou_pairs,
    match_pairs_greedy,
    match_pairs_optimal,
    valid_boxes,
)


def box_iou_batch(a: Any, b: Any) -> np.ndarray:
    """IoU of every box of ``a`` [N, 4] with every box of ``b`` [M, 4] -> [N, M]."""
    a, b = np.asarray(a).reshape(-1, 4), np.asarray(b).reshape(-1, 4)
    rows, cols = np.indices((len(a), len(b))).reshape(2, -1)
    return box_iou_pairs(a[rows], b[cols]).reshape(len(a), len(b))


def every_pair(
    match: Callable[..., np.ndarray],
) -> Callable[[np.ndarray, float], tuple[np.ndarray, np.ndarray]]:
    """A pair matcher given every cell of a dense similarity [T, D] as a candidate; returns
    the chosen (rows, columns)."""

    def dense(similarity: np.ndarray, least: float) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = np.indices(similarity.shape).reshape(2, -1)
        picked = match(rows, cols, similarity.ravel(), least)
        return rows[picked], cols[picked]

    return dense


match_optimal = every_pair(match_pairs_optimal)
match_greedy = every_pair(match_pairs_greedy)


def test_box_iou_batch_of_known_boxes() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 20, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    iou = box_iou_batch(a, b)
    assert iou.shape == (2, 3) and iou.dtype == np.float64
    np.testing.assert_allclose(iou, [[1.0, 1 / 3, 0.0], [0.5, 0.5, 0.0]])
    np.testing.assert_allclose(box_iou_pairs(a, b[:2]), [1.0, 0.5])


@pytest.mark.parametrize(
    "broken",
    [
        [5, 5, 5, 9],  # no width
        [5, 5, 9, 5],  # no height
        [9, 9, 1, 1],  # inverted
        [np.nan, 0, 10, 10],
        [0, 0, np.inf, 10],
        [-np.inf, -np.inf, np.inf, np.inf],
    ],
)
def test_degenerate_boxes_overlap_nothing(broken: list[float]) -> None:
    boxes = np.array([broken, [0, 0, 10, 10]], np.float64)
    with np.errstate(all="raise"):
        iou = box_iou_batch(boxes, boxes)
        assert valid_boxes(boxes).tolist() == [False, True]
    assert iou[0].tolist() == [0.0, 0.0] and iou[:, 0].tolist() == [0.0, 0.0]
    assert iou[1, 1] == 1.0


def test_empty_inputs() -> None:
    assert box_iou_batch(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)
    assert box_iou_batch([[0, 0, 1, 1]], np.zeros((0, 4))).shape == (1, 0)
    for match in (match_optimal, match_greedy):
        rows, cols = match(np.zeros((0, 3)), 0.3)
        assert rows.shape == cols.shape == (0,)
        rows, cols = match(np.zeros((2, 0)), 0.3)
        assert rows.shape == cols.shape == (0,)


def brute_force_best(similarity: np.ndarray, least: float) -> float:
    """The largest total margin over every partial matching of allowed pairs."""
    n_rows, n_cols = similarity.shape
    best = 0.0
    for k in range(1, min(n_rows, n_cols) + 1):
        for rows in itertools.combinations(range(n_rows), k):
            for cols in itertools.permutations(range(n_cols), k):
                values = similarity[list(rows), list(cols)]
                if np.all(values >= least):
                    best = max(best, float((values - least).sum()))
    return best


@pytest.mark.parametrize("seed", range(20))
def test_match_optimal_finds_the_best_partial_matching(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 5, size=2))
    # Mostly small overlaps, so that many pairs are not allowed.
    similarity = rng.uniform(0, 1, shape) ** 2
    rows, cols = match_optimal(similarity, 0.3)
    assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
    assert np.all(similarity[rows, cols] >= 0.3)
    total = float((similarity[rows, cols] - 0.3).sum())
    assert total == pytest.approx(brute_force_best(similarity, 0.3), abs=1e-6)


def test_one_strong_pair_beats_two_weak_ones() -> None:
    # Track 0 fits detection 0 well and detection 1 barely; track 1 fits detection 0 barely.
    similarity = np.array([[0.9, 0.25], [0.25, 0.0]])
    rows, cols = match_optimal(similarity, 0.2)
    assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 0)]


def test_a_pair_at_the_threshold_is_matched() -> None:
    rows, cols = match_optimal(np.array([[0.3]]), 0.3)
    assert (rows.tolist(), cols.tolist()) == ([0], [0])


def test_match_greedy_takes_the_best_pair_first() -> None:
    # Greedy takes (0, 0) at 0.9 and is left with (1, 1) at 0.1: not allowed. The optimal
    # matching would pair (0, 1) and (1, 0) instead.
    similarity = np.array([[0.9, 0.8], [0.85, 0.1]])
    rows, cols = match_greedy(similarity, 0.3)
    assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 0)]
    rows, cols = match_optimal(similarity, 0.3)
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 1), (1, 0)]
