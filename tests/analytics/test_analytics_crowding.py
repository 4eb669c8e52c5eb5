"""Overcrowding and directions of travel on synthetic tracks."""

from __future__ import annotations

from typing import Any

import pytest
from analytics_tracks import Walker, run, straight

from panoptes.analytics import (
    COMPASS,
    DirectionRule,
    OvercrowdingRule,
    StreamAnalytics,
    StreamRules,
)

QUEUE = [(0, 500), (1000, 500), (1000, 1000), (0, 1000)]


def crowd_analyzer(**rule: Any) -> StreamAnalytics:
    crowding = OvercrowdingRule.model_validate({"name": "queue", "polygon": QUEUE, **rule})
    return StreamAnalytics(0, [StreamRules(overcrowding=[crowding])])


def visitors(*spans: tuple[int, int]) -> list[Walker]:
    """One person standing in the queue for each (first, last) frame span."""
    return [
        Walker(i + 1, [(100.0 + 50 * i, 800.0)] * (last - first + 1), start=first)
        for i, (first, last) in enumerate(spans)
    ]


def test_overcrowding_starts_and_ends_with_the_count() -> None:
    # Three people from frame 10 to 29, a fourth from 15 to 24; threshold 4: frames 15-24.
    people = visitors((10, 29), (10, 29), (10, 29), (15, 24))
    result = run(crowd_analyzer(threshold=4), people, 40)
    events = [(e.kind, e.frame_num, e.count, e.track_id) for e in result.events]
    assert events == [("overcrowded", 15, 4, None), ("overcrowding-ended", 25, 3, None)]
    states = [a["queue"]["overcrowded"] for a in result.analytics]
    assert states == [False] * 15 + [True] * 10 + [False] * 15
    assert result.analytics[20]["queue"] == {
        "type": "overcrowding",
        "objects": 4,
        "threshold": 4,
        "overcrowded": True,
    }
    marked = result.objects[20].to_dicts()
    assert all(o["user_meta"]["analytics"] == {"overcrowding": ["queue"]} for o in marked)


def test_time_threshold_delays_both_ends_and_ignores_short_spells() -> None:
    # At 10 fps with 500 ms: a crowd of 3 frames (40-42) is too short; one from 10 to 29
    # starts at 15 and, after the count drops at 30, ends at 35.
    people = visitors((10, 29), (10, 29), (40, 42), (40, 42))
    result = run(crowd_analyzer(threshold=2, time_threshold_ms=500), people, 60)
    assert [(e.kind, e.frame_num) for e in result.events] == [
        ("overcrowded", 15),
        ("overcrowding-ended", 35),
    ]


def test_overcrowding_counts_only_the_rules_classes_and_untracked_objects_too() -> None:
    cars = [Walker(1, [(100.0, 800.0)] * 5, class_id=2)]
    people = [Walker(2, [(200.0, 800.0)] * 5), Walker(3, [(300.0, 800.0)] * 5)]
    result = run(crowd_analyzer(threshold=2, class_ids=[0]), cars, 5, untracked=people)
    assert result.analytics[-1]["queue"]["objects"] == 2
    assert [e.kind for e in result.events] == ["overcrowded"]


def direction_analyzer(*directions: dict[str, Any], compass: bool = False) -> StreamAnalytics:
    rules = StreamRules(
        directions=[DirectionRule.model_validate(d) for d in directions], compass=compass
    )
    return StreamAnalytics(0, [rules])


def test_each_track_gets_the_nearest_named_direction() -> None:
    stream = direction_analyzer(
        {"name": "to-door", "vector": [(0, 0), (100, 100)]},
        {"name": "to-desk", "vector": [(0, 0), (-100, 0)]},
    )
    walkers = [
        Walker(1, straight((500, 500), (900, 800), 40)),  # down-right: to-door
        Walker(2, straight((1500, 500), (1000, 560), 40)),  # left: to-desk
        Walker(3, straight((500, 200), (900, 200), 40)),  # right: 45° from to-door only
        Walker(4, straight((700, 900), (700, 300), 40)),  # up: neither within 60°
    ]
    result = run(stream, walkers, 40)
    found = {(e.track_id, e.direction) for e in result.kinds("direction")}
    assert found == {(1, "to-door"), (2, "to-desk"), (3, "to-door")}
    # One event per track: its direction did not change.
    assert len(result.kinds("direction")) == 3
    assert result.analytics[-1]["to-door"] == {
        "type": "direction",
        "objects": 2,
        "track_ids": [1, 3],
        "total": 2,
    }
    marks = {o["track_id"]: o.get("user_meta") for o in result.objects[-1].to_dicts()}
    assert marks[2] == {"analytics": {"direction": "to-desk"}}
    assert marks[4] is None


def test_direction_changes_and_standing_still() -> None:
    stream = direction_analyzer(
        {"name": "east", "vector": [(0, 0), (1, 0)]}, {"name": "west", "vector": [(1, 0), (0, 0)]}
    )
    path = straight((500, 500), (900, 500), 30)
    path += [(900.0, 500.0)] * 30  # stands still: no direction, no event
    path += straight((900, 500), (500, 500), 30)
    result = run(stream, [Walker(1, path)], len(path))
    assert [e.direction for e in result.kinds("direction")] == ["east", "west"]
    standing = result.analytics[55]
    assert standing["east"]["objects"] == 0 and standing["west"]["objects"] == 0


@pytest.mark.parametrize(
    ("end_xy", "expected"),
    [
        ((960, 100), "north"),
        ((1400, 100), "north-east"),
        ((1500, 540), "east"),
        ((500, 1000), "south-west"),
        ((400, 560), "west"),
    ],
)
def test_compass_directions(end_xy: tuple[float, float], expected: str) -> None:
    stream = direction_analyzer(compass=True)
    result = run(stream, [Walker(1, straight((960, 540), end_xy, 30))], 30)
    assert [e.direction for e in result.kinds("direction")] == [expected]
    assert list(result.analytics[-1]) == [name for name, _ in COMPASS]


def test_compass_names_cannot_be_taken_twice() -> None:
    with pytest.raises(ValueError, match="'north' is already the name of directions"):
        StreamRules(
            directions=[DirectionRule(name="north", vector=((0, 0), (0, -1)))], compass=True
        )
