"""Analytics on tracked objects, as DeepStream's nvdsanalytics does them: zones (with tracks
entering and leaving), counting lines, overcrowding and directions of travel.

Pure numpy, one :class:`StreamAnalytics` per stream: the rules in, one frame's objects at a
time, counts and events out; the ``analytics`` element keeps one per stream::

    rules = StreamRules(rois=[RoiRule(name="door", polygon=[(0, 0), (100, 0), (100, 80)])])
    stream = StreamAnalytics(source_id=0, entries=[rules])
    analytics, events = stream.analyze(objects, frame_num=0, time_s=0.0, size_wh=(1920, 1080))
    analytics["door"]  # {"type": "roi", "objects": 1, "track_ids": [7], "entered": 1, ...}

Every rule uses the middle of the bottom edge of each box, where an object stands.
"""

from panoptes.analytics.drawing import RulesDrawing, draw_rules
from panoptes.analytics.geometry import COMPASS, bottom_centres, points_in_polygon
from panoptes.analytics.rules import (
    MOTION_MODES,
    DirectionRule,
    LineRule,
    MotionMode,
    OvercrowdingRule,
    RoiRule,
    StreamRules,
)
from panoptes.analytics.stream import ScaledRules, StreamAnalytics, scale_rules
from panoptes.analytics.tracks import HISTORY_FRAMES, TrackTable

__all__ = [
    "COMPASS",
    "HISTORY_FRAMES",
    "MOTION_MODES",
    "DirectionRule",
    "LineRule",
    "MotionMode",
    "OvercrowdingRule",
    "RoiRule",
    "RulesDrawing",
    "ScaledRules",
    "StreamAnalytics",
    "StreamRules",
    "TrackTable",
    "bottom_centres",
    "draw_rules",
    "points_in_polygon",
    "scale_rules",
]
