"""Multi-object tracking on detections, one tracker per video stream.

Three algorithms behind one interface, :class:`StreamTracker`: ``"iou"`` (greedy overlap, no
motion model), ``"sort"`` (Kalman filter and Hungarian assignment) and ``"bytetrack"`` (SORT's
motion model with a second association stage for low-score detections). Pure numpy and SciPy:
boxes in, ids out; converting to and from frame metadata is the tracker element's job::

    next_id = itertools.count(1).__next__  # one counter for every stream: ids stay unique
    tracker = make_tracker("bytetrack", None, next_id)  # one tracker per stream
    update = tracker.update(xyxy, confidence, class_id, frame_num)  # a detector frame
    prediction = tracker.predict(frame_num)  # a frame the detector skipped
    finished = tracker.finish()  # the stream ended
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
    "StreamTracker",
    "TrackPrediction",
    "TrackUpdate",
    "TrackerAlgorithm",
    "TrackerParams",
    "make_tracker",
]
