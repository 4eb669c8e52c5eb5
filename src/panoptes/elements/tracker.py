"""``tracker``: gives objects ids that persist from frame to frame, as nvtracker does."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any, Literal

import numpy as np
from pydantic import Field

from panoptes.core.element import Element, ElementProperties
from panoptes.core.errors import ConfigError
from panoptes.core.frame import Batch, Frame
from panoptes.core.meta import NO_ID
from panoptes.core.negotiation import ANY_MEMORY
from panoptes.tracking import (
    FinishedTrack,
    StreamFrame,
    TrackerParams,
    TrackPrediction,
    TrackUpdate,
    make_tracker,
)


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
        # One tracker for every stream: a batch is one step of array operations however many
        # streams it holds.
        self._tracker = make_tracker(props.type, self._params, lambda: next(ids))
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

    def process(self, batch: Batch) -> Batch:
        frames = batch.frames
        # A tracker step takes one frame per stream: a batch holding two frames of a stream
        # (a fast source) goes in as several steps, each stream's frames in order.
        while frames:
            step: list[Frame] = []
            later: list[Frame] = []
            in_step: set[int] = set()
            for frame in frames:
                (later if frame.source_id in in_step else step).append(frame)
                in_step.add(frame.source_id)
            self._track(batch, step)
            frames = later
        # A stream's end comes with (or after) its last frame: its tracks end here.
        for event in batch.events:
            if event.kind in ("ended", "removed"):
                self._report(batch, event.source_id, self._tracker.finish(stream=event.source_id))
                self._labels.pop(event.source_id, None)
        return batch

    def _track(self, batch: Batch, frames: list[Frame]) -> None:
        inputs: list[StreamFrame] = []
        rows_of: list[np.ndarray] = []
        for frame in frames:
            objects = frame.objects
            if self._gie_id is None:
                rows = np.arange(len(objects))
            else:
                rows = np.flatnonzero(objects.component_id == self._gie_id)
            rows_of.append(rows)
            if self._gie_id is None or self._gie_id in frame.meta.inferred_by:
                inputs.append(
                    StreamFrame(
                        frame.source_id,
                        frame.frame_num,
                        objects.xyxy[rows],
                        objects.confidence[rows],
                        objects.class_id[rows],
                    )
                )
            else:
                inputs.append(StreamFrame(frame.source_id, frame.frame_num))
        results = self._tracker.step(inputs)
        for frame, rows, result in zip(frames, rows_of, results, strict=True):
            labels = self._labels.setdefault(frame.source_id, {})
            if isinstance(result, TrackUpdate):
                self._write_update(frame, rows, result, labels)
            else:
                self._add_predicted(frame, result, labels)
            self._report(batch, frame.source_id, result.finished)

    def _write_update(
        self, frame: Frame, rows: np.ndarray, update: TrackUpdate, labels: dict[int, str]
    ) -> None:
        objects = frame.objects
        objects.track_id[rows] = update.track_id
        objects.column("track_age", np.int32)[rows] = update.age
        objects.column("tracker_confidence", np.float32)[rows] = update.tracker_confidence
        objects.column("tracker_only", np.uint8)[rows] = 0
        tracked = np.flatnonzero(update.track_id != NO_ID)
        if len(tracked):
            labels.update(
                zip(
                    update.track_id[tracked].tolist(),
                    [objects.labels[row] for row in rows[tracked].tolist()],
                    strict=True,
                )
            )
        if not self.props.keep_untracked and len(tracked) < len(rows):
            untracked = np.zeros(len(objects), bool)
            untracked[rows] = update.track_id == NO_ID
            objects.keep(~untracked)

    def _add_predicted(
        self, frame: Frame, predicted: TrackPrediction, labels: dict[int, str]
    ) -> None:
        objects = frame.objects
        # The columns exist on every frame the tracker saw, predicted objects or none.
        for name, dtype in (
            ("track_age", np.int32),
            ("tracker_confidence", np.float32),
            ("tracker_only", np.uint8),
        ):
            objects.column(name, dtype)
        if not self.props.predict_skipped or len(predicted.track_id) == 0:
            return
        first = len(objects)
        objects.add(
            predicted.xyxy,
            predicted.confidence,
            predicted.class_id,
            [
                labels.get(track_id, str(class_id))
                for track_id, class_id in zip(
                    predicted.track_id.tolist(), predicted.class_id.tolist(), strict=True
                )
            ],
            component_id=self._gie_id or 0,
            track_id=predicted.track_id,
        )
        added = slice(first, None)
        objects.extra["track_age"][added] = predicted.age
        objects.extra["tracker_confidence"][added] = predicted.tracker_confidence
        objects.extra["tracker_only"][added] = 1

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
        self._labels = {}
