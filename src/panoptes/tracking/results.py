"""What a tracker returns: per-detection ids, predicted boxes, and the tracks that ended."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["NO_TRACK_ID", "FinishReason", "FinishedTrack", "TrackPrediction", "TrackUpdate"]

NO_TRACK_ID = -1
"""``track_id`` of a detection without a confirmed track; the same value as ``core.meta.NO_ID``."""

FinishReason = Literal["lost", "stream-ended"]


@dataclass(frozen=True)
class FinishedTrack:
    """A confirmed track that has terminated, reported once.

    Attributes:
        track_id: its id.
        class_id: its class (the class of its latest detection when the tracker is not
            class-aware).
        first_frame: frame number of its first detection, probation included.
        last_frame: frame number of its last matched detection.
        end_frame: frame number on which the tracker terminated it: for ``"lost"`` the
            detector frame of the miss that exceeded ``max_lost_frames``, for
            ``"stream-ended"`` the stream's last frame.
        hits: detector frames it was matched on.
        last_xyxy: its last matched detection box (x1, y1, x2, y2) in pixels.
        reason: ``"lost"`` (unmatched for more than ``max_lost_frames`` detector frames) or
            ``"stream-ended"`` (the stream ended or was removed while the track was live).
        source_id: the stream, and label: the class name. A tracker knows its streams by
            key only and no names, so it leaves both None; the pipeline's tracker element fills
            them in (``dataclasses.replace``) before the track leaves with the batch.
    """

    track_id: int
    class_id: int
    first_frame: int
    last_frame: int
    end_frame: int
    hits: int
    last_xyxy: tuple[float, float, float, float]
    reason: FinishReason
    source_id: int | None = None
    label: str | None = None


@dataclass(frozen=True, eq=False)
class TrackUpdate:
    """The outcome of a detector frame, one row per input detection, in input order.

    Attributes:
        track_id: int64 [N], the detection's track id, ``NO_TRACK_ID`` when it has no confirmed
            track (a low-score detection left over, a track still on probation, a broken box).
        age: int32 [N], frames since the track's first detection (skipped frames included),
            0 without a confirmed track.
        tracker_confidence: float32 [N] in [0, 1], the IoU between the box the tracker expected
            and the detection (1.0 on a track's first frame), 0 without a confirmed track.
        finished: tracks this frame terminated.
    """

    track_id: npt.NDArray[np.int64]
    age: npt.NDArray[np.int32]
    tracker_confidence: npt.NDArray[np.float32]
    finished: list[FinishedTrack]


@dataclass(frozen=True, eq=False)
class TrackPrediction:
    """The confirmed tracks not currently lost, advanced to a frame the detector skipped.

    Attributes:
        xyxy: float32 [M, 4], predicted boxes (x1, y1, x2, y2) in pixels.
        track_id: int64 [M].
        class_id: int32 [M].
        confidence: float32 [M], the score of each track's last matched detection.
        age: int32 [M], frames since the track's first detection.
        tracker_confidence: float32 [M] in [0, 1], the value of the last detector frame times
            ``confidence_decay`` per frame since.
        finished: tracks this frame terminated; always empty today, as only detector frames
            count towards ``max_lost_frames``, and kept so that both results read alike.
    """

    xyxy: npt.NDArray[np.float32]
    track_id: npt.NDArray[np.int64]
    class_id: npt.NDArray[np.int32]
    confidence: npt.NDArray[np.float32]
    age: npt.NDArray[np.int32]
    tracker_confidence: npt.NDArray[np.float32]
    finished: list[FinishedTrack]
