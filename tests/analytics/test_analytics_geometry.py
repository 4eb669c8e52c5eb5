"""The geometry under the rules, the track table, and the package's public names."""

from __future__ import annotations

import math

import numpy as np
import pytest

import panoptes.analytics
from panoptes.analytics import COMPASS, HISTORY_FRAMES, TrackTable, bottom_centres
from panoptes.analytics.geometry import crossing_positions, polygon_area, signed_side, unit


def test_all_lists_the_public_names() -> None:
    public = {name for name in dir(panoptes.analytics) if not name.startswith("_")}
    modules = {"drawing", "geometry", "rules", "stream", "tracks"}
    assert set(panoptes.analytics.__all__) == public - modules


def test_bottom_centres() -> None:
    boxes = np.array([[10, 20, 30, 60], [0, 0, 1, 1]], np.float32)
    assert bottom_centres(boxes).tolist() == [[20.0, 60.0], [0.5, 1.0]]
    assert bottom_centres(np.zeros((0, 4))).shape == (0, 2)


def test_where_paths_meet_a_line() -> None:
    start, end = np.array([0.0, 0.0]), np.array([10.0, 0.0])
    paths_from = np.array([[5.0, -1.0], [-5.0, -1.0], [20.0, 1.0], [0.0, 1.0]])
    paths_to = np.array([[5.0, 1.0], [-5.0, 1.0], [10.0, -1.0], [5.0, 1.0]])
    positions = crossing_positions(paths_from, paths_to, start, end)
    assert positions[:3].tolist() == pytest.approx([0.5, -0.5, 1.5])
    assert math.isnan(positions[3])  # parallel to the line
    assert signed_side(paths_from, start, np.array([0.0, 1.0])).tolist() == [-1, -1, 1, 1]


def test_small_helpers() -> None:
    assert polygon_area([(0, 0), (4, 0), (4, 3)]) == 6
    assert unit(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist() == [[0.6, 0.8], [0.0, 0.0]]
    assert dict(COMPASS)["east"] == pytest.approx((1.0, 0.0))
    assert dict(COMPASS)["north"] == pytest.approx((0.0, -1.0))


def test_reference_points_average_the_oldest_positions() -> None:
    table = TrackTable(capacity=1)
    ids = np.array([7, 8])
    for step in range(1, 14):
        slots = table.observe(ids, np.array([[step, 0.0], [0.0, step]]), time_s=step)
        reference = table.reference_points(slots)
        stored = min(step, HISTORY_FRAMES)
        oldest = max(1, min(4, stored // 2))
        first = step - stored + 1
        expected = sum(range(first, first + oldest)) / oldest
        assert reference.tolist() == [[expected, 0.0], [0.0, expected]]
    assert table.capacity == 2 and table.seen[slots].tolist() == [13, 13]
    assert table.stale(time_s=20.0, timeout_s=5.0) == [7, 8]
    assert table.release(7) is not None and table.release(7) is None
    assert list(table.slots) == [8]
