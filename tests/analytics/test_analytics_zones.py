"""Zones (ROIs) on synthetic tracks: counts, tracks entering and leaving, flag and filter."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from analytics_tracks import Walker, objects_at, run, straight

from panoptes.analytics import RoiRule, StreamAnalytics, StreamRules

SQUARE = [(800, 400), (1200, 400), (1200, 800), (800, 800)]


def analyzer(*rois: dict[str, Any], **stream: Any) -> StreamAnalytics:
    rules = StreamRules(rois=[RoiRule.model_validate(r) for r in rois])
    return StreamAnalytics(0, [rules], **stream)


def test_tracks_entering_and_leaving_a_zone() -> None:
    walkers = [
        # Through the zone from left to right, 10 px a frame: in at x = 800 (frame 20), out
        # at x = 1200 (frame 60: the left and top edges are in the zone, the others not).
        Walker(1, straight((600, 600), (1400, 600), 81)),
        # Stays outside, below it.
        Walker(2, straight((600, 900), (1400, 900), 81)),
        # Appears inside: it enters on its first frame, and is still inside at the end.
        Walker(3, [(1000.0, 500.0)] * 81, class_id=2),
    ]
    result = run(analyzer({"name": "square", "polygon": SQUARE}), walkers, 81)
    events = [(e.kind, e.track_id, e.frame_num, e.count) for e in result.events]
    assert events == [
        ("entered", 3, 0, 1),
        ("entered", 1, 20, 2),
        ("exited", 1, 60, 1),
    ]
    assert result.events[0].label == "car" and result.events[1].label == "person"
    assert result.analytics[40]["square"] == {
        "type": "roi",
        "objects": 2,
        "track_ids": [1, 3],
        "entered": 2,
        "exited": 0,
    }
    assert result.analytics[-1]["square"]["objects"] == 1
    # Objects in the zone carry its name, as nvdsanalytics' roiStatus.
    flagged = result.objects[40].to_dicts()
    assert [o.get("user_meta", {}).get("analytics") for o in flagged] == [
        {"rois": ["square"]},
        None,
        {"rois": ["square"]},
    ]


def test_inverse_zone_is_everything_outside_the_polygon() -> None:
    walkers = [Walker(1, [(1000.0, 600.0)] * 5), Walker(2, [(100.0, 100.0)] * 5)]
    result = run(analyzer({"name": "out", "polygon": SQUARE, "inverse": True}), walkers, 5)
    assert result.analytics[-1]["out"]["track_ids"] == [2]


def test_class_and_size_filters() -> None:
    walkers = [
        Walker(1, [(1000.0, 600.0)] * 3, class_id=0, size_wh=(40, 100)),
        Walker(2, [(1000.0, 600.0)] * 3, class_id=2, size_wh=(200, 100)),
        Walker(3, [(1000.0, 600.0)] * 3, class_id=2, size_wh=(20, 20)),
    ]
    rule = {"name": "cars", "polygon": SQUARE, "class_ids": [2], "min_size_wh": (50, 50)}
    result = run(analyzer(rule), walkers, 3)
    assert result.analytics[-1]["cars"]["track_ids"] == [2]
    assert [e.track_id for e in result.kinds("entered")] == [2]


def test_filter_zones_remove_the_objects_outside_them() -> None:
    walkers = [
        Walker(1, [(1000.0, 600.0)] * 3),
        Walker(2, [(100.0, 100.0)] * 3),
        # A car outside: the filter is for people only, so it stays.
        Walker(3, [(100.0, 900.0)] * 3, class_id=2),
    ]
    rules = (
        {"name": "keep", "polygon": SQUARE, "mode": "filter", "class_ids": [0]},
        {"name": "left", "polygon": [(0, 0), (400, 0), (400, 1080), (0, 1080)]},
    )
    result = run(analyzer(*rules), walkers, 3)
    kept = result.objects[-1]
    assert kept.track_id.tolist() == [1, 3]
    # The other zones count what is left: the person at x = 100 was removed before them.
    assert result.analytics[-1]["left"]["track_ids"] == [3]
    assert result.analytics[-1]["keep"]["track_ids"] == [1]


def test_min_frames_keeps_a_box_on_the_edge_from_flickering() -> None:
    # The bottom centre jitters across the zone's left edge (x = 800) every frame for 20
    # frames, starting inside, then walks in: 10 entries in the jitter, one more at the end.
    path = [(798.0 if i % 2 else 803.0, 600.0) for i in range(20)]
    path += straight((803, 600), (1000, 600), 10)
    flicker = run(analyzer({"name": "z", "polygon": SQUARE}), [Walker(1, path)], len(path))
    assert len(flicker.kinds("entered")) == 11
    steady = run(
        analyzer({"name": "z", "polygon": SQUARE, "min_frames": 3}), [Walker(1, path)], len(path)
    )
    assert [e.frame_num for e in steady.kinds("entered")] == [22]
    assert not steady.kinds("exited")


def test_a_track_that_ends_inside_leaves_the_zone() -> None:
    stream = analyzer({"name": "z", "polygon": SQUARE})
    run(stream, [Walker(7, [(1000.0, 600.0)] * 3)], 3)
    assert len(stream.tracks) == 1
    events = stream.end_track(7, frame_num=3)
    assert [(e.kind, e.track_id, e.frame_num, e.extra) for e in events] == [
        ("exited", 7, 3, {"reason": "track ended"})
    ]
    assert len(stream.tracks) == 0
    assert stream.end_track(7, frame_num=4) == []


def test_tracks_not_seen_for_a_while_are_forgotten() -> None:
    # Track 1 is seen for 3 frames, track 2 throughout; at 10 fps the timeout of 2 s passes
    # by frame 23, and stale tracks are looked for every 32 frames.
    stream = analyzer({"name": "z", "polygon": SQUARE}, track_timeout_s=2.0)
    walkers = [Walker(1, [(1000.0, 600.0)] * 3), Walker(2, [(100.0, 100.0)] * 40)]
    result = run(stream, walkers, 40)
    assert [(e.kind, e.track_id, e.frame_num) for e in result.kinds("exited")] == [
        ("exited", 1, 31)
    ]
    assert result.kinds("exited")[0].extra == {"reason": "track timeout"}
    assert sorted(stream.tracks.slots) == [2]


def test_untracked_objects_are_counted_without_events() -> None:
    walkers = [Walker(1, [(1000.0, 600.0)] * 3)]
    result = run(analyzer({"name": "z", "polygon": SQUARE}), [], 3, untracked=walkers)
    assert result.analytics[-1]["z"]["objects"] == 1
    assert result.analytics[-1]["z"]["track_ids"] == []
    assert not result.events


def test_many_tracks_reuse_the_table() -> None:
    stream = analyzer({"name": "z", "polygon": SQUARE})
    walkers = [Walker(i, [(1000.0, 600.0)] * 2, start=i) for i in range(1, 200)]
    result = run(stream, walkers, 201)
    assert len(result.kinds("entered")) == 199
    assert stream.tracks.capacity >= 2
    for track_id in range(1, 200):
        stream.end_track(track_id, 201)
    assert len(stream.tracks) == 0
    # Slots of ended tracks go to new ones, which start outside every zone.
    objects = objects_at([Walker(500, [(100.0, 100.0)])], 0)
    analytics, events = stream.analyze(objects, frame_num=202, time_s=20.2, size_wh=(1920, 1080))
    assert analytics["z"]["objects"] == 0 and not events


@pytest.mark.parametrize(
    ("polygon", "words"),
    [
        ([(0, 0), (10, 10)], "at least 3 items"),
        ([(0, 0), (10, 10), (20, 20)], "enclose no area"),
    ],
)
def test_malformed_zones_are_refused(polygon: list[Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        RoiRule(name="z", polygon=polygon)


def test_points_on_both_sides_of_a_concave_zone() -> None:
    from panoptes.analytics import points_in_polygon

    # A U shape: the notch (x 40..60, y 0..80) is outside.
    u_shape = [(0, 0), (40, 0), (40, 80), (60, 80), (60, 0), (100, 0), (100, 100), (0, 100)]
    points = np.array([[20, 50], [50, 50], [80, 50], [50, 90], [150, 50]])
    assert points_in_polygon(points, u_shape).tolist() == [True, False, True, True, False]
    assert points_in_polygon(points, u_shape[::-1]).tolist() == [True, False, True, True, False]
    assert points_in_polygon(np.zeros((0, 2)), u_shape).tolist() == []
