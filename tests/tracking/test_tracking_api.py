"""The public API of panoptes.tracking: names, construction and validation."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

import panoptes.tracking
from panoptes.core.errors import ConfigError
from panoptes.tracking import (
    TRACKER_ALGORITHMS,
    ByteTracker,
    ByteTrackParams,
    IoUTracker,
    IoUTrackerParams,
    SortParams,
    SortTracker,
    TrackerParams,
    make_tracker,
)


def test_all_lists_the_public_names() -> None:
    public = {name for name in dir(panoptes.tracking) if not name.startswith("_")}
    modules = {"association", "kalman", "params", "results", "trackers"}
    assert set(panoptes.tracking.__all__) == public - modules


@pytest.mark.parametrize(
    ("algorithm", "tracker_type", "params_type"),
    [
        ("iou", IoUTracker, IoUTrackerParams),
        ("sort", SortTracker, SortParams),
        ("bytetrack", ByteTracker, ByteTrackParams),
    ],
)
def test_make_tracker_builds_each_algorithm(
    algorithm: Any, tracker_type: type, params_type: type
) -> None:
    assert algorithm in TRACKER_ALGORITHMS
    tracker = make_tracker(algorithm, None, itertools.count(1).__next__)
    assert type(tracker) is tracker_type
    assert tracker.params == params_type()


def test_published_defaults() -> None:
    assert (IoUTrackerParams().min_hits, IoUTrackerParams().iou_threshold) == (1, 0.3)
    assert (SortParams().min_hits, SortParams().iou_threshold) == (3, 0.3)
    byte = ByteTrackParams()
    assert (byte.min_hits, byte.max_lost_frames) == (2, 30)
    assert (byte.high_threshold, byte.low_threshold, byte.new_track_threshold) == (0.5, 0.1, 0.6)
    assert (byte.iou_threshold, byte.low_iou_threshold, byte.unconfirmed_iou_threshold) == (
        0.2,
        0.5,
        0.3,
    )


def test_an_unknown_algorithm_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="known: iou, sort, bytetrack"):
        make_tracker("deepsort", None, itertools.count(1).__next__)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="known: iou, sort, bytetrack"):
        TrackerParams.for_algorithm("deepsort")  # type: ignore[arg-type]


def test_params_for_an_algorithm_from_one_flat_configuration() -> None:
    flat = {"max_lost_frames": 10, "min_hits": None, "high_threshold": 0.4}
    assert TrackerParams.for_algorithm("sort", **flat) == SortParams(max_lost_frames=10)
    assert TrackerParams.for_algorithm("bytetrack", **flat) == ByteTrackParams(
        max_lost_frames=10, high_threshold=0.4
    )
    with pytest.raises(ConfigError, match="no tracker has this setting"):
        TrackerParams.for_algorithm("sort", high_treshold=0.4)
    with pytest.raises(ConfigError, match="high_threshold"):
        TrackerParams.for_algorithm("bytetrack", high_threshold=2.0)


def test_params_of_another_algorithm_are_refused() -> None:
    with pytest.raises(TypeError, match="ByteTracker takes ByteTrackParams, got SortParams"):
        make_tracker("bytetrack", SortParams(), itertools.count(1).__next__)


@pytest.mark.parametrize(
    ("params_type", "field", "value"),
    [
        (SortParams, "max_lost_frames", -1),
        (SortParams, "max_lost_frames", 2.5),
        (SortParams, "min_hits", 0),
        (IoUTrackerParams, "iou_threshold", 0.0),
        (IoUTrackerParams, "iou_threshold", 1.5),
        (IoUTrackerParams, "iou_threshold", float("nan")),
        (IoUTrackerParams, "confidence_decay", -0.1),
        (IoUTrackerParams, "class_aware", "yes"),
        (ByteTrackParams, "low_threshold", 0.7),  # above high_threshold
        (ByteTrackParams, "new_track_threshold", 0.4),  # below high_threshold
        (ByteTrackParams, "low_iou_threshold", 0.0),
    ],
)
def test_params_are_validated(params_type: type, field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        params_type(**{field: value})


def test_detections_of_mismatched_lengths_are_refused() -> None:
    tracker = make_tracker("sort", None, itertools.count(1).__next__)
    with pytest.raises(ValueError, match=r"xyxy \[N, 4\], confidence \[N\] and class_id \[N\]"):
        tracker.update(np.zeros((2, 4)), np.zeros(3), np.zeros(2, np.int32), 0)
    with pytest.raises(ValueError, match="got shapes"):
        tracker.update(np.zeros((2, 5)), np.zeros(2), np.zeros(2, np.int32), 0)
