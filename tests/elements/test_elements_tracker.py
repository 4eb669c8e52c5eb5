"""The tracker element in real pipelines: the shared clips and the default detector."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from panoptes import Batch, ConfigError, Pipeline

VIDEOS = Path(__file__).resolve().parents[2].parent / "shared" / "assets" / "videos"
ONE_BY_ONE = VIDEOS / "one-by-one-person-detection.mp4"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def run(tmp_path: Path, **config: Any) -> tuple[list[dict[str, Any]], list[Any], Pipeline]:
    config.setdefault("sources", [{"uri": str(ONE_BY_ONE)}])
    config.setdefault("infer", [{"model": "yolox-nano"}])
    config.setdefault("tracker", {"type": "bytetrack"})
    config["sinks"] = [{"type": "jsonl", "path": str(tmp_path / "meta.jsonl")}]
    config["perf"] = {"interval_s": 0}
    pipeline = Pipeline(config)
    ended: list[Any] = []

    def collect(batch: Batch) -> None:
        ended.extend(batch.terminated_tracks)

    pipeline.add_probe("tracker", collect)
    summary = pipeline.run()
    assert summary.ok, summary.errors
    return read_jsonl(tmp_path / "meta.jsonl"), ended, pipeline


def person_frames(records: list[dict[str, Any]]) -> dict[int, list[int]]:
    """Frame numbers at which each person track id appears."""
    frames: dict[int, list[int]] = defaultdict(list)
    for record in records:
        for obj in record["objects"]:
            if obj["label"] == "person":
                frames[obj["track_id"]].append(record["frame_num"])
    return frames


@pytest.mark.parametrize(
    ("frames", "people"),
    [(460, 2), pytest.param(None, 6, marks=pytest.mark.slow, id="whole-clip")],
)
def test_each_person_keeps_one_id_while_in_view(
    tmp_path: Path, frames: int | None, people: int
) -> None:
    """one-by-one-person-detection: people walk in and out one at a time (two in the first 460
    frames, six in all). Each visit is one track id, the visits do not overlap, and every object
    carries a track id."""
    source: dict[str, Any] = {"uri": str(ONE_BY_ONE)}
    if frames:
        source["max_frames"] = frames
    records, ended, _ = run(tmp_path, sources=[source])
    assert len(records) == (frames or 1394)
    assert all(obj["track_id"] is not None for r in records for obj in r["objects"])
    assert all(sum(obj["label"] == "person" for obj in r["objects"]) <= 1 for r in records), (
        "one person at a time in this clip"
    )
    visits = {tid: frames for tid, frames in person_frames(records).items() if len(frames) > 50}
    assert len(visits) == people
    spans = sorted((min(f), max(f)) for f in visits.values())
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end < start, "two ids for one visit"
    # Within a visit the id holds through missed detections: few frames are missing.
    for frames in visits.values():
        assert len(frames) >= 0.9 * (max(frames) - min(frames) + 1)
    # Every track is reported once when it ends, with what counting needs.
    assert sorted(t.track_id for t in ended) == sorted(set(t.track_id for t in ended))
    people = [t for t in ended if t.label == "person" and t.hits > 50]
    assert sorted(t.track_id for t in people) == sorted(visits)
    assert all(t.source_id == 0 and t.reason in ("lost", "stream-ended") for t in ended)


def test_frames_the_detector_skips_are_predicted_and_marked(tmp_path: Path) -> None:
    records, _, _ = run(
        tmp_path,
        sources=[{"uri": str(ONE_BY_ONE), "max_frames": 300}],
        infer=[{"model": "yolox-nano", "interval": 2}],
    )
    predicted = [o for r in records for o in r["objects"] if o["tracker_only"] == 1]
    detected = [o for r in records for o in r["objects"] if o["tracker_only"] == 0]
    assert predicted and detected
    for record in records:
        only = {o["tracker_only"] for o in record["objects"]}
        # The detector runs on frames 0, 3, 6 ...: the others hold tracker-only objects.
        assert only <= ({0} if record["frame_num"] % 3 == 0 else {1})
    # Predicted objects keep the ids of the detections around them.
    assert {o["track_id"] for o in predicted} <= {o["track_id"] for o in detected}
    assert all(0 < o["tracker_confidence"] <= 1 for o in predicted)
    visits = {t: f for t, f in person_frames(records).items() if len(f) > 30}
    assert len(visits) == 2  # the first two visitors of the clip, each with one id


def test_ids_are_unique_across_streams_and_ended_streams_free_their_state(
    tmp_path: Path,
) -> None:
    records, ended, pipeline = run(
        tmp_path,
        sources=[
            {"uri": str(ONE_BY_ONE), "max_frames": 100},
            {"uri": str(ONE_BY_ONE), "max_frames": 100},
        ],
    )
    ids = {
        source: {o["track_id"] for r in records if r["source_id"] == source for o in r["objects"]}
        for source in (0, 1)
    }
    assert ids[0] and ids[1] and not ids[0] & ids[1]
    # The person in view at frame 99 was cut off by the end of each stream.
    cut = [t for t in ended if t.reason == "stream-ended" and t.label == "person"]
    assert sorted(t.source_id for t in cut) == [0, 1]
    tracker = pipeline.element("tracker")
    assert tracker._tracker.streams == set()  # type: ignore[attr-defined]
    assert tracker._labels == {}  # type: ignore[attr-defined]


def test_untracked_detections_can_be_kept(tmp_path: Path) -> None:
    records, _, _ = run(
        tmp_path,
        sources=[{"uri": str(ONE_BY_ONE), "max_frames": 120}],
        tracker={"type": "sort", "keep_untracked": True},
    )
    # SORT gives an id on a track's third match: the first frames of a visit have none.
    untracked = [o for r in records for o in r["objects"] if o["track_id"] is None]
    tracked = [o for r in records for o in r["objects"] if o["track_id"] is not None]
    assert untracked and tracked


@pytest.mark.parametrize("algorithm", ["iou", "sort", "bytetrack"])
def test_every_algorithm_runs_in_the_pipeline(tmp_path: Path, algorithm: str) -> None:
    records, _, _ = run(
        tmp_path,
        sources=[{"uri": str(ONE_BY_ONE), "max_frames": 120}],
        tracker={"type": algorithm},
    )
    visits = {t: f for t, f in person_frames(records).items() if len(f) > 20}
    assert len(visits) == 1


def test_a_tracker_on_a_model_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    pipeline = Pipeline(
        {
            "sources": [{"uri": str(ONE_BY_ONE)}],
            "infer": [{"model": "yolox-nano"}],
            "tracker": {"operate_on_gie_id": 7},
        }
    )
    with pytest.raises(ConfigError, match="no infer element has gie_id 7") as caught:
        pipeline.build()
    assert "tracker.operate_on_gie_id" in caught.value.places


def test_frames_of_one_stream_batched_together_track_as_one_by_one(tmp_path: Path) -> None:
    """A file source tops the mux's batches up with its queued frames, so a batch can hold
    several frames of one stream: the tracker takes them in order, as separate steps."""
    outputs = {}
    for batch_size in (1, 4):
        records, ended, _ = run(
            tmp_path / str(batch_size),
            sources=[{"uri": str(ONE_BY_ONE), "max_frames": 150}],
            mux={"batch_size": batch_size},
            infer=[{"model": "yolox-nano", "interval": 1}],
        )
        outputs[batch_size] = (
            [
                (r["frame_num"], [(o["track_id"], o["tracker_only"]) for o in r["objects"]])
                for r in records
            ],
            [(t.track_id, t.end_frame, t.reason) for t in ended],
        )
    assert outputs[4] == outputs[1]
    assert sum(len(objects) for _, objects in outputs[1][0]) > 50
