"""The settings of each tracking algorithm: frozen, validated, with the published defaults."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from panoptes.core.errors import ConfigError

__all__ = [
    "PARAMS_TYPES",
    "TRACKER_ALGORITHMS",
    "ByteTrackParams",
    "IoUTrackerParams",
    "SortParams",
    "TrackerAlgorithm",
    "TrackerParams",
]

TrackerAlgorithm = Literal["iou", "sort", "bytetrack"]
TRACKER_ALGORITHMS: tuple[TrackerAlgorithm, ...] = ("iou", "sort", "bytetrack")


@dataclass(frozen=True)
class TrackerParams:
    """Settings every algorithm shares. Build the subclass of an algorithm, directly or with
    :meth:`for_algorithm`.

    Attributes:
        max_lost_frames: detector frames a confirmed track keeps its id without a match
            (an occlusion); on the next miss it terminates with reason ``"lost"``. Frames the
            detector skipped do not count: nobody looked.
        min_hits: matched detector frames a new track needs before it gets an id (probation).
            A track born on a stream's first detector frame gets its id at once. A track on
            probation that misses a detector frame is dropped without a report.
        iou_threshold: least overlap (IoU, or for ByteTrack IoU times score) between a track's
            predicted box and a detection for them to be associated.
        class_aware: never associate a detection with a track of another class. When False a
            track takes the class of its latest detection.
        confidence_decay: factor applied to a track's ``tracker_confidence`` on every frame it
            is not matched (skipped by the detector, or missed).
    """

    max_lost_frames: int = 30
    min_hits: int = 2
    iou_threshold: float = 0.3
    class_aware: bool = True
    confidence_decay: float = 0.9

    @classmethod
    def for_algorithm(cls, algorithm: TrackerAlgorithm, **overrides: Any) -> TrackerParams:
        """The params of ``algorithm`` (``"iou"``, ``"sort"``, ``"bytetrack"``), overridden.

        An override of None keeps the algorithm's default. One that only another algorithm
        has (ByteTrack's score thresholds given for ``"sort"``) is ignored, so that one flat
        configuration serves every algorithm; a name that no algorithm has is an error.
        """
        params_type = PARAMS_TYPES[check_algorithm(algorithm)]
        every_name = {field.name for each in PARAMS_TYPES.values() for field in fields(each)}
        for name in overrides:
            if name not in every_name:
                raise ConfigError(
                    f"no tracker has this setting; known: {', '.join(sorted(every_name))}", name
                )
        own = {field.name for field in fields(params_type)}
        return params_type(
            **{
                name: value
                for name, value in overrides.items()
                if name in own and value is not None
            }
        )

    def __post_init__(self) -> None:
        _check_int(self.max_lost_frames, "max_lost_frames", minimum=0)
        _check_int(self.min_hits, "min_hits", minimum=1)
        _check_fraction(self.iou_threshold, "iou_threshold", allow_zero=False)
        _check_fraction(self.confidence_decay, "confidence_decay", allow_zero=True)
        if not isinstance(self.class_aware, bool):
            raise ConfigError(f"must be true or false, got {self.class_aware!r}", "class_aware")


@dataclass(frozen=True)
class IoUTrackerParams(TrackerParams):
    """Greedy overlap matching without a motion model.

    No probation by default (``min_hits`` 1): the cheapest tracker, for when every detection
    should carry an id at once; raise ``min_hits`` to keep one-frame false positives from
    taking ids.
    """

    min_hits: int = 1


@dataclass(frozen=True)
class SortParams(TrackerParams):
    """SORT (Bewley et al., 2016): the paper's probation of 3 hits and IoU gate of 0.3."""

    min_hits: int = 3


@dataclass(frozen=True)
class ByteTrackParams(TrackerParams):
    """ByteTrack (Zhang et al., 2022) with the thresholds of its reference implementation.

    The reference states its gates as costs (``1 - similarity``): 0.8, 0.5 and 0.7 for the three
    stages; here they are the matching least similarities 0.2, 0.5 and 0.3.

    Attributes:
        iou_threshold: first stage, high-score detections against tracked and lost tracks.
        low_iou_threshold: second stage, low-score detections against the tracked tracks left
            over (IoU alone, never fused with the score).
        unconfirmed_iou_threshold: third stage, tracks on probation against the high-score
            detections left over.
        high_threshold: a detection with at least this score enters the first stage.
        low_threshold: a detection scoring in [low_threshold, high_threshold) enters the second
            stage; one below is ignored. Low-score detections never start a track.
        new_track_threshold: least score of a left-over high-score detection to start a track.
        fuse_score: multiply IoU by the detection score in the first and third stages, so that
            a confident detection wins a close call.
    """

    iou_threshold: float = 0.2
    low_iou_threshold: float = 0.5
    unconfirmed_iou_threshold: float = 0.3
    high_threshold: float = 0.5
    low_threshold: float = 0.1
    new_track_threshold: float = 0.6
    fuse_score: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("low_iou_threshold", "unconfirmed_iou_threshold"):
            _check_fraction(getattr(self, name), name, allow_zero=False)
        for name in ("high_threshold", "low_threshold", "new_track_threshold"):
            _check_fraction(getattr(self, name), name, allow_zero=True)
        if self.low_threshold > self.high_threshold:
            raise ConfigError(
                f"must not exceed high_threshold ({self.high_threshold}), got {self.low_threshold}",
                "low_threshold",
            )
        if self.new_track_threshold < self.high_threshold:
            raise ConfigError(
                f"must be at least high_threshold ({self.high_threshold}): only high-score "
                f"detections start tracks; got {self.new_track_threshold}",
                "new_track_threshold",
            )
        if not isinstance(self.fuse_score, bool):
            raise ConfigError(f"must be true or false, got {self.fuse_score!r}", "fuse_score")


def _check_int(value: object, name: str, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"must be an integer >= {minimum}, got {value!r}", name)


def _check_fraction(value: object, name: str, *, allow_zero: bool) -> None:
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (0 <= value <= 1 if allow_zero else 0 < value <= 1)
    )
    if not ok:
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ConfigError(f"must be a number in {interval}, got {value!r}", name)


PARAMS_TYPES: Mapping[TrackerAlgorithm, type[TrackerParams]] = {
    "iou": IoUTrackerParams,
    "sort": SortParams,
    "bytetrack": ByteTrackParams,
}
"""The params class of each tracking algorithm."""


def check_algorithm(algorithm: str) -> TrackerAlgorithm:
    """``algorithm`` if it names a tracker, else a ConfigError (place ``algorithm``) listing
    the known ones."""
    if algorithm not in TRACKER_ALGORITHMS:
        known = ", ".join(TRACKER_ALGORITHMS)
        raise ConfigError(f"unknown tracker algorithm {algorithm!r}; known: {known}", "algorithm")
    return algorithm
