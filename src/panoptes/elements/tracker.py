"""``tracker``: gives objects ids that persist from frame to frame, as nvtracker does."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from panoptes.core.element import ElementProperties


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
