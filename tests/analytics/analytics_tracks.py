"""Synthetic tracks for the analytics tests: objects walking along paths, frame by frame."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from panoptes.analytics import StreamAnalytics
from panoptes.core.meta import NO_ID, AnalyticsEvent, Objects

LABELS = {0: "person", 2: "car"}


@dataclass
class Walker:
    """A track whose box's bottom centre visits ``path`` (x, y) one point per frame, from
    ``start`` on; a box of ``size_wh``."""

    track_id: int
    path: Sequence[tuple[float, float]]
    class_id: int = 0
    start: int = 0
    size_wh: tuple[float, float] = (40.0, 100.0)

    def at(self, frame_num: int) -> tuple[float, float] | None:
        index = frame_num - self.start
        return self.path[index] if 0 <= index < len(self.path) else None


def straight(
    start_xy: tuple[float, float], end_xy: tuple[float, float], frames: int
) -> list[tuple[float, float]]:
    """``frames`` points evenly from ``start_xy`` to ``end_xy``, both included."""
    xs = np.linspace(start_xy[0], end_xy[0], frames)
    ys = np.linspace(start_xy[1], end_xy[1], frames)
    return [(float(x), float(y)) for x, y in zip(xs, ys, strict=True)]


def objects_at(walkers: Sequence[Walker], frame_num: int) -> Objects:
    """The objects of frame ``frame_num``: one box per walker on its path then."""
    boxes, classes, ids = [], [], []
    for walker in walkers:
        xy = walker.at(frame_num)
        if xy is None:
            continue
        w, h = walker.size_wh
        boxes.append([xy[0] - w / 2, xy[1] - h, xy[0] + w / 2, xy[1]])
        classes.append(walker.class_id)
        ids.append(walker.track_id)
    objects = Objects()
    objects.add(
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.full(len(boxes), 0.9, np.float32),
        np.asarray(classes, np.int32),
        [LABELS.get(c, str(c)) for c in classes],
        track_id=np.asarray(ids, np.int64) if ids else None,
    )
    return objects


@dataclass
class Run:
    """What a stream's analytics made of every frame."""

    analytics: list[dict[str, Any]] = field(default_factory=list)
    events: list[AnalyticsEvent] = field(default_factory=list)
    objects: list[Objects] = field(default_factory=list)

    def kinds(self, kind: str) -> list[AnalyticsEvent]:
        return [event for event in self.events if event.kind == kind]


def run(
    stream: StreamAnalytics,
    walkers: Sequence[Walker],
    frames: int,
    *,
    size_wh: tuple[int, int] = (1920, 1080),
    fps: float = 10.0,
    untracked: Sequence[Walker] = (),
) -> Run:
    """Feed ``frames`` frames of ``walkers`` (and ``untracked`` objects, without ids)."""
    result = Run()
    for frame_num in range(frames):
        objects = objects_at(walkers, frame_num)
        if untracked:
            extra = objects_at(untracked, frame_num)
            extra.track_id[:] = NO_ID
            objects = Objects.concatenate([objects, extra])
        analytics, events = stream.analyze(
            objects, frame_num=frame_num, time_s=frame_num / fps, size_wh=size_wh
        )
        result.analytics.append(analytics)
        result.events += events
        result.objects.append(objects)
    return result
