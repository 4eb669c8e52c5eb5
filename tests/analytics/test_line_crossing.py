"""Counting lines on synthetic tracks: exact counts per class and direction."""

from __future__ import annotations

from typing import Any

import pytest
from analytics_tracks import Walker, run, straight

from panoptes.analytics import LineRule, StreamAnalytics, StreamRules

# A horizontal line across the middle of a 1920×1080 frame, "in" going down the image.
GATE: dict[str, Any] = {
    "name": "gate",
    "direction": [(960, 400), (960, 700)],
    "line": [(400, 540), (1520, 540)],
}


def analyzer(**line: Any) -> StreamAnalytics:
    rule = LineRule.model_validate({**GATE, **line})
    return StreamAnalytics(0, [StreamRules(lines=[rule])])


def totals(record: dict[str, Any]) -> tuple[int, int]:
    return record["total_in"], record["total_out"]


def test_tracks_crossing_each_way_are_counted_per_class_and_direction() -> None:
    walkers = [
        Walker(1, straight((600, 300), (600, 800), 40)),  # down: in
        Walker(2, straight((800, 350), (800, 750), 40), class_id=2),  # down: in, a car
        Walker(3, straight((1000, 800), (1000, 300), 40)),  # up: out
        Walker(4, straight((1200, 300), (1200, 800), 40), start=20),  # down, later: in
    ]
    result = run(analyzer(), walkers, 70)
    last = result.analytics[-1]["gate"]
    assert last == {
        "type": "line",
        "counts": {"in": {"person": 2, "car": 1}, "out": {"person": 1}},
        "total_in": 3,
        "total_out": 1,
    }
    crossed = {(e.track_id, e.direction, e.label) for e in result.kinds("crossed")}
    assert crossed == {
        (1, "in", "person"),
        (2, "in", "car"),
        (3, "out", "person"),
        (4, "in", "person"),
    }
    # Each crossing is one event, on the frame it was seen, with the running count.
    assert len(result.kinds("crossed")) == 4
    track_4 = next(e for e in result.kinds("crossed") if e.track_id == 4)
    assert track_4.count == 3 and 20 < track_4.frame_num < 60
    # The object is marked on that frame only.
    marked = result.objects[track_4.frame_num].to_dicts()
    mark = next(o for o in marked if o["track_id"] == 4)["user_meta"]["analytics"]
    assert mark["lines"] == [{"rule": "gate", "direction": "in"}]


def test_a_track_that_touches_the_line_and_turns_back_is_not_counted() -> None:
    path = straight((700, 300), (700, 540), 30) + straight((700, 540), (700, 300), 30)
    result = run(analyzer(), [Walker(1, path)], len(path))
    assert totals(result.analytics[-1]["gate"]) == (0, 0)
    assert not result.kinds("crossed")


def test_jitter_back_and_forth_counts_once_per_direction() -> None:
    # Walk to the line, jitter two pixels either side of it for 40 frames, cross, come back,
    # cross again both ways: one "in" and one "out", whatever the jitter.
    approach = straight((700, 300), (700, 538), 30)
    jitter = [(700.0, 538.0 if i % 2 else 542.0) for i in range(40)]
    crossings = (
        straight((700, 542), (700, 800), 20)
        + straight((700, 800), (700, 300), 40)
        + straight((700, 300), (700, 800), 40)
        + straight((700, 800), (700, 300), 40)
    )
    path = approach + jitter + crossings
    result = run(analyzer(mode="loose"), [Walker(1, path)], len(path))
    assert totals(result.analytics[-1]["gate"]) == (1, 1)
    assert [e.direction for e in result.kinds("crossed")] == ["in", "out"]


def test_class_filter() -> None:
    walkers = [
        Walker(1, straight((600, 300), (600, 800), 40), class_id=0),
        Walker(2, straight((900, 300), (900, 800), 40), class_id=2),
    ]
    result = run(analyzer(class_ids=[2]), walkers, 40)
    assert result.analytics[-1]["gate"]["counts"] == {"in": {"car": 1}, "out": {}}
    # -1 among the classes means every class, as DeepStream's class-id.
    result = run(analyzer(class_ids=[5, -1]), walkers, 40)
    assert totals(result.analytics[-1]["gate"]) == (2, 0)


def test_a_track_that_starts_on_the_line_is_counted_only_once_it_crosses_it() -> None:
    # Starts on the line and walks down (the "in" side): it never came from the other side.
    down = run(analyzer(mode="loose"), [Walker(1, straight((700, 540), (700, 800), 40))], 40)
    assert totals(down.analytics[-1]["gate"]) == (0, 0)
    # Starts on the line, walks down, then up across it: one "out".
    path = straight((700, 540), (700, 800), 30) + straight((700, 800), (700, 300), 40)
    both = run(analyzer(mode="loose"), [Walker(1, path)], len(path))
    assert totals(both.analytics[-1]["gate"]) == (0, 1)


def test_crossings_beyond_the_ends_count_only_when_extended() -> None:
    # x = 1700 is past the line's end (1520); the box is 40 wide.
    beyond = [Walker(1, straight((1700, 300), (1700, 800), 40))]
    assert totals(run(analyzer(), beyond, 40).analytics[-1]["gate"]) == (0, 0)
    assert totals(run(analyzer(extended=True), beyond, 40).analytics[-1]["gate"]) == (1, 0)
    # A box whose bottom edge overlaps the end counts: its centre is 15 px past it.
    edge = [Walker(1, straight((1535, 300), (1535, 800), 40))]
    assert totals(run(analyzer(), edge, 40).analytics[-1]["gate"]) == (1, 0)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("loose", (1, 0)), ("balanced", (1, 0)), ("strict", (0, 0))],
)
def test_modes_differ_in_how_closely_a_crossing_must_follow_the_direction(
    mode: str, expected: tuple[int, int]
) -> None:
    # Crossing at 50° from the direction: within balanced's 60°, not strict's 37°.
    path = straight((500, 340), (500 + 400 * 1.19, 740), 40)
    result = run(analyzer(mode=mode), [Walker(1, path)], len(path))
    assert totals(result.analytics[-1]["gate"]) == expected


def test_a_track_must_be_seen_for_some_frames_before_it_counts() -> None:
    # A track first seen just before the line: strict wants more than 20 frames of it.
    late = [Walker(1, straight((700, 480), (700, 900), 15))]
    assert totals(run(analyzer(mode="strict"), late, 15).analytics[-1]["gate"]) == (0, 0)
    assert totals(run(analyzer(mode="loose"), late, 15).analytics[-1]["gate"]) == (1, 0)


def test_counting_only_one_direction() -> None:
    walkers = [
        Walker(1, straight((600, 300), (600, 800), 40)),
        Walker(2, straight((900, 800), (900, 300), 40)),
    ]
    result = run(analyzer(count=["in"]), walkers, 40)
    assert totals(result.analytics[-1]["gate"]) == (1, 0)
    assert [e.track_id for e in result.kinds("crossed")] == [1]


def test_untracked_objects_are_not_counted() -> None:
    walkers = [Walker(1, straight((600, 300), (600, 800), 40))]
    result = run(analyzer(), [], 40, untracked=walkers)
    assert totals(result.analytics[-1]["gate"]) == (0, 0)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ({"line": [(400, 540), (400, 540)]}, "the two points are the same"),
        ({"direction": [(400, 540), (1500, 540)]}, "runs along the direction"),
        ({"count": []}, "at least 1 item"),
        ({"mode": "tight"}, "'loose', 'balanced' or 'strict'"),
    ],
)
def test_malformed_lines_are_refused(line: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        LineRule.model_validate({**GATE, **line})
