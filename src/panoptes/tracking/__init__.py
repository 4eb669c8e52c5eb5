"""Multi-object tracking on detections, of many video streams at once.

Three algorithms behind one interface, :class:`StreamTracker`: ``"iou"`` (greedy overlap, no
motion model), ``"sort"`` (Kalman filter and Hungarian assignment) and ``"bytetrack"`` (SORT's
motion model with a second association stage for low-score detections). Pure numpy and SciPy:
boxes in, ids out; converting to and from frame metadata is the tracker element's job::

    tracker = make_tracker("bytetrack", None, itertools.count(1).__next__)
    update = tracker.update(xyxy, confidence, class_id, frame_num)  # a detector frame
    prediction = tracker.predict(frame_num)  # a frame the detector skipped
    finished = tracker.finish()  # the stream ended
    # A batch of streams in one step: detections for a detector frame, none for a skipped one.
    results = tracker.step([StreamFrame(0, 41, xyxy, confidence, class_id), StreamFrame(3, 17)])
    finished = tracker.finish(stream=3)
"""

from panoptes.tracking.params import (
    PARAMS_TYPES,
    TRACKER_ALGORITHMS,
    ByteTrackParams,
    IoUTrackerParams,
    SortParams,
    TrackerAlgorithm,
    TrackerParams,
)
from panoptes.tracking.results import (
    NO_TRACK_ID,
    FinishedTrack,
    FinishReason,
    TrackPrediction,
    TrackUpdate,
)
from panoptes.tracking.trackers import (
    ByteTracker,
    IoUTracker,
    SortTracker,
    StreamFrame,
    StreamTracker,
    make_tracker,
)

__all__ = [
    "NO_TRACK_ID",
    "PARAMS_TYPES",
    "TRACKER_ALGORITHMS",
    "ByteTrackParams",
    "ByteTracker",
    "FinishReason",
    "FinishedTrack",
    "IoUTracker",
    "IoUTrackerParams",
    "SortParams",
    "SortTracker",
    "StreamFrame",
    "StreamTracker",
    "TrackPrediction",
    "TrackUpdate",
    "TrackerAlgorithm",
    "TrackerParams",
    "make_tracker",
]
