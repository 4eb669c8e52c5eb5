"""The analytics element: rules per stream, scaling, stream ends, drawing, configuration and
its place in a pipeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from analytics_tracks import Walker, objects_at, straight

from panoptes import Batch, Bus, ConfigError, Frame, Pipeline, StreamEvent
from panoptes.config.loader import parse_config
from panoptes.core.element import BuildContext
from panoptes.elements.analytics import Analytics, AnalyticsProperties
from panoptes.elements.jsonl import frame_record
from panoptes.tracking import FinishedTrack

DATA = Path(__file__).resolve().parents[1] / "data" / "deepstream"
SQUARE = [[800, 400], [1200, 400], [1200, 800], [800, 800]]


def element(bus: Bus | None = None, base_dir: Path | None = None, **props: Any) -> Analytics:
    context = BuildContext(bus=bus or Bus(), base_dir=base_dir or Path.cwd(), place="analytics")
    built = Analytics(AnalyticsProperties.model_validate(props), name="analytics", context=context)
    built.build()
    return built


def frame(
    source_id: int,
    frame_num: int,
    walkers: list[Walker],
    *,
    size_wh: tuple[int, int] = (1920, 1080),
    name: str | None = None,
) -> Frame:
    result = Frame(
        source_id=source_id,
        source_name=name or f"cam{source_id}",
        frame_num=frame_num,
        pts_s=frame_num / 10,
        capture_time_s=0.0,
        size_wh=size_wh,
        image=np.zeros((4, 4, 3), np.uint8),
    )
    result.meta.objects = objects_at(walkers, frame_num)
    return result


def test_rules_are_scaled_from_the_configuration_resolution_to_each_stream() -> None:
    # The zone is drawn on 1920×1080; stream 1 is 960×540, so the same place is at half the
    # coordinates there. The line crosses the middle of the frame in both.
    analytics = element(
        config_width=1920,
        config_height=1080,
        streams=[
            {
                "source": "*",
                "rois": [{"name": "square", "polygon": SQUARE}],
                "lines": [
                    {
                        "name": "gate",
                        "direction": [[960, 0], [960, 1080]],
                        "line": [[0, 540], [1920, 540]],
                    }
                ],
            }
        ],
    )
    full = [Walker(1, straight((1000, 300), (1000, 900), 40))]
    half = [Walker(2, straight((500, 150), (500, 450), 40))]
    for frame_num in range(40):
        batch = Batch([frame(0, frame_num, full), frame(1, frame_num, half, size_wh=(960, 540))])
        analytics.process(batch)
        if frame_num == 20:
            assert [f.meta.analytics["square"]["objects"] for f in batch] == [1, 1]
    for last in batch:
        assert last.meta.analytics["gate"]["total_in"] == 1
        assert last.meta.analytics["square"]["entered"] == 1
        assert last.meta.analytics["square"]["exited"] == 1


def test_rules_per_stream_by_id_by_name_and_for_every_stream() -> None:
    zone = {"polygon": SQUARE}
    analytics = element(
        streams=[
            {"source": "*", "rois": [{"name": "everywhere", **zone}]},
            {"source": 1, "rois": [{"name": "one", **zone}]},
            {"source": "lobby", "rois": [{"name": "lobby-zone", **zone}]},
        ]
    )
    batch = Batch([frame(0, 0, []), frame(1, 0, []), frame(2, 0, [], name="lobby")])
    analytics.process(batch)
    assert [list(f.meta.analytics) for f in batch] == [
        ["everywhere"],
        ["everywhere", "one"],
        ["everywhere", "lobby-zone"],
    ]


def test_a_stream_without_rules_is_left_alone() -> None:
    analytics = element(streams=[{"source": 3, "rois": [{"name": "z", "polygon": SQUARE}]}])
    batch = Batch([frame(0, 0, [Walker(1, [(1000.0, 600.0)])])])
    analytics.process(batch)
    only = batch.frames[0]
    assert only.meta.analytics == {} and only.meta.events == [] and len(only.meta.display_meta) == 0


def test_ended_tracks_leave_their_zones_and_ended_streams_free_their_state() -> None:
    analytics = element(streams=[{"rois": [{"name": "z", "polygon": SQUARE}]}])
    inside = [Walker(5, [(1000.0, 600.0)] * 10), Walker(6, [(1000.0, 600.0)] * 10)]
    for frame_num in range(3):
        analytics.process(Batch([frame(0, frame_num, inside), frame(1, frame_num, inside)]))
    assert sorted(analytics._streams) == [0, 1]
    # The tracker lost track 5 on frame 3 of stream 0.
    lost = FinishedTrack(5, 0, 0, 2, 3, 3, (0, 0, 1, 1), "lost", source_id=0, label="person")
    batch = Batch([frame(0, 3, inside[1:]), frame(1, 3, inside)], terminated_tracks=[lost])
    analytics.process(batch)
    exited = batch.frames[0].meta.events
    assert [(e.kind, e.track_id, e.extra) for e in exited] == [
        ("exited", 5, {"reason": "track ended"})
    ]
    assert batch.frames[0].meta.analytics["z"]["exited"] == 1
    assert batch.frames[1].meta.events == []
    stream = analytics._streams[0]
    assert stream is not None and sorted(stream.tracks.slots) == [6]
    # Stream 1 ends, stream 0 is removed: nothing of either is kept.
    analytics.process(Batch([frame(0, 4, inside)], events=[StreamEvent("ended", 1, "cam1")]))
    assert sorted(analytics._streams) == [0]
    analytics.process(Batch([], events=[StreamEvent("removed", 0, "cam0")]))
    assert analytics._streams == {}


def test_zones_lines_and_counts_are_drawn_for_the_osd() -> None:
    streams = [
        {
            "rois": [{"name": "square", "polygon": SQUARE}],
            "lines": [
                {
                    "name": "gate",
                    "direction": [[100, 100], [100, 300]],
                    "line": [[0, 200], [400, 200]],
                }
            ],
            "overcrowding": [{"name": "crowd", "polygon": SQUARE, "threshold": 1}],
            "directions": [{"name": "up", "vector": [[50, 50], [50, 0]]}],
            "compass": True,
        }
    ]
    batch = Batch([frame(0, 0, [Walker(1, [(1000.0, 600.0)])])])
    element(streams=streams, font_scale=0.7).process(batch)
    display = batch.frames[0].meta.display_meta
    texts = [t.text for t in display.texts]
    assert texts == ["square: 1", "gate in 0 out 0", "crowd: 1/1 overcrowded", "up: 0"]
    assert {t.font_scale for t in display.texts} == {0.7}
    # Four edges per zone; the line, then its direction as an arrow (a shaft and two strokes
    # of head); the arrow of "up". The compass directions are not drawn.
    assert len(display.lines) == 4 + (1 + 3) + 4 + 3
    assert ((0.0, 200.0), (400.0, 200.0)) in [(line.xy1, line.xy2) for line in display.lines]

    quiet = Batch([frame(0, 0, [])])
    element(streams=streams, draw_counts=False).process(quiet)
    texts = [t.text for t in quiet.frames[0].meta.display_meta.texts]
    assert texts == ["square", "gate", "crowd", "up"]
    nothing = Batch([frame(0, 0, [])])
    element(streams=streams, draw=False).process(nothing)
    assert len(nothing.frames[0].meta.display_meta) == 0


def test_the_jsonl_record_has_analytics_and_events_when_there_are_some() -> None:
    analytics = element(streams=[{"rois": [{"name": "z", "polygon": SQUARE}]}])
    batch = Batch([frame(0, 0, [Walker(1, [(1000.0, 600.0)])]), frame(1, 0, [])])
    analytics.process(batch)
    record = json.loads(json.dumps(frame_record(batch.frames[0])))
    assert record["analytics"] == {
        "z": {"type": "roi", "objects": 1, "track_ids": [1], "entered": 1, "exited": 0}
    }
    assert record["events"] == [
        {
            "kind": "entered",
            "rule": "z",
            "track_id": 1,
            "label": "person",
            "class_id": 0,
            "count": 1,
        }
    ]
    assert record["objects"][0]["user_meta"] == {"analytics": {"rois": ["z"]}}
    empty = frame_record(batch.frames[1])
    assert "events" not in empty and empty["analytics"]["z"]["objects"] == 0
    assert "analytics" not in frame_record(frame(2, 0, []))


@pytest.mark.parametrize(
    ("analytics", "place", "words"),
    [
        (
            {
                "streams": [
                    {
                        "lines": [
                            {
                                "name": "a",
                                "direction": [[0, 0], [0, 10]],
                                "line": [[0, 5], [10, 5]],
                            },
                            {"name": "b", "direction": [[0, 0], [0, 10]], "line": [[0, 5], [0, 8]]},
                        ]
                    }
                ]
            },
            "analytics.streams[0].lines[1].line",
            "runs along the direction",
        ),
        (
            {"streams": [{"rois": [{"name": "a", "polygon": [[0, 0], [1, 1]]}]}]},
            "analytics.streams[0].rois[0].polygon",
            "at least 3 items",
        ),
        (
            {"streams": [{"overcrowding": [{"name": "a", "polygon": SQUARE, "threshold": -1}]}]},
            "analytics.streams[0].overcrowding[0].threshold",
            "greater than or equal to 0",
        ),
        (
            {"streams": [{"rois": [{"name": "a", "polygon": SQUARE, "mode": "hide"}]}]},
            "analytics.streams[0].rois[0].mode",
            "'flag' or 'filter'",
        ),
        (
            {
                "streams": [
                    {
                        "rois": [{"name": "a", "polygon": SQUARE}],
                        "lines": [
                            {"name": "a", "direction": [[0, 0], [0, 10]], "line": [[0, 5], [10, 5]]}
                        ],
                    }
                ]
            },
            "analytics.streams[0]",
            "lines[0].name: 'a' is already the name of rois[0].name",
        ),
        (
            {
                "streams": [
                    {"source": 0, "rois": [{"name": "a", "polygon": SQUARE}]},
                    {"source": "*", "rois": [{"name": "a", "polygon": SQUARE}]},
                ]
            },
            "analytics",
            "streams[1].rois[0].name: 'a' is already the name of a rule of streams[0]",
        ),
        ({"config_width": 1920}, "analytics", "config_height: give both"),
        (
            {"config_file": "x.txt", "streams": [{"source": 0}]},
            "analytics",
            "config_file: the rules come from the file",
        ),
        ({"streams": [{"zones": []}]}, "analytics.streams[0].zones", "unknown key"),
    ],
)
def test_configuration_errors_name_their_place(
    analytics: dict[str, Any], place: str, words: str
) -> None:
    config = {"sources": [{"uri": "x.mp4"}], "analytics": analytics}
    with pytest.raises(ConfigError) as caught:
        parse_config(config)
    assert place in caught.value.places
    assert words in str(caught.value)


def test_rules_from_a_deepstream_file(tmp_path: Path) -> None:
    text = (DATA / "config_nvdsanalytics.txt").read_text()
    text = text.replace("display-font-size=12", "display-font-size=12\ndisplay-obj-cnt=1")
    (tmp_path / "analytics.txt").write_text(text)
    bus = Bus()
    analytics = element(bus, tmp_path, config_file="analytics.txt", font_scale=0.9)
    assert analytics.rules.config_width == 1920
    assert [entry.source for entry in analytics.rules.streams] == [0, 1, 2]
    warnings = [str(m) for m in bus.history]
    assert warnings == [
        "warning: analytics: analytics.txt:12 [property] display-obj-cnt: unsupported: "
        "the per-class object counts are not drawn"
    ]
    batch = Batch([frame(0, 0, [])])
    analytics.process(batch)
    assert list(batch.frames[0].meta.analytics) == ["RF", "Exit", "South", "North"]
    assert {t.font_scale for t in batch.frames[0].meta.display_meta.texts} == {0.9}


def test_a_missing_deepstream_file_is_an_error_at_build(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file") as caught:
        element(base_dir=tmp_path, config_file="missing.txt")
    assert caught.value.places == ["analytics.config_file"]


def test_in_a_pipeline_after_the_tracker_and_before_the_sinks(tmp_path: Path) -> None:
    """Objects a probe puts on the mux's frames are tracked, analysed and written out."""
    walker = Walker(0, straight((100, 300), (500, 300), 60))

    def place_walker(batch: Batch) -> None:
        for each in batch:
            each.meta.objects = objects_at([walker], each.frame_num)

    pipeline = Pipeline(
        {
            "sources": [{"type": "test-source", "width": 640, "height": 360, "frames": 60}],
            "tracker": {"type": "iou"},
            "analytics": {
                "streams": [
                    {
                        "source": 0,
                        "lines": [
                            {
                                "name": "door",
                                "direction": [[250, 300], [350, 300]],
                                "line": [[300, 0], [300, 360]],
                            }
                        ],
                    }
                ]
            },
            "sinks": [{"type": "jsonl", "path": str(tmp_path / "meta.jsonl")}],
            "perf": {"interval_s": 0},
        }
    )
    pipeline.add_probe("mux", place_walker)
    assert [s.name for s in pipeline.element_stats()] == ["tracker", "analytics", "jsonl0"]
    summary = pipeline.run()
    assert summary.ok, summary.errors
    records = [json.loads(line) for line in (tmp_path / "meta.jsonl").read_text().splitlines()]
    assert len(records) == 60
    crossed = [e for r in records for e in r.get("events", []) if e["kind"] == "crossed"]
    assert len(crossed) == 1 and crossed[0]["direction"] == "in"
    assert records[-1]["analytics"]["door"]["total_in"] == 1
