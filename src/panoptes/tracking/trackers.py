"""Multi-object trackers for many video streams at once: IoU, SORT and ByteTrack.

Every tracker keeps the tracks of all its streams as columns (one numpy array per property, one
row per track, a ``stream`` column saying whose it is), so that a step over one frame of each of
a batch's streams costs a few array operations whatever the number of streams and objects: a
track is only ever paired with detections of its own stream, and the streams' assignment
problems, side by side, are one problem. A track goes through three states:

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, cast

import numpy as np
import numpy.typing as npt

from panoptes.tracking.association import (
    box_iou_pairs,
    match_pairs_greedy,
    match_pairs_optimal,
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

__all__ = [
    "ByteTracker",
    "IoUTracker",
    "SortTracker",
    "StreamFrame",
    "StreamTracker",
    "make_tracker",
]

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class StreamFrame:
    """One frame of one stream, for :meth:`StreamTracker.step`.

    ``stream`` is any integer key (the pipeline's ``source_id``). On a frame the detector ran
    on, ``xyxy`` float32 [N, 4] (x1, y1, x2, y2) in pixels, ``confidence`` float32 [N] and
    ``class_id`` int32 [N] are its detections (N may be 0); on a frame the detector skipped all
    three are None.
    """

    stream: int
    frame_num: int
    xyxy: npt.ArrayLike | None = None
    confidence: npt.ArrayLike | None = None
    class_id: npt.ArrayLike | None = None

    @property
    def detected(self) -> bool:
        return self.xyxy is not None


@dataclass(frozen=True)
class _Detections:
    """The detections of a step's detector frames, one after the other in frame order, checked:
    xyxy float64 [N, 4], confidence float32 [N], class_id int32 [N], ``usable`` bool [N] (a
    finite box with an area and a finite score), ``frame`` intp [N] (the index of its frame in
    the step), and ``start`` intp [F + 1] (frame i's detections are ``start[i]:start[i + 1]``).
    """

    xyxy: FloatArray
    confidence: npt.NDArray[np.float32]
    class_id: npt.NDArray[np.int32]
    usable: BoolArray
    frame: IndexArray
    start: IndexArray

    @classmethod
    def gather(cls, frames: Sequence[StreamFrame]) -> _Detections:
        """The detections of the ``frames`` that have them; the others count as empty."""
        boxes_of: list[FloatArray] = []
        scores_of: list[npt.NDArray[np.float32]] = []
        classes_of: list[npt.NDArray[np.int32]] = []
        counts = np.zeros(len(frames), np.intp)
        for index, frame in enumerate(frames):
            if not frame.detected:
                continue
            boxes = np.asarray(frame.xyxy, dtype=np.float64)
            if boxes.size == 0:
                boxes = boxes.reshape(0, 4)
            scores = np.asarray(frame.confidence, dtype=np.float32)
            classes = np.asarray(frame.class_id).astype(np.int32, copy=False)
            n = len(boxes)
            if boxes.shape != (n, 4) or scores.shape != (n,) or classes.shape != (n,):
                raise ValueError(
                    "a tracker takes xyxy [N, 4], confidence [N] and class_id [N]; got shapes "
                    f"{boxes.shape}, {scores.shape} and {classes.shape} (stream {frame.stream}, "
                    f"frame {frame.frame_num})"
                )
            boxes_of.append(boxes)
            scores_of.append(scores)
            classes_of.append(classes)
            counts[index] = n
        xyxy = _joined(boxes_of, np.zeros((0, 4)))
        confidence = _joined(scores_of, np.zeros(0, np.float32))
        return cls(
            xyxy=xyxy,
            confidence=confidence,
            class_id=_joined(classes_of, np.zeros(0, np.int32)),
            usable=valid_boxes(xyxy) & np.isfinite(confidence),
            frame=np.repeat(np.arange(len(frames)), counts),
            start=np.concatenate([[0], np.cumsum(counts)]),
        )

    def __len__(self) -> int:
        return len(self.xyxy)


@dataclass(frozen=True)
class _Pairs:
    """The candidate (track row, detection) pairs of a step: same stream, overlapping boxes,
    the same class when class-aware; ``iou`` float64 [P] in (0, 1] is the overlap of the track's
    expected box with the detection."""

    track: IndexArray
    det: IndexArray
    iou: FloatArray


class _Tracks:
    """The live tracks of every stream, one row per track, whatever its state.

    Columns: ``stream`` int64 (whose track it is), ``track_id`` int64 (``NO_TRACK_ID`` on
    probation), ``class_id`` int32, ``confidence`` float32 (last matched score),
    ``tracker_confidence`` float64, ``last_xyxy`` float64 [T, 4] (last matched box),
    ``first_frame`` / ``last_frame`` int64 (first detection, last match, in its stream's frame
    numbers), ``hits`` int32 (matched detector frames), ``lost_frames`` int32 (detector frames
    missed since the last match).
    """

    def __init__(self) -> None:
        self.stream = np.zeros(0, np.int64)
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

    def append(
        self,
        detections: _Detections,
        indices: IndexArray,
        stream: npt.NDArray[np.int64],
        frame_num: npt.NDArray[np.int64],
    ) -> None:
        """New tracks on probation from the detections at ``indices``, of ``stream`` [K] and
        first seen on ``frame_num`` [K]."""
        n = len(indices)
        self.stream = np.concatenate([self.stream, stream])
        self.track_id = np.concatenate([self.track_id, np.full(n, NO_TRACK_ID, np.int64)])
        self.class_id = np.concatenate([self.class_id, detections.class_id[indices]])
        self.confidence = np.concatenate([self.confidence, detections.confidence[indices]])
        self.tracker_confidence = np.concatenate([self.tracker_confidence, np.ones(n)])
        self.last_xyxy = np.concatenate([self.last_xyxy, detections.xyxy[indices]])
        self.first_frame = np.concatenate([self.first_frame, frame_num])
        self.last_frame = np.concatenate([self.last_frame, frame_num])
        self.hits = np.concatenate([self.hits, np.ones(n, np.int32)])
        self.lost_frames = np.concatenate([self.lost_frames, np.zeros(n, np.int32)])

    def keep(self, mask: BoolArray) -> None:
        """Drop every row where ``mask`` is False."""
        self.stream = self.stream[mask]
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
    """Where each track is expected: one row per track, in the rows of ``_Tracks``."""

    @abstractmethod
    def start(self, xyxy: FloatArray) -> None:
        """Append new tracks from their first boxes [K, 4]."""

    @abstractmethod
    def advance(self, moving: BoolArray, frozen_height: BoolArray) -> None:
        """Move the tracks where ``moving`` bool [T] is set one frame on; ``frozen_height``
        bool [T] marks the lost ones."""

    @abstractmethod
    def correct(self, rows: IndexArray, xyxy: FloatArray) -> None:
        """Fold the matched boxes [K, 4] into the state of ``rows`` [K]."""

    @abstractmethod
    def keep(self, mask: BoolArray) -> None:
        """Drop the rows where ``mask`` is False."""

    @abstractmethod
    def predicted_xyxy(self) -> FloatArray:
        """float64 [T, 4]: each track's expected box on its stream's current frame."""


class _LastBox(_Motion):
    """No motion: a track is expected where it was last seen."""

    def __init__(self) -> None:
        self._xyxy = np.zeros((0, 4))

    def start(self, xyxy: FloatArray) -> None:
        self._xyxy = np.concatenate([self._xyxy, xyxy])

    def advance(self, moving: BoolArray, frozen_height: BoolArray) -> None:
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

    def advance(self, moving: BoolArray, frozen_height: BoolArray) -> None:
        if not moving.any():
            return
        # As ByteTrack does: the height of a lost track stops changing, so that a box unseen for
        # a second neither shrinks to nothing nor balloons over the frame.
        self._mean[moving & frozen_height, 7] = 0.0
        if moving.all():
            self._mean, self._covariance = self._filter.predict(self._mean, self._covariance)
            return
        rows = np.flatnonzero(moving)
        mean, covariance = self._filter.predict(self._mean[rows], self._covariance[rows])
        self._mean[rows] = mean
        self._covariance[rows] = covariance

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
    """Tracks the objects of any number of video streams, each stream on its own.

    Call :meth:`step` with one frame of each stream that has one (a batch; a stream not in it
    stands still), or :meth:`update` and :meth:`predict` for one stream at a time; either way
    every stream's frames in frame order. Call :meth:`finish` when a stream ends. A step over
    many streams costs about what a step over one does: the arrays are longer, the calls as
    many. ``next_id`` hands out track ids; ids are unique across the streams of a tracker (and
    across trackers that share the counter). An id is drawn only when a track is confirmed,
    so ids stay dense.

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
        self._started: set[int] = set()
        """Streams past their first detector frame."""
        self._frame_num: dict[int, int] = {}
        """Each stream's latest frame number."""

    @property
    def streams(self) -> set[int]:
        """The streams this tracker holds tracks or state of (until :meth:`finish`)."""
        return set(self._frame_num) | set(self._tracks.stream.tolist())

    def update(
        self,
        xyxy: npt.ArrayLike,
        confidence: npt.ArrayLike,
        class_id: npt.ArrayLike,
        frame_num: int,
        stream: int = 0,
    ) -> TrackUpdate:
        """A frame of ``stream`` the detector ran on: associate its detections with the tracks.

        ``xyxy`` float32 [N, 4] (x1, y1, x2, y2) in pixels, ``confidence`` float32 [N],
        ``class_id`` int32 [N]; N may be 0. A box that is not finite or has no area, or a score
        that is not finite, is never associated and never starts a track.
        """
        (result,) = self.step([StreamFrame(stream, frame_num, xyxy, confidence, class_id)])
        return cast(TrackUpdate, result)

    def predict(self, frame_num: int, stream: int = 0) -> TrackPrediction:
        """A frame of ``stream`` the detector skipped: advance its tracks one frame.

        Returns the confirmed tracks that are not lost, at their predicted boxes. Lost tracks go
        on moving unseen; this frame does not count towards their ``max_lost_frames``.
        """
        (result,) = self.step([StreamFrame(stream, frame_num)])
        return cast(TrackPrediction, result)

    def step(self, frames: Sequence[StreamFrame]) -> list[TrackUpdate | TrackPrediction]:
        """One frame of each of several streams: :meth:`update` for those with detections,
        :meth:`predict` for the others, all at once. Returns each frame's result, in order.
        """
        if not frames:
            return []
        streams = np.fromiter((frame.stream for frame in frames), np.int64, len(frames))
        if len(np.unique(streams)) < len(frames):
            repeated = sorted({int(s) for s in streams if (streams == s).sum() > 1})
            raise ValueError(
                f"a tracker step takes one frame of each stream; got more of stream {repeated}"
            )
        # Checked before any track moves: a malformed input changes nothing.
        detections = _Detections.gather(frames)
        frame_num = np.fromiter((frame.frame_num for frame in frames), np.int64, len(frames))
        detected = np.fromiter((frame.detected for frame in frames), bool, len(frames))
        tracks = self._tracks
        track_frame = _frame_of(tracks.stream, streams)
        self._motion.advance(track_frame >= 0, frozen_height=tracks.lost_frames > 0)
        self._frame_num.update(zip(streams.tolist(), frame_num.tolist(), strict=True))

        # Predictions first: the update's ended tracks renumber the rows.
        predictions: dict[int, TrackPrediction] = {}
        if not detected.all():
            predictions = self._predict(track_frame, detected, frame_num)
        updates: list[TrackUpdate] = []
        if detected.any():
            updates = self._update(track_frame, detected, detections, streams, frame_num)
        return [
            updates[index] if frame.detected else predictions[index]
            for index, frame in enumerate(frames)
        ]

    def finish(self, frame_num: int | None = None, stream: int = 0) -> list[FinishedTrack]:
        """``stream`` ended or was removed: every confirmed track of it, lost ones included, ends.

        ``frame_num`` is the stream's last frame, by default the last one this tracker saw.
        Afterwards the stream is as new here, and a stream that starts again starts afresh.
        """
        end_frame = frame_num if frame_num is not None else self._frame_num.get(stream)
        tracks = self._tracks
        of_stream = tracks.stream == stream
        live = np.flatnonzero(of_stream & (tracks.track_id != NO_TRACK_ID))
        ends = np.full(len(live), -1 if end_frame is None else end_frame, np.int64)
        finished = self._finished(live, "stream-ended", ends)
        tracks.keep(~of_stream)
        self._motion.keep(~of_stream)
        self._started.discard(stream)
        self._frame_num.pop(stream, None)
        return finished

    def _predict(
        self, track_frame: IndexArray, detected: BoolArray, frame_num: npt.NDArray[np.int64]
    ) -> dict[int, TrackPrediction]:
        """The step's frames the detector skipped (``detected`` False): each one's prediction,
        by frame index. ``track_frame`` [T] is each track's frame in the step (-1: none)."""
        tracks = self._tracks
        skipped = (track_frame >= 0) & ~detected[track_frame]
        tracks.tracker_confidence[skipped] *= self.params.confidence_decay
        shown = np.flatnonzero(
            skipped & (tracks.track_id != NO_TRACK_ID) & (tracks.lost_frames == 0)
        )
        shown = shown[np.argsort(track_frame[shown], kind="stable")]
        shown_frame = track_frame[shown]
        xyxy = self._motion.predicted_xyxy()[shown].astype(np.float32)
        age = _age(frame_num[shown_frame], tracks.first_frame[shown])
        tracker_confidence = tracks.tracker_confidence[shown].astype(np.float32)
        start = np.searchsorted(shown_frame, np.arange(len(frame_num) + 1))
        predictions: dict[int, TrackPrediction] = {}
        for index in np.flatnonzero(~detected).tolist():
            part = slice(start[index], start[index + 1])
            predictions[index] = TrackPrediction(
                xyxy=xyxy[part],
                track_id=tracks.track_id[shown[part]],
                class_id=tracks.class_id[shown[part]],
                confidence=tracks.confidence[shown[part]],
                age=age[part],
                tracker_confidence=tracker_confidence[part],
                finished=[],
            )
        return predictions

    def _update(
        self,
        track_frame: IndexArray,
        detected: BoolArray,
        detections: _Detections,
        stream: npt.NDArray[np.int64],
        frame_num: npt.NDArray[np.int64],
    ) -> list[TrackUpdate]:
        """The step's detector frames (``detected`` True): associate, correct, end and start
        tracks. Returns an update for every frame of the step, by index (empty for the frames
        the detector skipped)."""
        params = self.params
        tracks = self._tracks
        active = (track_frame >= 0) & detected[track_frame]
        first_update = detected & ~np.isin(stream, list(self._started))
        self._started.update(stream[detected].tolist())

        pairs = self._pairs(active, track_frame, detections)
        picked = self._associate(pairs, detections)
        rows, cols = pairs.track[picked], pairs.det[picked]

        det_frame_num = frame_num[detections.frame]
        matched_xyxy = detections.xyxy[cols]
        tracks.tracker_confidence[rows] = pairs.iou[picked]
        tracks.confidence[rows] = detections.confidence[cols]
        tracks.last_xyxy[rows] = matched_xyxy
        tracks.last_frame[rows] = det_frame_num[cols]
        tracks.hits[rows] += 1
        tracks.lost_frames[rows] = 0
        if not params.class_aware:
            tracks.class_id[rows] = detections.class_id[cols]
        self._motion.correct(rows, matched_xyxy)

        matched = np.zeros(len(tracks), bool)
        matched[rows] = True
        missed = active & ~matched
        tracks.lost_frames[missed] += 1
        tracks.tracker_confidence[missed] *= params.confidence_decay
        confirmed = tracks.track_id != NO_TRACK_ID
        ended = missed & (~confirmed | (tracks.lost_frames > params.max_lost_frames))
        lost = np.flatnonzero(ended & confirmed)
        lost_frame = track_frame[lost]
        finished = self._finished(lost, "lost", frame_num[lost_frame])
        self._confirm(np.flatnonzero(~confirmed & matched & (tracks.hits >= params.min_hits)))

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
            starting_frame = detections.frame[starting]
            tracks.append(detections, starting, stream[starting_frame], frame_num[starting_frame])
            self._motion.start(detections.xyxy[starting])
            new_rows = np.arange(first_new_row, len(tracks))
            det_row[starting] = new_rows
            if params.min_hits <= 1:
                self._confirm(new_rows)
            else:
                self._confirm(new_rows[first_update[starting_frame]])

        track_id = np.full(len(det_row), NO_TRACK_ID, np.int64)
        has_row = det_row >= 0
        track_id[has_row] = tracks.track_id[det_row[has_row]]
        tracked = np.flatnonzero(track_id != NO_TRACK_ID)
        age = np.zeros(len(det_row), np.int32)
        age[tracked] = _age(det_frame_num[tracked], tracks.first_frame[det_row[tracked]])
        tracker_confidence = np.zeros(len(det_row), np.float32)
        tracker_confidence[tracked] = tracks.tracker_confidence[det_row[tracked]]

        finished_of: dict[int, list[FinishedTrack]] = {}
        for track, index in zip(finished, lost_frame.tolist(), strict=True):
            finished_of.setdefault(index, []).append(track)
        updates: list[TrackUpdate] = []
        start = detections.start.tolist()
        for index in range(len(frame_num)):
            part = slice(start[index], start[index + 1])
            updates.append(
                TrackUpdate(
                    track_id[part],
                    age[part],
                    tracker_confidence[part],
                    finished_of.get(index, []),
                )
            )
        return updates

    def _pairs(self, active: BoolArray, track_frame: IndexArray, detections: _Detections) -> _Pairs:
        """Every active track against every detection of its own frame that it overlaps (and,
        when class-aware, of its class): the association's stages take their subsets of it."""
        rows = np.flatnonzero(active)
        rows = rows[np.argsort(track_frame[rows], kind="stable")]
        n_frames = len(detections.start) - 1
        tracks_of = np.bincount(track_frame[rows], minlength=n_frames)
        detections_of = np.diff(detections.start)
        track_start = np.cumsum(tracks_of) - tracks_of
        # Frame f contributes tracks_of[f] x detections_of[f] pairs, track-major.
        pairs_of = tracks_of * detections_of
        pair_frame = np.repeat(np.arange(n_frames), pairs_of)
        within = np.arange(len(pair_frame)) - np.repeat(np.cumsum(pairs_of) - pairs_of, pairs_of)
        width = detections_of[pair_frame]
        track = rows[track_start[pair_frame] + within // width]
        det = detections.start[pair_frame] + within % width
        candidate = detections.usable[det]
        if self.params.class_aware:
            candidate &= self._tracks.class_id[track] == detections.class_id[det]
        track, det = track[candidate], det[candidate]
        iou = box_iou_pairs(self._motion.predicted_xyxy()[track], detections.xyxy[det])
        # Every threshold is above 0: pairs that do not overlap can never be matched.
        overlapping = iou > 0
        return _Pairs(track[overlapping], det[overlapping], iou[overlapping])

    # Hooks for the algorithms.

    def _associate(self, pairs: _Pairs, detections: _Detections) -> IndexArray:
        """The candidate pairs (indices into ``pairs``) that continue tracks; every track and
        detection at most once. By default one stage: every track against every usable
        detection (see :attr:`greedy_matching`)."""
        match = match_pairs_greedy if self.greedy_matching else match_pairs_optimal
        return match(pairs.track, pairs.det, pairs.iou, self.params.iou_threshold)

    def _may_start(self, detections: _Detections) -> BoolArray:
        """bool [N]: which detections, if left unmatched, start a track."""
        return detections.usable

    # Shared steps.

    def _confirm(self, rows: IndexArray) -> None:
        for row in rows.tolist():
            self._tracks.track_id[row] = self._next_id()

    def _finished(
        self, rows: IndexArray, reason: FinishReason, end_frame: npt.NDArray[np.int64]
    ) -> list[FinishedTrack]:
        tracks = self._tracks
        return [
            FinishedTrack(
                track_id=int(tracks.track_id[row]),
                class_id=int(tracks.class_id[row]),
                first_frame=int(tracks.first_frame[row]),
                last_frame=int(tracks.last_frame[row]),
                end_frame=end,
                hits=int(tracks.hits[row]),
                last_xyxy=(
                    float(tracks.last_xyxy[row, 0]),
                    float(tracks.last_xyxy[row, 1]),
                    float(tracks.last_xyxy[row, 2]),
                    float(tracks.last_xyxy[row, 3]),
                ),
                reason=reason,
            )
            for row, end in zip(rows.tolist(), end_frame.tolist(), strict=True)
        ]


def _frame_of(track_stream: npt.NDArray[np.int64], streams: npt.NDArray[np.int64]) -> IndexArray:
    """intp [T]: the index in ``streams`` (distinct keys) of each track's stream, -1 if absent."""
    if len(track_stream) == 0:
        return np.zeros(0, np.intp)
    order = np.argsort(streams)
    place = np.minimum(np.searchsorted(streams[order], track_stream), len(streams) - 1)
    return np.where(streams[order][place] == track_stream, order[place], -1)


def _joined(parts: list[np.ndarray], empty: np.ndarray) -> np.ndarray:
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else empty


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

    def _associate(self, pairs: _Pairs, detections: _Detections) -> IndexArray:
        params = self.params
        tracks = self._tracks
        track, det = pairs.track, pairs.det
        score = detections.confidence[det]
        confirmed = tracks.track_id[track] != NO_TRACK_ID
        high = score >= params.high_threshold
        low = (score >= params.low_threshold) & ~high
        fused = pairs.iou * score if params.fuse_score else pairs.iou

        first = np.flatnonzero(confirmed & high)
        first = first[
            match_pairs_optimal(track[first], det[first], fused[first], params.iou_threshold)
        ]

        # Only tracks matched on the previous detector frame: a lost track that a low-score
        # box happens to overlap is more often a false match than a recovery.
        second = np.flatnonzero(
            confirmed & low & (tracks.lost_frames[track] == 0) & ~np.isin(track, track[first])
        )
        second = second[
            match_pairs_optimal(
                track[second], det[second], pairs.iou[second], params.low_iou_threshold
            )
        ]

        third = np.flatnonzero(~confirmed & high & ~np.isin(det, det[first]))
        third = third[
            match_pairs_optimal(
                track[third], det[third], fused[third], params.unconfirmed_iou_threshold
            )
        ]
        return np.concatenate([first, second, third])

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


def _age(
    frame_num: npt.NDArray[np.int64], first_frame: npt.NDArray[np.int64]
) -> npt.NDArray[np.int32]:
    # Clipped at 0 in case a source restarts its frame numbers.
    age: npt.NDArray[np.int32] = np.maximum(frame_num - first_frame, 0).astype(np.int32)
    return age
