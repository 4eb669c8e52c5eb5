"""The three trackers on synthetic scenes: objects at constant velocity, seeded box noise.

Each scene is a list of objects with a ground-truth id; a run feeds the tracker the detections
frame by frame and records which track id each ground-truth object got. An id switch is a change
of that id from one detector frame to a later one (frames without an id do not count).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from panoptes.tracking import (
    NO_TRACK_ID,
    ByteTrackParams,
    FinishedTrack,
    IoUTrackerParams,
    SortParams,
    StreamTracker,
    TrackerAlgorithm,
    TrackerParams,
    TrackPrediction,
    make_tracker,
)

ALGORITHMS: tuple[TrackerAlgorithm, ...] = ("iou", "sort", "bytetrack")
MOTION_ALGORITHMS: tuple[TrackerAlgorithm, ...] = ("sort", "bytetrack")
PARAMS_TYPES: dict[TrackerAlgorithm, type[TrackerParams]] = {
    "iou": IoUTrackerParams,
    "sort": SortParams,
    "bytetrack": ByteTrackParams,
}


@dataclass(frozen=True)
class SceneObject:
    """An object moving at constant velocity, detected on ``frames``."""

    gt_id: int
    start_xy: tuple[float, float]
    velocity_xy: tuple[float, float]
    size_wh: tuple[float, float] = (40.0, 80.0)
    frames: Collection[int] = range(0, 10_000)
    class_id: int = 0
    score: Callable[[int], float] = lambda frame: 0.9

    def xyxy(self, frame: int) -> np.ndarray:
        x = self.start_xy[0] + self.velocity_xy[0] * frame
        y = self.start_xy[1] + self.velocity_xy[1] * frame
        return np.array([x, y, x + self.size_wh[0], y + self.size_wh[1]])


@dataclass
class Run:
    """What a tracker reported over a scene."""

    # Per detector frame: ground-truth id -> track id (NO_TRACK_ID when none).
    ids: list[dict[int, int]] = field(default_factory=list)
    detector_frames: list[int] = field(default_factory=list)
    # Per skipped frame: (frame, prediction).
    predictions: list[tuple[int, TrackPrediction]] = field(default_factory=list)
    finished: list[FinishedTrack] = field(default_factory=list)

    def track_ids(self, gt_id: int) -> list[int]:
        """The distinct track ids an object got, in order of appearance."""
        seen = [frame[gt_id] for frame in self.ids if frame.get(gt_id, NO_TRACK_ID) >= 0]
        return list(dict.fromkeys(seen))

    def first_tracked_frame(self, gt_id: int, track_id: int | None = None) -> int:
        """The first detector frame the object had a track id (``track_id``, if given)."""
        for frame, ids in zip(self.detector_frames, self.ids, strict=True):
            got = ids.get(gt_id, NO_TRACK_ID)
            if got >= 0 and track_id in (None, got):
                return frame
        raise AssertionError(f"object {gt_id} never got track id {track_id}")


def count_id_switches(ids_per_frame: Iterable[Mapping[int, int]]) -> int:
    """How often an object's track id differs from the one it last had."""
    last: dict[int, int] = {}
    switches = 0
    for ids in ids_per_frame:
        for gt_id, track_id in ids.items():
            if track_id == NO_TRACK_ID:
                continue
            if gt_id in last and last[gt_id] != track_id:
                switches += 1
            last[gt_id] = track_id
    return switches


def detections(
    objects: Iterable[SceneObject], frame: int, rng: np.random.Generator, noise_px: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    present = [obj for obj in objects if frame in obj.frames]
    xyxy = np.array([obj.xyxy(frame) for obj in present], np.float64).reshape(-1, 4)
    xyxy += rng.normal(0.0, noise_px, xyxy.shape)
    confidence = np.array([obj.score(frame) for obj in present], np.float32)
    class_id = np.array([obj.class_id for obj in present], np.int32)
    return xyxy.astype(np.float32), confidence, class_id, [obj.gt_id for obj in present]


def run_scene(
    tracker: StreamTracker,
    objects: list[SceneObject],
    num_frames: int,
    *,
    detect_every: int = 1,
    min_score: float = 0.0,
    noise_px: float = 0.5,
    seed: int = 0,
) -> Run:
    """Feed ``num_frames`` frames; the detector runs on every ``detect_every``-th frame."""
    rng = np.random.default_rng(seed)
    run = Run()
    for frame in range(num_frames):
        if frame % detect_every:
            prediction = tracker.predict(frame)
            run.predictions.append((frame, prediction))
            run.finished.extend(prediction.finished)
            continue
        xyxy, confidence, class_id, gt_ids = detections(objects, frame, rng, noise_px)
        # What a detector threshold does before the tracker.
        keep = confidence >= min_score
        result = tracker.update(xyxy[keep], confidence[keep], class_id[keep], frame)
        kept_gt = [gt for gt, kept in zip(gt_ids, keep, strict=True) if kept]
        assert result.track_id.shape == result.age.shape == (len(kept_gt),)
        assert np.all((result.tracker_confidence >= 0) & (result.tracker_confidence <= 1))
        run.ids.append(dict(zip(kept_gt, result.track_id.tolist(), strict=True)))
        run.detector_frames.append(frame)
        run.finished.extend(result.finished)
    run.finished.extend(tracker.finish())
    return run


def tracker_for(
    algorithm: TrackerAlgorithm, next_id: Callable[[], int] | None = None, **overrides: Any
) -> StreamTracker:
    params = PARAMS_TYPES[algorithm](**overrides)
    return make_tracker(algorithm, params, next_id or itertools.count(1).__next__)


# Crossing: A moves right, B left, 4 px apart vertically, so they overlap almost entirely as
# they pass. On frame 20 A's previous box lies exactly on B's detection: without a motion model
# the best overlaps pair each track with the other object.
CROSSING_FRAME = 20


def crossing(class_b: int) -> list[SceneObject]:
    return [
        SceneObject(1, (100.0, 200.0), (6.0, 0.0)),
        SceneObject(2, (94.0 + 12 * CROSSING_FRAME, 204.0), (-6.0, 0.0), class_id=class_b),
    ]


@pytest.mark.parametrize(
    ("algorithm", "class_b", "expected_switches"),
    [
        ("iou", 0, 2),  # both objects change id once, at the crossing
        ("iou", 1, 0),  # different classes never compete for a track
        ("sort", 0, 0),
        ("bytetrack", 0, 0),
    ],
)
def test_crossing_paths(algorithm: TrackerAlgorithm, class_b: int, expected_switches: int) -> None:
    run = run_scene(tracker_for(algorithm), crossing(class_b), 2 * CROSSING_FRAME)
    assert count_id_switches(run.ids) == expected_switches
    if expected_switches:
        swapped = {gt: run.ids[CROSSING_FRAME][gt] for gt in (1, 2)}
        assert swapped == {1: run.ids[0][2], 2: run.ids[0][1]}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("missing", [3, 5])
def test_an_occlusion_within_max_lost_frames_keeps_the_id(
    algorithm: TrackerAlgorithm, missing: int
) -> None:
    seen = [*range(0, 10), *range(10 + missing, 40)]
    slow = SceneObject(1, (100.0, 100.0), (1.0, 0.5), size_wh=(50.0, 100.0), frames=seen)
    run = run_scene(tracker_for(algorithm, max_lost_frames=5), [slow], 40)
    assert count_id_switches(run.ids) == 0
    [track_id] = run.track_ids(1)
    assert all(ids[1] == track_id for ids in run.ids if 1 in ids)
    assert [(f.track_id, f.reason) for f in run.finished] == [(track_id, "stream-ended")]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_an_occlusion_longer_than_max_lost_frames_ends_the_track(
    algorithm: TrackerAlgorithm,
) -> None:
    seen = [*range(0, 10), *range(18, 40)]  # missing on detector frames 10 to 17
    slow = SceneObject(1, (100.0, 100.0), (1.0, 0.5), size_wh=(50.0, 100.0), frames=seen)
    tracker = tracker_for(algorithm, max_lost_frames=5)
    run = run_scene(tracker, [slow], 40)
    first, second = run.track_ids(1)
    assert count_id_switches(run.ids) == 1
    lost, ended = run.finished
    # Missed on frames 10 to 14 (five, allowed); the sixth miss, frame 15, ends it.
    assert (lost.track_id, lost.reason, lost.last_frame, lost.end_frame) == (first, "lost", 9, 15)
    assert lost.hits == 10
    assert (ended.track_id, ended.reason) == (second, "stream-ended")
    # The new track serves its probation again.
    assert run.first_tracked_frame(1, second) == 18 + tracker.params.min_hits - 1


ENTER_LEAVE = [
    SceneObject(1, (50.0, 50.0), (2.0, 0.0), frames=range(0, 60)),
    SceneObject(2, (50.0, 250.0), (2.0, 1.0), frames=range(10, 41)),
    SceneObject(3, (400.0, 50.0), (-1.0, 2.0), frames=range(20, 60)),
    SceneObject(4, (400.0, 300.0), (1.0, -1.0), frames=range(5, 26)),
    SceneObject(5, (700.0, 100.0), (-2.0, 0.0), frames=range(30, 51)),
    SceneObject(6, (700.0, 400.0), (0.0, -2.0), frames=range(45, 60)),
]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_objects_entering_and_leaving_get_one_id_each(algorithm: TrackerAlgorithm) -> None:
    max_lost = 5
    tracker = tracker_for(algorithm, max_lost_frames=max_lost)
    run = run_scene(tracker, ENTER_LEAVE, 60)
    assert count_id_switches(run.ids) == 0
    ids = {obj.gt_id: run.track_ids(obj.gt_id) for obj in ENTER_LEAVE}
    assert all(len(track_ids) == 1 for track_ids in ids.values())
    assert len({track_ids[0] for track_ids in ids.values()}) == len(ENTER_LEAVE)
    # An object present on the first frame is tracked at once; a later one after probation.
    min_hits = tracker.params.min_hits
    for obj in ENTER_LEAVE:
        start = min(obj.frames)
        expected = start if start == 0 else start + min_hits - 1
        assert run.first_tracked_frame(obj.gt_id) == expected
    # Every track is reported finished once: those that left while the stream went on as lost.
    by_id = {f.track_id: f for f in run.finished}
    assert len(by_id) == len(run.finished) == len(ENTER_LEAVE)
    for obj in ENTER_LEAVE:
        finished = by_id[ids[obj.gt_id][0]]
        last = max(obj.frames)
        assert finished.last_frame == last
        if last + max_lost + 1 < 60:
            assert (finished.reason, finished.end_frame) == ("lost", last + max_lost + 1)
        else:
            assert (finished.reason, finished.end_frame) == ("stream-ended", 59)


INTERVAL_SCENE = [
    SceneObject(1, (100.0, 100.0), (4.0, 1.0)),
    SceneObject(2, (600.0, 400.0), (-3.0, 2.0)),
    SceneObject(3, (300.0, 500.0), (2.0, -2.0), size_wh=(60.0, 60.0)),
]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_detector_interval_keeps_ids(algorithm: TrackerAlgorithm) -> None:
    # With no miss allowed, a skipped frame counted as one would end every track.
    tracker = tracker_for(algorithm, max_lost_frames=0)
    run = run_scene(tracker, INTERVAL_SCENE, 90, detect_every=3)
    assert count_id_switches(run.ids) == 0
    assert all(len(run.track_ids(obj.gt_id)) == 1 for obj in INTERVAL_SCENE)
    assert [f.reason for f in run.finished] == ["stream-ended"] * 3
    # Skipped frames do count towards the age.
    frame, prediction = run.predictions[-1]
    assert prediction.age.tolist() == [frame] * 3


@pytest.mark.parametrize("algorithm", MOTION_ALGORITHMS)
def test_predicted_boxes_follow_moving_objects(algorithm: TrackerAlgorithm) -> None:
    run = run_scene(tracker_for(algorithm), INTERVAL_SCENE, 90, detect_every=3)
    gt_of = {run.track_ids(obj.gt_id)[0]: obj for obj in INTERVAL_SCENE}
    worst = 0.0
    for frame, prediction in run.predictions:
        if frame < 30:  # the filter needs a few detector frames to learn the velocities
            continue
        assert sorted(prediction.track_id.tolist()) == sorted(gt_of)
        for track_id, xyxy in zip(prediction.track_id.tolist(), prediction.xyxy, strict=True):
            worst = max(worst, float(np.abs(xyxy - gt_of[track_id].xyxy(frame)).max()))
    assert worst < 3.0


def test_iou_tracker_predicts_the_last_box() -> None:
    run = run_scene(tracker_for("iou"), INTERVAL_SCENE[:1], 10, detect_every=3, noise_px=0.0)
    for frame, prediction in run.predictions:
        last_detector_frame = frame - frame % 3
        np.testing.assert_allclose(prediction.xyxy[0], INTERVAL_SCENE[0].xyxy(last_detector_frame))


def fading(frame: int) -> float:
    return 0.3 if 10 <= frame < 17 else 0.9


LOW_SCORE_SCENE = [
    SceneObject(1, (100.0, 100.0), (3.0, 1.0), score=fading),
    SceneObject(2, (500.0, 300.0), (-2.0, 0.0)),
]


def test_bytetrack_keeps_an_object_through_low_scores() -> None:
    run = run_scene(tracker_for("bytetrack", max_lost_frames=2), LOW_SCORE_SCENE, 30)
    assert count_id_switches(run.ids) == 0
    [track_id] = run.track_ids(1)
    # The second stage matches the low-score detections to the track.
    assert [ids[1] for ids in run.ids[10:17]] == [track_id] * 7
    assert all(f.reason == "stream-ended" for f in run.finished)


def test_sort_behind_a_score_threshold_loses_an_object_with_low_scores() -> None:
    run = run_scene(tracker_for("sort", max_lost_frames=2), LOW_SCORE_SCENE, 30, min_score=0.5)
    assert count_id_switches(run.ids) == 1
    first, second = run.track_ids(1)
    [lost] = [f for f in run.finished if f.reason == "lost"]
    assert (lost.track_id, lost.last_frame, lost.end_frame) == (first, 9, 12)
    # Back above the threshold on frame 17, it needs SORT's 3 hits for a new id.
    assert run.first_tracked_frame(1, second) == 19


def test_bytetrack_never_starts_a_track_from_a_low_score() -> None:
    doubtful = SceneObject(1, (100.0, 100.0), (1.0, 0.0), score=lambda frame: 0.4)
    middling = SceneObject(2, (400.0, 100.0), (1.0, 0.0), score=lambda frame: 0.55)
    run = run_scene(tracker_for("bytetrack"), [doubtful, middling], 10)
    assert run.track_ids(1) == []
    # 0.55 enters the first stage but is below new_track_threshold (0.6).
    assert run.track_ids(2) == []
    assert run.finished == []


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_detection_of_another_class_never_takes_a_track(algorithm: TrackerAlgorithm) -> None:
    # The same box, reported as class 1 from frame 5 on.
    as_0 = SceneObject(1, (100.0, 100.0), (1.0, 0.0), frames=range(0, 5))
    as_1 = SceneObject(2, (100.0, 100.0), (1.0, 0.0), frames=range(5, 12), class_id=1)
    run = run_scene(tracker_for(algorithm), [as_0, as_1], 12)
    [track_0] = run.track_ids(1)
    assert track_0 not in run.track_ids(2)
    assert len(run.track_ids(2)) == 1


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_class_agnostic_tracks_take_the_latest_class(algorithm: TrackerAlgorithm) -> None:
    as_0 = SceneObject(1, (100.0, 100.0), (1.0, 0.0), frames=range(0, 5))
    as_1 = SceneObject(2, (100.0, 100.0), (1.0, 0.0), frames=range(5, 12), class_id=1)
    tracker = tracker_for(algorithm, class_aware=False)
    run = run_scene(tracker, [as_0, as_1], 12)
    assert run.track_ids(1) == run.track_ids(2)
    [finished] = run.finished
    assert finished.class_id == 1


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("min_hits", [1, 2, 3])
def test_ids_are_unique_and_dense_across_streams(
    algorithm: TrackerAlgorithm, min_hits: int
) -> None:
    next_id = itertools.count(1).__next__
    # A one-frame flash in each stream: on probation it is dropped without costing an id.
    flash = SceneObject(99, (900.0, 900.0), (0.0, 0.0), frames=range(7, 8))
    scene = [*ENTER_LEAVE, flash]
    runs = [
        run_scene(tracker_for(algorithm, next_id, min_hits=min_hits), scene, 60, seed=seed)
        for seed in (1, 2)
    ]
    ids = [track_id for run in runs for frame in run.ids for track_id in frame.values()]
    given = sorted(set(ids) - {NO_TRACK_ID})
    tracked_objects = len(ENTER_LEAVE) + (min_hits == 1)
    assert given == list(range(1, 2 * tracked_objects + 1))
    assert all(len(run.track_ids(99)) == (min_hits == 1) for run in runs)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_finish_reports_every_live_track_once(algorithm: TrackerAlgorithm) -> None:
    tracker = tracker_for(algorithm, max_lost_frames=5)
    rng = np.random.default_rng(0)
    objects = ENTER_LEAVE[:2]  # object 2 starts at frame 10
    for frame in range(14):
        tracker.update(*detections(objects, frame, rng, 0.5)[:3], frame)
    # Object 1 goes missing: lost, but live.
    for frame in range(14, 16):
        tracker.update(*detections(objects[1:], frame, rng, 0.5)[:3], frame)
    finished = tracker.finish(16)
    assert [(f.reason, f.end_frame) for f in finished] == [("stream-ended", 16)] * 2
    assert {f.last_frame for f in finished} == {13, 15}
    assert tracker.finish() == []
    assert len(tracker.predict(17).track_id) == 0
    # A stream that starts again starts afresh: its first frame's objects are confirmed at once.
    again = tracker.update(*detections(objects, 0, rng, 0.5)[:3], 0)
    assert np.all(again.track_id > max(f.track_id for f in finished))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_empty_frames(algorithm: TrackerAlgorithm) -> None:
    tracker = tracker_for(algorithm, max_lost_frames=1)
    none = tracker.update(np.zeros((0, 4), np.float32), np.zeros(0), np.zeros(0, np.int32), 0)
    assert none.track_id.dtype == np.int64 and none.track_id.shape == (0,)
    assert none.age.dtype == np.int32 and none.tracker_confidence.dtype == np.float32
    prediction = tracker.predict(1)
    assert prediction.xyxy.shape == (0, 4) and prediction.xyxy.dtype == np.float32
    assert prediction.track_id.dtype == np.int64 and prediction.class_id.dtype == np.int32
    assert tracker.finish() == []

    # Empty frames in the middle of a track count as misses.
    box = np.array([[10, 10, 50, 90]], np.float32)
    first = tracker.update(box, np.array([0.9], np.float32), np.array([0], np.int32), 0)
    assert first.track_id.tolist() == [1]
    assert tracker.update([], [], [], 1).finished == []
    [lost] = tracker.update([], [], [], 2).finished
    assert (lost.track_id, lost.reason) == (1, "lost")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_degenerate_boxes_are_never_tracked(algorithm: TrackerAlgorithm) -> None:
    tracker = tracker_for(algorithm, min_hits=1)
    good = [100.0, 100.0, 140.0, 180.0]
    broken = [
        [10.0, 10.0, 10.0, 50.0],  # no width
        [10.0, 60.0, 50.0, 20.0],  # inverted
        [np.nan, 0.0, 10.0, 10.0],
        [0.0, 0.0, np.inf, 10.0],
        [-np.inf, -np.inf, np.inf, np.inf],
        good,  # a good box with a NaN score
    ]
    scores = np.array([0.9] * 5 + [np.nan, 0.9], np.float32)
    with np.errstate(all="raise"):  # nothing may even warn
        for frame in range(0, 10, 2):
            result = tracker.update(
                np.array([*broken, good], np.float32), scores, np.zeros(7, np.int32), frame
            )
            assert result.track_id[:6].tolist() == [NO_TRACK_ID] * 6
            assert result.track_id[6] == 1
            assert np.isfinite(result.tracker_confidence).all()
            prediction = tracker.predict(frame + 1)
            assert np.isfinite(prediction.xyxy).all()
        # A broken box where the track is does not take it: the track misses, and is not shown.
        tracker.update(np.array([[np.nan, 100.0, 140.0, 180.0]], np.float32), [0.9], [0], 10)
        assert len(tracker.predict(11).track_id) == 0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_age_and_tracker_confidence(algorithm: TrackerAlgorithm) -> None:
    tracker = tracker_for(algorithm)
    obj = SceneObject(1, (100.0, 100.0), (2.0, 0.0))
    rng = np.random.default_rng(0)
    first = tracker.update(*detections([obj], 0, rng, 0.0)[:3], 0)
    assert (first.age.tolist(), first.tracker_confidence.tolist()) == ([0], [1.0])
    predicted = [tracker.predict(frame) for frame in (1, 2)]
    assert [p.age.tolist() for p in predicted] == [[1], [2]]
    np.testing.assert_allclose([p.tracker_confidence[0] for p in predicted], [0.9, 0.81])
    np.testing.assert_allclose(predicted[-1].confidence, [0.9])
    third = tracker.update(*detections([obj], 3, rng, 0.0)[:3], 3)
    assert third.age.tolist() == [3]
    # Matched: the overlap of the expected box with the detection. Without a motion model the
    # expected box is the last one, 6 px behind.
    if algorithm == "iou":
        np.testing.assert_allclose(third.tracker_confidence, [34 / 46], rtol=1e-6)
    else:
        assert 0.0 < third.tracker_confidence[0] <= 1.0
