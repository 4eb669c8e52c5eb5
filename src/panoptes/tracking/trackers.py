"""Multi-object trackers for one video stream each: IoU, SORT and ByteTrack.

Every tracker keeps its tracks as columns (one numpy array per property, one row per track), so
that a frame costs a few array operations whatever the number of objects. A track goes through
three states:

* on probation: matched fewer than ``min_hits`` detector frames, no id yet, dropped on its first
  miss;
* tracked: confirmed (it has an id) and matched on the latest detector frame;
* lost: confirmed but missed on the latest detector frames; it keeps its id and is still
  predicted forward, and terminates once missed more than ``max_lost_frames`` detector frames.

The algorithms differ only in how they predict a track's box (``motion_type``: the last box, or
a Kalman filter) and in how they pair tracks with detections (:meth:`StreamTracker._associate`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from panoptes.tracking.association import (
    box_iou_batch,
    match_greedy,
    match_optimal,
    valid_boxes,
)
from panoptes.tracking.kalman import KalmanBoxFilter, xyah_to_xyxy, xyxy_to_xyah
from panoptes.tracking.params import (
    ByteTrackParams,
    IoUTrackerParams,
    SortParams,
    TrackerAlgorithm,
    TrackerParams,
    check_algorithm,
)
from panoptes.tracking.results import (
    NO_TRACK_ID,
    FinishedTrack,
    FinishReason,
    TrackPrediction,
    TrackUpdate,
)

__all__ = ["ByteTracker", "IoUTracker", "SortTracker", "StreamTracker", "make_tracker"]

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class _Detections:
    """One detector frame's detections, checked: xyxy float64 [N, 4], confidence float32 [N],
    class_id int32 [N], and ``usable`` bool [N] (a finite box with an area and a finite score).
    """

    xyxy: FloatArray
    confidence: npt.NDArray[np.float32]
    class_id: npt.NDArray[np.int32]
    usable: BoolArray

    @classmethod
    def check(
        cls, xyxy: npt.ArrayLike, confidence: npt.ArrayLike, class_id: npt.ArrayLike
    ) -> _Detections:
        boxes = np.asarray(xyxy, dtype=np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        scores = np.asarray(confidence, dtype=np.float32)
        classes = np.asarray(class_id).astype(np.int32, copy=False)
        n = len(boxes)
        if boxes.shape != (n, 4) or scores.shape != (n,) or classes.shape != (n,):
            raise ValueError(
                "a tracker takes xyxy [N, 4], confidence [N] and class_id [N]; got shapes "
                f"{boxes.shape}, {scores.shape} and {classes.shape}"
            )
        usable = valid_boxes(boxes) & np.isfinite(scores)
        return cls(boxes, scores, classes, usable)

    def __len__(self) -> int:
        return len(self.xyxy)


class _Tracks:
    """The live tracks of a stream, one row per track, whatever its state.

    Columns: ``track_id`` int64 (``NO_TRACK_ID`` on probation), ``class_id`` int32,
    ``confidence`` float32 (last matched score), ``tracker_confidence`` float64,
    ``last_xyxy`` float64 [T, 4] (last matched box), ``first_frame`` / ``last_frame`` int64
    (first detection, last match), ``hits`` int32 (matched detector frames), ``lost_frames``
    int32 (detector frames missed since the last match).
    """

    def __init__(self) -> None:
        self.track_id = np.zeros(0, np.int64)
        self.class_id = np.zeros(0, np.int32)
        self.confidence = np.zeros(0, np.float32)
        self.tracker_confidence = np.zeros(0, np.float64)
        self.last_xyxy = np.zeros((0, 4), np.float64)
        self.first_frame = np.zeros(0, np.int64)
        self.last_frame = np.zeros(0, np.int64)
        self.hits = np.zeros(0, np.int32)
        self.lost_frames = np.zeros(0, np.int32)

    def __len__(self) -> int:
        return len(self.track_id)

    def append(self, detections: _Detections, indices: IndexArray, frame_num: int) -> None:
        """New tracks on probation from the detections at ``indices``."""
        n = len(indices)
        self.track_id = np.concatenate([self.track_id, np.full(n, NO_TRACK_ID, np.int64)])
        self.class_id = np.concatenate([self.class_id, detections.class_id[indices]])
        self.confidence = np.concatenate([self.confidence, detections.confidence[indices]])
        self.tracker_confidence = np.concatenate([self.tracker_confidence, np.ones(n)])
        self.last_xyxy = np.concatenate([self.last_xyxy, detections.xyxy[indices]])
        frames = np.full(n, frame_num, np.int64)
        self.first_frame = np.concatenate([self.first_frame, frames])
        self.last_frame = np.concatenate([self.last_frame, frames])
        self.hits = np.concatenate([self.hits, np.ones(n, np.int32)])
        self.lost_frames = np.concatenate([self.lost_frames, np.zeros(n, np.int32)])

    def keep(self, mask: BoolArray) -> None:
        """Drop every row where ``mask`` is False."""
        self.track_id = self.track_id[mask]
        self.class_id = self.class_id[mask]
        self.confidence = self.confidence[mask]
        self.tracker_confidence = self.tracker_confidence[mask]
        self.last_xyxy = self.last_xyxy[mask]
        self.first_frame = self.first_frame[mask]
        self.last_frame = self.last_frame[mask]
        self.hits = self.hits[mask]
        self.lost_frames = self.lost_frames[mask]


class _Motion(ABC):
    """Where each track of a stream is expected: one row per track, in the rows of ``_Tracks``."""

    @abstractmethod
    def start(self, xyxy: FloatArray) -> None:
        """Append new tracks from their first boxes [K, 4]."""

    @abstractmethod
    def advance(self, frozen_height: BoolArray) -> None:
        """Move every track one frame on; ``frozen_height`` bool [T] marks the lost ones."""

    @abstractmethod
    def correct(self, rows: IndexArray, xyxy: FloatArray) -> None:
        """Fold the matched boxes [K, 4] into the state of ``rows`` [K]."""

    @abstractmethod
    def keep(self, mask: BoolArray) -> None:
        """Drop the rows where ``mask`` is False."""

    @abstractmethod
    def predicted_xyxy(self) -> FloatArray:
        """float64 [T, 4]: each track's expected box on the current frame."""


class _LastBox(_Motion):
    """No motion: a track is expected where it was last seen."""

    def __init__(self) -> None:
        self._xyxy = np.zeros((0, 4))

    def start(self, xyxy: FloatArray) -> None:
        self._xyxy = np.concatenate([self._xyxy, xyxy])

    def advance(self, frozen_height: BoolArray) -> None:
        pass

    def correct(self, rows: IndexArray, xyxy: FloatArray) -> None:
        self._xyxy[rows] = xyxy

    def keep(self, mask: BoolArray) -> None:
        self._xyxy = self._xyxy[mask]

    def predicted_xyxy(self) -> FloatArray:
        return self._xyxy.copy()


class _ConstantVelocity(_Motion):
    """A Kalman filter per track: mean float64 [T, 8] and covariance [T, 8, 8] in the
    (cx, cy, aspect, h) form of :mod:`panoptes.tracking.kalman`, all tracks in one batch.
    """

    def __init__(self) -> None:
        self._filter = KalmanBoxFilter()
        self._mean = np.zeros((0, 8))
        self._covariance = np.zeros((0, 8, 8))

    def start(self, xyxy: FloatArray) -> None:
        mean, covariance = self._filter.initiate(xyxy_to_xyah(xyxy))
        self._mean = np.concatenate([self._mean, mean])
        self._covariance = np.concatenate([self._covariance, covariance])

    def advance(self, frozen_height: BoolArray) -> None:
        if len(self._mean) == 0:
            return
        # As ByteTrack does: the height of a lost track stops changing, so that a box unseen for
        # a second neither shrinks to nothing nor balloons over the frame.
        self._mean[frozen_height, 7] = 0.0
        self._mean, self._covariance = self._filter.predict(self._mean, self._covariance)

    def correct(self, rows: IndexArray, xyxy: FloatArray) -> None:
        if len(rows) == 0:
            return
        mean, covariance = self._filter.update(
            self._mean[rows], self._covariance[rows], xyxy_to_xyah(xyxy)
        )
        self._mean[rows] = mean
        self._covariance[rows] = covariance

    def keep(self, mask: BoolArray) -> None:
        self._mean = self._mean[mask]
        self._covariance = self._covariance[mask]

    def predicted_xyxy(self) -> FloatArray:
        return xyah_to_xyxy(self._mean[:, :4])


class StreamTracker(ABC):
    """Tracks the objects of one video stream; the caller keeps one instance per stream.

    Call :meth:`update` on every frame the detector ran on and :meth:`predict` on every frame it
    skipped, in frame order, then :meth:`finish` when the stream ends. Each call advances the
    tracks by one frame. ``next_id`` hands out track ids; sharing one counter between the
    trackers of all streams keeps ids unique across streams. An id is drawn only when a track is
    confirmed, so ids stay dense.

    ``tracker_confidence`` is the IoU between the box a track was expected at (its prediction)
    and the detection it was matched with, 1.0 on its first frame, and on each frame without a
    match the previous value times ``params.confidence_decay``: a measure of how well the track's
    motion explains what the detector sees, in [0, 1].
    """

    params_type: ClassVar[type[TrackerParams]] = TrackerParams
    motion_type: ClassVar[type[_Motion]]
    greedy_matching: ClassVar[bool] = False
    """The one-stage association pairs best IoU first (True) or by an optimal assignment."""

    def __init__(self, params: TrackerParams | None, next_id: Callable[[], int]) -> None:
        if params is None:
            params = self.params_type()
        if not isinstance(params, self.params_type):
            raise TypeError(
                f"{type(self).__name__} takes {self.params_type.__name__}, "
                f"got {type(params).__name__}"
            )
        self.params = params
        self._next_id = next_id
        self._tracks = _Tracks()
        self._motion = self.motion_type()
        # As in ByteTrack, tracks born on a stream's first detector frame are confirmed at once,
        # so that a clip does not open with frames of objects without ids.
        self._first_update_done = False
        self._frame_num: int | None = None

    def update(
        self,
        xyxy: npt.ArrayLike,
        confidence: npt.ArrayLike,
        class_id: npt.ArrayLike,
        frame_num: int,
    ) -> TrackUpdate:
        """A frame the detector ran on: associate its detections with the tracks.

        ``xyxy`` float32 [N, 4] (x1, y1, x2, y2) in pixels, ``confidence`` float32 [N],
        ``class_id`` int32 [N]; N may be 0. A box that is not finite or has no area, or a score
        that is not finite, is never associated and never starts a track.
        """
        detections = _Detections.check(xyxy, confidence, class_id)
        params = self.params
        tracks = self._tracks
        first_update = not self._first_update_done
        self._first_update_done = True
        self._frame_num = frame_num

        self._motion.advance(frozen_height=tracks.lost_frames > 0)
        # Every track against every detection once: the association's stages take their
        # subsets of it (a frame's numpy calls, not its arithmetic, are what tracking costs).
        overlap = box_iou_batch(self._motion.predicted_xyxy(), detections.xyxy)
        rows, cols = self._associate(overlap, detections)

        matched_xyxy = detections.xyxy[cols]
        tracks.tracker_confidence[rows] = overlap[rows, cols]
        tracks.confidence[rows] = detections.confidence[cols]
        tracks.last_xyxy[rows] = matched_xyxy
        tracks.last_frame[rows] = frame_num
        tracks.hits[rows] += 1
        tracks.lost_frames[rows] = 0
        if not params.class_aware:
            tracks.class_id[rows] = detections.class_id[cols]
        self._motion.correct(rows, matched_xyxy)

        missed = np.ones(len(tracks), bool)
        missed[rows] = False
        tracks.lost_frames[missed] += 1
        tracks.tracker_confidence[missed] *= params.confidence_decay
        confirmed = tracks.track_id != NO_TRACK_ID
        ended = missed & (~confirmed | (tracks.lost_frames > params.max_lost_frames))
        finished = self._finished(np.flatnonzero(ended & confirmed), "lost", frame_num)
        self._confirm(np.flatnonzero(~confirmed & ~missed & (tracks.hits >= params.min_hits)))

        det_row = np.full(len(detections), -1, np.intp)
        det_row[cols] = rows
        if ended.any():
            kept = ~ended
            det_row[cols] = (np.cumsum(kept) - 1)[rows]
            tracks.keep(kept)
            self._motion.keep(kept)

        starting = np.flatnonzero((det_row < 0) & self._may_start(detections))
        if len(starting):
            first_new_row = len(tracks)
            tracks.append(detections, starting, frame_num)
            self._motion.start(detections.xyxy[starting])
            det_row[starting] = np.arange(first_new_row, len(tracks))
            if first_update or params.min_hits <= 1:
                self._confirm(np.arange(first_new_row, len(tracks)))

        return self._per_detection(det_row, frame_num, finished)

    def predict(self, frame_num: int) -> TrackPrediction:
        """A frame the detector skipped: advance every track one frame.

        Returns the confirmed tracks that are not lost, at their predicted boxes. Lost tracks go
        on moving unseen; this frame does not count towards their ``max_lost_frames``.
        """
        self._frame_num = frame_num
        tracks = self._tracks
        self._motion.advance(frozen_height=tracks.lost_frames > 0)
        tracks.tracker_confidence *= self.params.confidence_decay
        shown = np.flatnonzero((tracks.track_id != NO_TRACK_ID) & (tracks.lost_frames == 0))
        return TrackPrediction(
            xyxy=self._motion.predicted_xyxy()[shown].astype(np.float32),
            track_id=tracks.track_id[shown],
            class_id=tracks.class_id[shown],
            confidence=tracks.confidence[shown],
            age=_age(frame_num, tracks.first_frame[shown]),
            tracker_confidence=tracks.tracker_confidence[shown].astype(np.float32),
            finished=[],
        )

    def finish(self, frame_num: int | None = None) -> list[FinishedTrack]:
        """The stream ended or was removed: every confirmed track, lost ones included, ends.

        ``frame_num`` is the stream's last frame, by default the last one this tracker saw.
        Afterwards the tracker is as new, and a stream that starts again starts afresh.
        """
        end_frame = frame_num if frame_num is not None else self._frame_num
        tracks = self._tracks
        live = np.flatnonzero(tracks.track_id != NO_TRACK_ID)
        finished = self._finished(live, "stream-ended", -1 if end_frame is None else end_frame)
        nothing = np.zeros(len(tracks), bool)
        tracks.keep(nothing)
        self._motion.keep(nothing)
        self._first_update_done = False
        self._frame_num = None
        return finished

    # Hooks for the algorithms.

    def _associate(
        self, overlap: FloatArray, detections: _Detections
    ) -> tuple[IndexArray, IndexArray]:
        """Pairs (track rows, detection indices), each intp [K]; every row and index once.

        ``overlap`` float64 [T, N] is the IoU of every track's box on this frame (its
        prediction) with every detection. By default one stage: every track against every
        usable detection (see :attr:`greedy_matching`).
        """
        rows = np.arange(len(self._tracks))
        cols = np.flatnonzero(detections.usable)
        similarity = self._similarity(overlap, rows, detections, cols)
        match = match_greedy if self.greedy_matching else match_optimal
        track_rows, det_cols = match(similarity, self.params.iou_threshold)
        return track_rows, cols[det_cols]

    def _may_start(self, detections: _Detections) -> BoolArray:
        """bool [N]: which detections, if left unmatched, start a track."""
        return detections.usable

    # Shared steps.

    def _similarity(
        self,
        overlap: FloatArray,
        rows: IndexArray,
        detections: _Detections,
        cols: IndexArray,
    ) -> FloatArray:
        """IoU [len(rows), len(cols)] of tracks and detections (taken from ``overlap``), 0
        across classes when class-aware.

        Every threshold is above 0, so a zero keeps a pair apart.
        """
        similarity = overlap[rows][:, cols]
        if self.params.class_aware:
            other_class = self._tracks.class_id[rows, None] != detections.class_id[None, cols]
            similarity[other_class] = 0.0
        return similarity

    def _confirm(self, rows: IndexArray) -> None:
        for row in rows.tolist():
            self._tracks.track_id[row] = self._next_id()

    def _finished(
        self, rows: IndexArray, reason: FinishReason, end_frame: int
    ) -> list[FinishedTrack]:
        tracks = self._tracks
        return [
            FinishedTrack(
                track_id=int(tracks.track_id[row]),
                class_id=int(tracks.class_id[row]),
                first_frame=int(tracks.first_frame[row]),
                last_frame=int(tracks.last_frame[row]),
                end_frame=end_frame,
                hits=int(tracks.hits[row]),
                last_xyxy=(
                    float(tracks.last_xyxy[row, 0]),
                    float(tracks.last_xyxy[row, 1]),
                    float(tracks.last_xyxy[row, 2]),
                    float(tracks.last_xyxy[row, 3]),
                ),
                reason=reason,
            )
            for row in rows.tolist()
        ]

    def _per_detection(
        self, det_row: IndexArray, frame_num: int, finished: list[FinishedTrack]
    ) -> TrackUpdate:
        tracks = self._tracks
        track_id = np.full(len(det_row), NO_TRACK_ID, np.int64)
        has_row = det_row >= 0
        track_id[has_row] = tracks.track_id[det_row[has_row]]
        tracked = np.flatnonzero(track_id != NO_TRACK_ID)
        age = np.zeros(len(det_row), np.int32)
        age[tracked] = _age(frame_num, tracks.first_frame[det_row[tracked]])
        tracker_confidence = np.zeros(len(det_row), np.float32)
        tracker_confidence[tracked] = tracks.tracker_confidence[det_row[tracked]]
        return TrackUpdate(track_id, age, tracker_confidence, finished)


class IoUTracker(StreamTracker):
    """Greedy overlap: each track expects its last box; pairs are taken by highest IoU first.

    No motion model, so it is the cheapest and suits slow objects or a detector that runs on
    every frame; fast objects that cross can swap ids.
    """

    params_type = IoUTrackerParams
    motion_type = _LastBox
    greedy_matching = True
    params: IoUTrackerParams


class SortTracker(StreamTracker):
    """SORT: a Kalman filter per track and one optimal (Hungarian) assignment on IoU.

    The motion model carries tracks through crossings and skipped frames; every detection given
    is used, so filter low scores out before :meth:`update`.
    """

    params_type = SortParams
    motion_type = _ConstantVelocity
    params: SortParams


class ByteTracker(StreamTracker):
    """ByteTrack: SORT's motion model and three association stages that use low scores too.

    1. High-score detections against tracked and lost tracks (IoU times score).
    2. Low-score detections against the tracked tracks left over (IoU): an object the detector
       still sees, but doubts (partly occluded, blurred), keeps its track.
    3. Tracks on probation against the high-score detections left over (IoU times score).

    High-score detections left after that start tracks when they reach
    ``new_track_threshold``; low-score ones never do, nor do those below ``low_threshold``.
    """

    params_type = ByteTrackParams
    motion_type = _ConstantVelocity
    params: ByteTrackParams

    def _associate(
        self, overlap: FloatArray, detections: _Detections
    ) -> tuple[IndexArray, IndexArray]:
        params = self.params
        tracks = self._tracks
        score = detections.confidence
        confirmed = tracks.track_id != NO_TRACK_ID
        high = np.flatnonzero(detections.usable & (score >= params.high_threshold))
        low = np.flatnonzero(
            detections.usable & (score >= params.low_threshold) & (score < params.high_threshold)
        )

        pool = np.flatnonzero(confirmed)
        similarity = self._similarity(overlap, pool, detections, high)
        if params.fuse_score:
            similarity *= score[None, high]
        first_rows, first_cols = match_optimal(similarity, params.iou_threshold)
        pool_left = np.delete(pool, first_rows)
        high_left = np.delete(high, first_cols)

        # Only tracks matched on the previous detector frame: a lost track that a low-score
        # box happens to overlap is more often a false match than a recovery.
        tracked_left = pool_left[tracks.lost_frames[pool_left] == 0]
        similarity = self._similarity(overlap, tracked_left, detections, low)
        second_rows, second_cols = match_optimal(similarity, params.low_iou_threshold)

        probation = np.flatnonzero(~confirmed)
        similarity = self._similarity(overlap, probation, detections, high_left)
        if params.fuse_score:
            similarity *= score[None, high_left]
        third_rows, third_cols = match_optimal(similarity, params.unconfirmed_iou_threshold)

        rows = np.concatenate([pool[first_rows], tracked_left[second_rows], probation[third_rows]])
        cols = np.concatenate([high[first_cols], low[second_cols], high_left[third_cols]])
        return rows, cols

    def _may_start(self, detections: _Detections) -> BoolArray:
        return detections.usable & (detections.confidence >= self.params.new_track_threshold)


_TRACKER_TYPES: Mapping[TrackerAlgorithm, type[StreamTracker]] = {
    "iou": IoUTracker,
    "sort": SortTracker,
    "bytetrack": ByteTracker,
}


def make_tracker(
    algorithm: TrackerAlgorithm,
    params: TrackerParams | None,
    next_id: Callable[[], int],
) -> StreamTracker:
    """A tracker for one stream: ``params`` of the algorithm's type, or None for its defaults.

    ``next_id`` returns a new track id on each call (a counter shared by all streams).
    """
    return _TRACKER_TYPES[check_algorithm(algorithm)](params, next_id)


def _age(frame_num: int, first_frame: npt.NDArray[np.int64]) -> npt.NDArray[np.int32]:
    # Clipped at 0 in case a source restarts its frame numbers.
    return np.maximum(frame_num - first_frame, 0).astype(np.int32)
