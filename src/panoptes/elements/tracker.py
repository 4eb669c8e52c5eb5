"""``tracker``: gives objects ids that persist from frame to frame, as nvtracker does."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from panoptes.core.element import Element, ElementProperties
from panoptes.core.errors import ConfigError
from panoptes.core.frame import Batch, Frame
from panoptes.core.meta import NO_ID
from panoptes.core.negotiation import ANY_MEMORY

if TYPE_CHECKING:
    from panoptes.tracking import FinishedTrack, StreamTracker


class TrackerProperties(ElementProperties):
    type: Literal["bytetrack", "sort", "iou"] = Field(
        "bytetrack",
        description="Algorithm: bytetrack (two-stage, also uses low-confidence detections), "
        "sort (Kalman filter + Hungarian assignment) or iou (greedy overlap).",
    )
    name: str | None = Field(None, description="Element name.")
    max_lost_frames: int = Field(
        30,
        ge=0,
        description="Frames (that the detector ran on) a track keeps its id without a match, "
        "through occlusions, before it ends.",
    )
    min_hits: int | None = Field(
        None,
        ge=1,
        description="Matches a new track needs before it gets an id; default per algorithm "
        "(bytetrack 2, sort 3, iou 1; tracks on a stream's first frame get one at once).",
    )
    iou_threshold: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Least overlap for a detection to continue a track; default per algorithm.",
    )
    class_aware: bool = Field(
        True, description="Never continue a track with a detection of another class."
    )
    high_threshold: float = Field(
        0.5, ge=0, le=1, description="bytetrack: detections this confident are matched first."
    )
    low_threshold: float = Field(
        0.1, ge=0, le=1, description="bytetrack: less confident detections are ignored."
    )
    new_track_threshold: float = Field(
        0.6, ge=0, le=1, description="bytetrack: least confidence for a detection to start a track."
    )
    operate_on_gie_id: int | None = Field(
        None,
        description="The model whose frames count as detected (others are predicted forward); "
        "default the first infer element.",
    )
    keep_untracked: bool = Field(
        False,
        description="Keep detections that no track took (new tracks on probation, unmatched "
        "low-confidence ones), with no track id; by default they are removed.",
    )
    predict_skipped: bool = Field(
        True,
        description="On frames the detector skipped (infer interval), output the tracks "
        "predicted forward, marked tracker_only.",
    )


class Tracker(Element):
    """One tracker per stream (``source_id``), ids unique across the pipeline.

    On frames the operated model ran on, its objects are matched to tracks and get
    ``track_id`` plus the extra columns ``track_age`` (frames since the track began),
    ``tracker_confidence`` and ``tracker_only`` (0); objects no track took are removed unless
    ``keep_untracked``. On frames the model skipped (``interval``), each track is predicted
    forward and added as an object with ``tracker_only`` = 1. Tracks that end are listed in the
    batch's ``terminated_tracks``; a stream that ends or is removed frees its trackers.
    """

    kind = "tracker"
    Properties = TrackerProperties
    memory = ANY_MEMORY  # boxes only: frames may stay on the GPU

    props: TrackerProperties

    def build(self) -> None:
        from panoptes.tracking import TrackerParams

        props = self.props
        overrides: dict[str, Any] = {
            "max_lost_frames": props.max_lost_frames,
            "class_aware": props.class_aware,
            "high_threshold": props.high_threshold,
            "low_threshold": props.low_threshold,
            "new_track_threshold": props.new_track_threshold,
        }
        if props.min_hits is not None:
            overrides["min_hits"] = props.min_hits
        if props.iou_threshold is not None:
            overrides["iou_threshold"] = props.iou_threshold
        self._params = TrackerParams.for_algorithm(props.type, **overrides)
        ids = itertools.count(1)
        self._next_id = lambda: next(ids)
        self._trackers: dict[int, StreamTracker] = {}
        self._labels: dict[int, dict[int, str]] = {}
        """Per stream, the label of each track's class, for the objects it predicts."""
        config = self.context.config
        has_models = bool(config is not None and config.infer)
        self._gie_id = props.operate_on_gie_id or (1 if has_models else None)
        if props.operate_on_gie_id is not None and config is not None:
            known = [infer.gie_id or i + 1 for i, infer in enumerate(config.infer)]
            if props.operate_on_gie_id not in known:
                raise ConfigError(
                    f"no infer element has gie_id {props.operate_on_gie_id} "
                    f"(ids: {', '.join(map(str, known)) or 'none'})",
                    f"{self.context.place}.operate_on_gie_id",
                )
        self.tracks_finished = 0

    def _tracker(self, source_id: int) -> StreamTracker:
        tracker = self._trackers.get(source_id)
        if tracker is None:
            from panoptes.tracking import make_tracker

            tracker = make_tracker(self.props.type, self._params, self._next_id)
            self._trackers[source_id] = tracker
            self._labels[source_id] = {}
        return tracker

    def process(self, batch: Batch) -> Batch:
        for frame in batch.frames:
            finished = self._track(frame)
            self._report(batch, frame.source_id, finished)
        # A stream's end comes with (or after) its last frame: its tracks end here.
        for event in batch.events:
            if event.kind in ("ended", "removed"):
                tracker = self._trackers.pop(event.source_id, None)
                if tracker is not None:
                    self._report(batch, event.source_id, tracker.finish())
                self._labels.pop(event.source_id, None)
        return batch

    def _track(self, frame: Frame) -> list[FinishedTrack]:
        tracker = self._tracker(frame.source_id)
        labels = self._labels[frame.source_id]
        objects = frame.objects
        detected = self._gie_id is None or self._gie_id in frame.meta.inferred_by
        if self._gie_id is None:
            rows = np.arange(len(objects))
        else:
            rows = np.flatnonzero(objects.component_id == self._gie_id)
        age = objects.column("track_age", np.int32)
        confidence = objects.column("tracker_confidence", np.float32)
        tracker_only = objects.column("tracker_only", np.uint8)
        if detected:
            update = tracker.update(
                objects.xyxy[rows],
                objects.confidence[rows],
                objects.class_id[rows],
                frame.frame_num,
            )
            objects.track_id[rows] = update.track_id
            age[rows] = update.age
            confidence[rows] = update.tracker_confidence
            tracker_only[rows] = 0
            for row, track_id in zip(rows.tolist(), update.track_id.tolist(), strict=True):
                if track_id != NO_ID:
                    labels[track_id] = objects.labels[row]
            if not self.props.keep_untracked:
                untracked = np.zeros(len(objects), bool)
                untracked[rows] = update.track_id == NO_ID
                if untracked.any():
                    objects.keep(~untracked)
            return update.finished
        predicted = tracker.predict(frame.frame_num)
        if self.props.predict_skipped and len(predicted.track_id):
            first = len(objects)
            objects.add(
                predicted.xyxy,
                predicted.confidence,
                predicted.class_id,
                [
                    labels.get(int(t), str(int(c)))
                    for t, c in zip(predicted.track_id, predicted.class_id, strict=True)
                ],
                component_id=self._gie_id or 0,
                track_id=predicted.track_id,
            )
            added = slice(first, None)
            objects.extra["track_age"][added] = predicted.age
            objects.extra["tracker_confidence"][added] = predicted.tracker_confidence
            objects.extra["tracker_only"][added] = 1
        return predicted.finished

    def _report(self, batch: Batch, source_id: int, finished: list[FinishedTrack]) -> None:
        if not finished:
            return
        labels = self._labels.get(source_id, {})
        for track in finished:
            batch.terminated_tracks.append(
                replace(track, source_id=source_id, label=labels.pop(track.track_id, None))
            )
        self.tracks_finished += len(finished)

    def close(self) -> None:
        self._trackers = {}
        self._labels = {}
