"""Analytics on a real clip: the shared detector and tracker, a zone around the table of
one-by-one-person-detection.mp4 and a line people cross as they leave."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from panoptes import Batch, Pipeline

VIDEOS = Path(__file__).resolve().parents[2].parent / "shared" / "assets" / "videos"
ONE_BY_ONE = VIDEOS / "one-by-one-person-detection.mp4"

# 768×432: people walk in from the bottom edge, stand at the table (their feet around
# x 430-495, y 370-415) and leave to the right.
TABLE = [[370, 330], [570, 330], [570, 420], [370, 420]]
EXIT_LINE = {"direction": [[540, 380], [640, 380]], "line": [[570, 250], [570, 432]]}


def run(tmp_path: Path, max_frames: int | None) -> tuple[list[dict[str, Any]], list[int]]:
    source: dict[str, Any] = {"uri": str(ONE_BY_ONE)}
    if max_frames:
        source["max_frames"] = max_frames
    pipeline = Pipeline(
        {
            "sources": [source],
            "infer": [{"model": "yolox-nano"}],
            "tracker": {"type": "bytetrack"},
            "analytics": {
                "streams": [
                    {
                        "source": 0,
                        "rois": [
                            {"name": "table", "polygon": TABLE, "class_ids": [0], "min_frames": 3}
                        ],
                        "lines": [{"name": "exit", "class_ids": [0], **EXIT_LINE}],
                    }
                ]
            },
            "sinks": [{"type": "jsonl", "path": str(tmp_path / "meta.jsonl")}],
            "perf": {"interval_s": 0},
        }
    )
    drawn: list[int] = []

    def count_drawing(batch: Batch) -> None:
        drawn.extend(len(frame.meta.display_meta.lines) for frame in batch)

    pipeline.add_probe("analytics", count_drawing)
    summary = pipeline.run()
    assert summary.ok, summary.errors
    lines = (tmp_path / "meta.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines], drawn


@pytest.mark.parametrize(
    ("frames", "visits"),
    [(460, 2), pytest.param(None, 6, marks=pytest.mark.slow, id="whole-clip")],
)
def test_people_entering_and_leaving_the_table(
    tmp_path: Path, frames: int | None, visits: int
) -> None:
    """Two people visit the table in the first 460 frames, six in the whole clip, one at a
    time: each enters the zone once, leaves it once, and crosses the exit line once."""
    records, drawn = run(tmp_path, frames)
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        for event in record.get("events", []):
            events[event["kind"]].append({**event, "frame_num": record["frame_num"]})
    entered = [e["track_id"] for e in events["entered"]]
    exited = [e["track_id"] for e in events["exited"]]
    assert len(entered) == visits and len(set(entered)) == visits
    assert exited == entered
    for arrival, departure in zip(events["entered"], events["exited"], strict=True):
        assert departure["frame_num"] - arrival["frame_num"] > 50, "a visit lasts seconds"
    crossed = events["crossed"]
    assert [(e["track_id"], e["direction"], e["label"]) for e in crossed] == [
        (track, "in", "person") for track in entered
    ]
    last = records[-1]["analytics"]
    assert last["table"]["entered"] == last["table"]["exited"] == visits
    assert last["exit"] == {
        "type": "line",
        "counts": {"in": {"person": visits}, "out": {}},
        "total_in": visits,
        "total_out": 0,
    }
    # Between arriving and leaving, the person is in the zone and marked so.
    first = events["entered"][0]
    middle = records[(first["frame_num"] + events["exited"][0]["frame_num"]) // 2]
    assert middle["analytics"]["table"]["track_ids"] == [first["track_id"]]
    person = next(o for o in middle["objects"] if o["track_id"] == first["track_id"])
    assert person["user_meta"]["analytics"]["rois"] == ["table"]
    # The zone's four edges and the line with its arrow are drawn on every frame.
    assert drawn == [4 + 1 + 3] * len(records)
