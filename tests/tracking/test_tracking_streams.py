"""One tracker stepping many streams at once against one tracker per stream.

A step over a batch must give every stream exactly what a tracker of its own gives it: the same
detections grouped into the same tracks, the same ages, confidences, predictions and finished
tracks. Only the id numbers differ (ids come from one counter in a different order).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest

from panoptes.tracking import (
    NO_TRACK_ID,
    FinishedTrack,
    StreamFrame,
    TrackerAlgorithm,
    TrackPrediction,
    TrackUpdate,
    make_tracker,
)


@dataclass(frozen=True)
class StreamScene:
    """A stream's frames: on a detector frame its detections, else None (a skipped frame)."""

    stream: int
    frames: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray] | None]


def random_scene(stream: int, rng: np.random.Generator, ticks: int) -> StreamScene:
    """Objects crossing each other at constant velocity with noisy boxes, scores across every
    ByteTrack band, two classes, the odd broken box; the detector runs every ``interval``
    frames; the stream joins late, leaves early and is absent from some ticks."""
    n = int(rng.integers(3, 9))
    start = rng.uniform(0, 600, (n, 2))
    velocity = rng.uniform(-6, 6, (n, 2))
    size = rng.uniform(30, 90, (n, 2))
    classes = rng.integers(0, 2, n).astype(np.int32)
    interval = int(rng.integers(1, 3))
    first, last = int(rng.integers(0, 10)), ticks - int(rng.integers(0, 10))
    frames: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray] | None] = {}
    frame_num = 100 * stream  # each stream numbers its own frames
    for tick in range(first, last):
        if rng.uniform() < 0.15:
            continue  # no frame of this stream in this batch
        frame_num += 1
        if frame_num % interval:
            frames[tick] = None
            continue
        seen = rng.uniform(size=n) < 0.85
        xy = start[seen] + velocity[seen] * frame_num + rng.normal(0, 2, (int(seen.sum()), 2))
        xyxy = np.concatenate([xy, xy + size[seen]], axis=1).astype(np.float32)
        if len(xyxy) and rng.uniform() < 0.05:
            xyxy[0, 2] = np.nan
        score = rng.uniform(0.05, 1.0, len(xyxy)).astype(np.float32)
        frames[tick] = (xyxy, score, classes[seen])
    return StreamScene(stream, frames)


def frame_num_of(scene: StreamScene, tick: int) -> int:
    return 100 * scene.stream + 1 + sorted(scene.frames).index(tick)


class IdMap:
    """Pairs the ids one tracker gave with those another gave, and checks it stays one to one."""

    def __init__(self) -> None:
        self.forward: dict[int, int] = {}
        self.backward: dict[int, int] = {}

    def same(self, a: int, b: int) -> None:
        assert (a == NO_TRACK_ID) == (b == NO_TRACK_ID)
        if a == NO_TRACK_ID:
            return
        assert self.forward.setdefault(a, b) == b
        assert self.backward.setdefault(b, a) == a


def assert_same_update(got: TrackUpdate, expected: TrackUpdate, ids: IdMap) -> None:
    assert len(got.track_id) == len(expected.track_id)
    for a, b in zip(got.track_id.tolist(), expected.track_id.tolist(), strict=True):
        ids.same(a, b)
    np.testing.assert_array_equal(got.age, expected.age)
    np.testing.assert_allclose(got.tracker_confidence, expected.tracker_confidence, atol=1e-6)
    assert_same_finished(got.finished, expected.finished, ids)


def assert_same_prediction(got: TrackPrediction, expected: TrackPrediction, ids: IdMap) -> None:
    assert len(got.track_id) == len(expected.track_id)
    for a, b in zip(got.track_id.tolist(), expected.track_id.tolist(), strict=True):
        ids.same(a, b)
    np.testing.assert_allclose(got.xyxy, expected.xyxy, atol=1e-3)
    np.testing.assert_array_equal(got.class_id, expected.class_id)
    np.testing.assert_array_equal(got.age, expected.age)


def assert_same_finished(
    got: list[FinishedTrack], expected: list[FinishedTrack], ids: IdMap
) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        ids.same(a.track_id, b.track_id)
        assert (a.first_frame, a.last_frame, a.end_frame, a.hits, a.reason, a.class_id) == (
            b.first_frame,
            b.last_frame,
            b.end_frame,
            b.hits,
            b.reason,
            b.class_id,
        )
        np.testing.assert_allclose(a.last_xyxy, b.last_xyxy)


@pytest.mark.parametrize("algorithm", ["iou", "sort", "bytetrack"])
@pytest.mark.parametrize("seed", range(4))
def test_a_step_over_many_streams_is_one_tracker_per_stream(
    algorithm: TrackerAlgorithm, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    ticks = 60
    scenes = [random_scene(stream, rng, ticks) for stream in (0, 3, 7, 8, 12, 40)]
    together = make_tracker(algorithm, None, itertools.count(1).__next__)
    alone = {
        scene.stream: make_tracker(algorithm, None, itertools.count(1).__next__) for scene in scenes
    }
    id_maps = {scene.stream: IdMap() for scene in scenes}
    compared = 0
    for tick in range(ticks + 1):
        present = [scene for scene in scenes if tick in scene.frames]
        # The batch's frames in a shuffled order: a step does not care.
        present = [present[i] for i in rng.permutation(len(present))]
        step = [
            StreamFrame(scene.stream, frame_num_of(scene, tick), *(scene.frames[tick] or ()))
            for scene in present
        ]
        for scene, frame, result in zip(present, step, together.step(step), strict=True):
            reference = alone[scene.stream]
            ids = id_maps[scene.stream]
            if frame.detected:
                assert isinstance(result, TrackUpdate)
                detections = scene.frames[tick]
                assert detections is not None
                expected = reference.update(*detections, frame.frame_num)
                assert_same_update(result, expected, ids)
            else:
                assert isinstance(result, TrackPrediction)
                assert_same_prediction(result, reference.predict(frame.frame_num), ids)
            compared += 1
        # Streams whose last frame has passed end, in both.
        for scene in scenes:
            if scene.frames and tick == max(scene.frames) + 1:
                assert_same_finished(
                    together.finish(stream=scene.stream),
                    alone[scene.stream].finish(),
                    id_maps[scene.stream],
                )
    assert together.streams == set()
    matched_ids = sum(len(ids.forward) for ids in id_maps.values())
    assert compared > 250 and matched_ids > 20
    # Ids are unique across the streams of one tracker.
    every_id = [track_id for ids in id_maps.values() for track_id in ids.forward]
    assert len(every_id) == len(set(every_id))


def test_a_step_takes_one_frame_per_stream_and_a_bad_frame_changes_nothing() -> None:
    tracker = make_tracker("bytetrack", None, itertools.count(1).__next__)
    box = np.array([[10, 10, 50, 90]], np.float32)
    one = (box, np.array([0.9], np.float32), np.array([0], np.int32))
    tracker.step([StreamFrame(1, 0, *one), StreamFrame(2, 0, *one)])
    with pytest.raises(ValueError, match=r"one frame of each stream.*\[2\]"):
        tracker.step([StreamFrame(2, 1, *one), StreamFrame(1, 1, *one), StreamFrame(2, 2)])
    with pytest.raises(ValueError, match="stream 2, frame 1"):
        tracker.step([StreamFrame(1, 1, *one), StreamFrame(2, 1, box, np.zeros(2), one[2])])
    # Neither failed step moved a track: the next frames continue from frame 0.
    results = tracker.step([StreamFrame(1, 1, *one), StreamFrame(2, 1, *one)])
    for result in results:
        assert isinstance(result, TrackUpdate)
        assert result.tracker_confidence[0] == pytest.approx(1.0)
        assert result.age.tolist() == [1]
    assert tracker.streams == {1, 2}
