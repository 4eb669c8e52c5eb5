"""The analytics of one stream: its rules scaled to its frames, and the state they keep.

:class:`StreamAnalytics` takes one frame's objects at a time (in frame order) and returns the
frame's analytics (counts and states by rule name) and events; it marks the objects with what
the rules found and, for filter zones, removes objects. It knows nothing of pipelines: the
``analytics`` element keeps one per stream and feeds it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from panoptes.analytics.geometry import (
    COMPASS,
    BoolArray,
    FloatArray,
    Polygon,
    bottom_centres,
    crossing_positions,
    signed_side,
    unit,
)
from panoptes.analytics.rules import (
    MOTION_MODES,
    DirectionRule,
    LineRule,
    OvercrowdingRule,
    RoiRule,
    StreamRules,
)
from panoptes.analytics.tracks import IntArray, TrackTable
from panoptes.core.meta import NO_ID, AnalyticsEvent, Objects

ScaleXY = tuple[float, float]


@dataclass(frozen=True)
class _ObjectFilter:
    """The objects a rule looks at: its classes and box sizes (pixels of the stream)."""

    class_ids: npt.NDArray[np.int32] | None
    min_wh: FloatArray | None
    max_wh: FloatArray | None

    @classmethod
    def of(cls, rule: Any, scale: ScaleXY) -> _ObjectFilter:
        factor = np.asarray(scale, np.float64)
        return cls(
            None if rule.class_ids is None else np.asarray(rule.class_ids, np.int32),
            None if rule.min_size_wh is None else np.asarray(rule.min_size_wh) * factor,
            None if rule.max_size_wh is None else np.asarray(rule.max_size_wh) * factor,
        )

    def mask(self, class_id: npt.NDArray[np.int32], size_wh: FloatArray) -> BoolArray:
        """bool [N]: which of the objects (their classes, box sizes [N, 2]) the rule sees."""
        keep = np.ones(len(class_id), bool)
        if self.class_ids is not None:
            keep &= np.isin(class_id, self.class_ids)
        if self.min_wh is not None:
            keep &= (size_wh >= self.min_wh).all(axis=1)
        if self.max_wh is not None:
            keep &= (size_wh <= self.max_wh).all(axis=1)
        return keep


ZoneRule = TypeVar("ZoneRule", RoiRule, OvercrowdingRule)


@dataclass(frozen=True)
class Zone(Generic[ZoneRule]):
    """A zone rule (ROI or overcrowding) scaled to a stream: ``polygon`` [M, 2] in its pixels."""

    rule: ZoneRule
    polygon: FloatArray
    shape: Polygon
    objects: _ObjectFilter


@dataclass(frozen=True)
class Line:
    """A line rule scaled to a stream. ``normal`` is the line's unit normal turned towards the
    direction, so "in" is from negative to positive :func:`signed_side`."""

    rule: LineRule
    start: FloatArray
    end: FloatArray
    direction_from: FloatArray
    direction_to: FloatArray
    direction: FloatArray
    normal: FloatArray
    objects: _ObjectFilter


@dataclass(frozen=True)
class Direction:
    """A named direction scaled to a stream; ``direction`` is its unit vector."""

    rule: DirectionRule
    vector_from: FloatArray
    vector_to: FloatArray
    direction: FloatArray
    objects: _ObjectFilter
    compass: bool = False
    """One of the eight compass directions (``compass: true``), not drawn."""


@dataclass(frozen=True)
class ScaledRules:
    """The rules of one stream in its own pixels (configuration coordinates × ``scale``)."""

    size_wh: tuple[int, int]
    rois: list[Zone[RoiRule]]
    lines: list[Line]
    overcrowding: list[Zone[OvercrowdingRule]]
    directions: list[Direction]
    diagonal: float = field(init=False)
    """Length of the frame's diagonal, pixels."""
    names: list[str] = field(init=False)
    """The rules' names, zones first, then lines, crowding and directions."""
    direction_vectors: FloatArray = field(init=False)
    """The directions' unit vectors [D, 2]."""

    def __post_init__(self) -> None:
        rules: list[Zone[RoiRule] | Line | Zone[OvercrowdingRule] | Direction] = [
            *self.rois,
            *self.lines,
            *self.overcrowding,
            *self.directions,
        ]
        vectors = [direction.direction for direction in self.directions]
        object.__setattr__(self, "diagonal", math.hypot(*self.size_wh))
        object.__setattr__(self, "names", [rule.rule.name for rule in rules])
        object.__setattr__(self, "direction_vectors", np.asarray(vectors).reshape(-1, 2))


def scale_rules(
    entries: Sequence[StreamRules], size_wh: tuple[int, int], config_wh: tuple[int, int] | None
) -> ScaledRules:
    """The rules of ``entries`` (those that apply to one stream) for frames of ``size_wh``;
    coordinates given at ``config_wh`` are scaled to it, None means they are frame pixels."""
    scale: ScaleXY = (1.0, 1.0)
    if config_wh is not None:
        scale = (size_wh[0] / config_wh[0], size_wh[1] / config_wh[1])
    factor = np.asarray(scale, np.float64)

    def points(values: Sequence[tuple[float, float]]) -> FloatArray:
        return np.asarray(values, np.float64).reshape(-1, 2) * factor

    rois: list[Zone[RoiRule]] = []
    lines: list[Line] = []
    overcrowding: list[Zone[OvercrowdingRule]] = []
    directions: list[Direction] = []
    for entry in entries:
        for roi in entry.rois:
            corners = points(roi.polygon)
            rois.append(Zone(roi, corners, Polygon(corners), _ObjectFilter.of(roi, scale)))
        for crowd in entry.overcrowding:
            corners = points(crowd.polygon)
            overcrowding.append(
                Zone(crowd, corners, Polygon(corners), _ObjectFilter.of(crowd, scale))
            )
        for line_rule in entry.lines:
            start, end = points(line_rule.line)
            direction_from, direction_to = points(line_rule.direction)
            direction = unit(direction_to - direction_from)
            along = unit(end - start)
            normal = np.array([-along[1], along[0]])
            if normal @ direction < 0:
                normal = -normal
            lines.append(
                Line(
                    line_rule,
                    start,
                    end,
                    direction_from,
                    direction_to,
                    direction,
                    normal,
                    _ObjectFilter.of(line_rule, scale),
                )
            )
        for direction_rule in entry.directions:
            vector_from, vector_to = points(direction_rule.vector)
            directions.append(
                Direction(
                    direction_rule,
                    vector_from,
                    vector_to,
                    unit(vector_to - vector_from),
                    _ObjectFilter.of(direction_rule, scale),
                )
            )
        if entry.compass:
            centre = np.asarray(size_wh, np.float64) / 2
            for name, vector in COMPASS:
                compass_rule = DirectionRule(name=name, vector=((0.0, 0.0), vector))
                unit_vector = np.asarray(vector, np.float64)
                filter_ = _ObjectFilter.of(compass_rule, scale)
                directions.append(
                    Direction(
                        compass_rule, centre, centre + unit_vector, unit_vector, filter_, True
                    )
                )
    return ScaledRules(size_wh, rois, lines, overcrowding, directions)


@dataclass(frozen=True)
class _Moving:
    """The tracked objects of a frame that lines and directions look at, one row each."""

    rows: IntArray
    """Their rows in the frame's objects."""
    slots: IntArray
    """Their slots in the stream's track table."""
    current: FloatArray
    """Their bottom centres [N, 2]."""
    movement: FloatArray
    """[N, 2]: from where each was a little while ago (see ``reference_points``) to now."""
    seen: IntArray
    """Frames each track has been seen in."""
    class_id: npt.NDArray[np.int32]
    size_wh: FloatArray
    """Box widths and heights [N, 2]."""
    heading: FloatArray = field(init=False)
    """The movement as a unit vector [N, 2] (zero when still)."""
    travel: FloatArray = field(init=False)
    """Length of the movement [N]."""
    _trusted: dict[str, BoolArray] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        travel = np.linalg.norm(self.movement, axis=1)
        heading = np.divide(
            self.movement,
            travel[:, None],
            out=np.zeros_like(self.movement),
            where=travel[:, None] > 0,
        )
        object.__setattr__(self, "travel", travel)
        object.__setattr__(self, "heading", heading)

    def trusted(self, mode: str, diagonal: float) -> BoolArray:
        """Tracks seen long enough, that moved far enough, for ``mode`` to trust their
        movement (see :class:`MotionMode`)."""
        if mode not in self._trusted:
            thresholds = MOTION_MODES[mode]
            self._trusted[mode] = (self.seen > thresholds.min_frames) & (
                self.travel >= thresholds.min_travel * diagonal
            )
        return self._trusted[mode]


@dataclass
class _Crowding:
    """An overcrowding zone's state: overcrowded or not, and since when the count has said
    otherwise (None while it agrees)."""

    overcrowded: bool = False
    changing_since_s: float | None = None


@dataclass
class _Totals:
    entered: Counter[str] = field(default_factory=Counter)
    exited: Counter[str] = field(default_factory=Counter)
    crossed: dict[str, dict[str, Counter[str]]] = field(default_factory=dict)
    """Per line, per direction ("in", "out"), crossings per label."""
    moved: Counter[str] = field(default_factory=Counter)
    """Per direction, the times a track started moving that way."""


class StreamAnalytics:
    """The rules of one stream and their state, fed one frame at a time with :meth:`analyze`.

    ``entries`` are the :class:`StreamRules` that apply to the stream; ``config_wh`` the
    resolution their coordinates are given at (None: frame pixels). A track's state is kept
    until :meth:`end_track` (the tracker ended it) or until it is not seen for
    ``track_timeout_s`` of stream time.
    """

    def __init__(
        self,
        source_id: int,
        entries: Sequence[StreamRules],
        *,
        config_wh: tuple[int, int] | None = None,
        track_timeout_s: float = 8.0,
    ) -> None:
        self.source_id = source_id
        self.entries = list(entries)
        self.config_wh = config_wh
        self.track_timeout_s = track_timeout_s
        self.rules: ScaledRules | None = None
        self.tracks = TrackTable()
        self._crowding: dict[str, _Crowding] = {}
        self._totals = _Totals()
        self._frames = 0

    # -- one frame ------------------------------------------------------------------------------

    def analyze(
        self, objects: Objects, *, frame_num: int, time_s: float, size_wh: tuple[int, int]
    ) -> tuple[dict[str, Any], list[AnalyticsEvent]]:
        """Apply the rules to one frame's ``objects`` (boxes in pixels of a ``size_wh`` frame,
        at stream time ``time_s``): returns the frame's analytics by rule name and its events.

        Objects get ``user_meta["analytics"]`` (``rois``, ``overcrowding``, ``lines`` crossed
        on this frame, ``direction``) where a rule found something; filter zones remove the
        objects outside them.
        """
        rules = self._rules_for(size_wh)
        events: list[AnalyticsEvent] = []
        analytics: dict[str, Any] = {}
        self._frames += 1
        if self._frames % 32 == 0:
            for track_id in self.tracks.stale(time_s, self.track_timeout_s):
                events += self.end_track(track_id, frame_num, reason="timeout")

        anchors = bottom_centres(objects.xyxy)
        size_wh_px = np.stack(
            [objects.xyxy[:, 2] - objects.xyxy[:, 0], objects.xyxy[:, 3] - objects.xyxy[:, 1]],
            axis=1,
        ).astype(np.float64)
        class_id = objects.class_id
        tracked = np.flatnonzero(objects.track_id != NO_ID)
        track_ids: IntArray = objects.track_id[tracked].astype(np.int64)
        slots = self.tracks.observe(track_ids, anchors[tracked], time_s)

        # Zones first: filter zones decide which objects the other rules see.
        in_roi = [
            zone.objects.mask(class_id, size_wh_px)
            & (zone.shape.contains(anchors) != zone.rule.inverse)
            for zone in rules.rois
        ]
        for zone, inside in zip(rules.rois, in_roi, strict=True):
            events += self._zone_transitions(
                zone, inside[tracked], slots, track_ids, objects, tracked, frame_num
            )
        keep = self._filter_mask(rules, in_roi, class_id, size_wh_px)
        if keep is not None:
            objects.keep(keep)
            kept = np.flatnonzero(keep)
            anchors, size_wh_px, class_id = anchors[kept], size_wh_px[kept], class_id[kept]
            in_roi = [inside[kept] for inside in in_roi]
            # Rows of the kept tracked objects, and their slots.
            row_of = np.full(len(keep), -1)
            row_of[kept] = np.arange(len(kept))
            rows = row_of[tracked]
            kept_tracked = rows >= 0
            tracked, slots = rows[kept_tracked], slots[kept_tracked]

        marks: dict[int, dict[str, Any]] = {}
        for zone, inside in zip(rules.rois, in_roi, strict=True):
            ids = objects.track_id[inside]
            analytics[zone.rule.name] = {
                "type": "roi",
                "objects": int(np.count_nonzero(inside)),
                "track_ids": sorted(ids[ids != NO_ID].tolist()),
                "entered": self._totals.entered[zone.rule.name],
                "exited": self._totals.exited[zone.rule.name],
            }
        in_crowd = []
        for crowd in rules.overcrowding:
            inside = crowd.objects.mask(class_id, size_wh_px) & crowd.shape.contains(anchors)
            in_crowd.append(inside)
            events += self._crowding_state(crowd, inside, time_s, frame_num)
            rule = crowd.rule
            analytics[rule.name] = {
                "type": "overcrowding",
                "objects": int(np.count_nonzero(inside)),
                "threshold": rule.threshold,
                "overcrowded": self._crowding[rule.name].overcrowded,
            }
        _mark(marks, "rois", [z.rule.name for z in rules.rois], in_roi)
        _mark(marks, "overcrowding", [c.rule.name for c in rules.overcrowding], in_crowd)

        if len(tracked) and (rules.lines or rules.directions):
            moving = _Moving(
                tracked,
                slots,
                anchors[tracked],
                anchors[tracked] - self.tracks.reference_points(slots),
                self.tracks.seen[slots],
                class_id[tracked],
                size_wh_px[tracked],
            )
            for line in rules.lines:
                events += self._crossings(line, moving, rules.diagonal, objects, frame_num, marks)
            events += self._directions(rules, moving, objects, frame_num, marks, analytics)
        else:
            for direction in rules.directions:
                analytics[direction.rule.name] = _direction_record(
                    [], self._totals.moved[direction.rule.name]
                )
        for line in rules.lines:
            analytics[line.rule.name] = self._line_record(line.rule.name)
        for row, mark in marks.items():
            meta = objects.user_meta[row]
            if meta is None:
                meta = objects.user_meta[row] = {}
            meta["analytics"] = mark
        return {name: analytics[name] for name in rules.names}, events

    def end_track(
        self, track_id: int, frame_num: int, *, reason: str = "ended"
    ) -> list[AnalyticsEvent]:
        """Forget a track; an ``exited`` event for each zone it was in (``extra["reason"]``)."""
        slot = self.tracks.release(track_id)
        if slot is None or self.rules is None:
            return []
        events: list[AnalyticsEvent] = []
        for zone in self.rules.rois:
            name = zone.rule.name
            state = self.tracks.columns[f"roi:{name}"]
            if state[slot]:
                self._totals.exited[name] += 1
                events.append(
                    AnalyticsEvent(
                        "exited",
                        name,
                        self.source_id,
                        frame_num,
                        track_id=track_id,
                        count=self._totals.exited[name],
                        extra={"reason": f"track {reason}"},
                    )
                )
        return events

    # -- the rules ------------------------------------------------------------------------------

    def _rules_for(self, size_wh: tuple[int, int]) -> ScaledRules:
        if self.rules is None or self.rules.size_wh != size_wh:
            self.rules = scale_rules(self.entries, size_wh, self.config_wh)
            for zone in self.rules.rois:
                for prefix, dtype in (("roi:", np.bool_), ("roi-streak:", np.int32)):
                    if prefix + zone.rule.name not in self.tracks.columns:
                        self.tracks.add_column(prefix + zone.rule.name, dtype)
            for line in self.rules.lines:
                if f"line:{line.rule.name}" not in self.tracks.columns:
                    self.tracks.add_column(f"line:{line.rule.name}", np.bool_, (2,))
                self._totals.crossed.setdefault(line.rule.name, {"in": Counter(), "out": Counter()})
            if "direction" not in self.tracks.columns:
                self.tracks.add_column("direction", np.int16)
            for crowd in self.rules.overcrowding:
                self._crowding.setdefault(crowd.rule.name, _Crowding())
        return self.rules

    def _filter_mask(
        self,
        rules: ScaledRules,
        in_roi: list[BoolArray],
        class_id: npt.NDArray[np.int32],
        size_wh: FloatArray,
    ) -> BoolArray | None:
        """Which objects the filter zones keep, or None when they keep every one."""
        filters = [
            (z, inside)
            for z, inside in zip(rules.rois, in_roi, strict=True)
            if z.rule.mode == "filter"
        ]
        if not filters:
            return None
        governed = np.zeros(len(class_id), bool)
        inside_any = np.zeros(len(class_id), bool)
        for zone, inside in filters:
            governed |= zone.objects.mask(class_id, size_wh)
            inside_any |= inside
        keep = ~governed | inside_any
        return None if keep.all() else keep

    def _zone_transitions(
        self,
        zone: Zone[RoiRule],
        inside: BoolArray,
        slots: IntArray,
        track_ids: IntArray,
        objects: Objects,
        rows: IntArray,
        frame_num: int,
    ) -> list[AnalyticsEvent]:
        """Tracks entering and leaving a zone; a change counts after ``min_frames`` in a row."""
        rule = zone.rule
        state = self.tracks.columns[f"roi:{rule.name}"]
        streak = self.tracks.columns[f"roi-streak:{rule.name}"]
        differs = inside != state[slots]
        run = np.where(differs, streak[slots] + 1, 0)
        change = differs & (run >= rule.min_frames)
        run[change] = 0
        streak[slots] = run
        state[slots[change]] = inside[change]
        events = []
        for index in np.flatnonzero(change).tolist():
            row = int(rows[index])
            kind = "entered" if inside[index] else "exited"
            totals = self._totals.entered if inside[index] else self._totals.exited
            totals[rule.name] += 1
            events.append(
                AnalyticsEvent(
                    kind,
                    rule.name,
                    self.source_id,
                    frame_num,
                    track_id=int(track_ids[index]),
                    label=objects.labels[row],
                    class_id=int(objects.class_id[row]),
                    count=totals[rule.name],
                )
            )
        return events

    def _crowding_state(
        self, zone: Zone[OvercrowdingRule], inside: BoolArray, time_s: float, frame_num: int
    ) -> list[AnalyticsEvent]:
        rule = zone.rule
        state = self._crowding[rule.name]
        count = int(np.count_nonzero(inside))
        crowded = count >= rule.threshold
        if crowded == state.overcrowded:
            state.changing_since_s = None
            return []
        if state.changing_since_s is None or time_s < state.changing_since_s:
            # (stream time going back: a looped file starts again)
            state.changing_since_s = time_s
        if (time_s - state.changing_since_s) * 1000 < rule.time_threshold_ms:
            return []
        state.overcrowded = crowded
        state.changing_since_s = None
        kind = "overcrowded" if crowded else "overcrowding-ended"
        return [AnalyticsEvent(kind, rule.name, self.source_id, frame_num, count=count)]

    def _crossings(
        self,
        line: Line,
        moving: _Moving,
        diagonal: float,
        objects: Objects,
        frame_num: int,
        marks: dict[int, dict[str, Any]],
    ) -> list[AnalyticsEvent]:
        """Tracks that crossed ``line`` on this frame, each counted once per direction."""
        rule = line.rule
        mode = MOTION_MODES[rule.mode]
        reference = moving.current - moving.movement
        before = signed_side(reference, line.start, line.normal)
        after = signed_side(moving.current, line.start, line.normal)
        counts_now = line.objects.mask(moving.class_id, moving.size_wh)
        counts_now &= moving.trusted(rule.mode, diagonal)
        if not rule.extended:
            # Where the bottom edge of the box meets the line, not only its centre, must lie
            # between the ends (DeepStream also tries the bottom corners).
            position = crossing_positions(reference, moving.current, line.start, line.end)
            length = max(float(np.linalg.norm(line.end - line.start)), 1e-9)
            margin = moving.size_wh[:, 0] / 2 / length
            counts_now &= (position >= -margin) & (position <= 1 + margin)
        cosine = moving.heading @ line.direction
        crossed = self.tracks.columns[f"line:{rule.name}"]
        events = []
        for column, direction, went in (
            (0, "in", (before < 0) & (after > 0)),
            (1, "out", (before > 0) & (after < 0)),
        ):
            if direction not in rule.count:
                continue
            new = went & counts_now & ~crossed[moving.slots, column]
            if mode.min_cosine is not None:
                sign = 1.0 if direction == "in" else -1.0
                new &= sign * cosine >= mode.min_cosine
            crossed[moving.slots[new], column] = True
            counts = self._totals.crossed[rule.name][direction]
            for index in np.flatnonzero(new).tolist():
                row = int(moving.rows[index])
                label = objects.labels[row]
                counts[label] += 1
                lines = marks.setdefault(row, {}).setdefault("lines", [])
                lines.append({"rule": rule.name, "direction": direction})
                events.append(
                    AnalyticsEvent(
                        "crossed",
                        rule.name,
                        self.source_id,
                        frame_num,
                        track_id=int(objects.track_id[row]),
                        label=label,
                        class_id=int(objects.class_id[row]),
                        direction=direction,
                        count=sum(counts.values()),
                    )
                )
        return events

    def _directions(
        self,
        rules: ScaledRules,
        moving: _Moving,
        objects: Objects,
        frame_num: int,
        marks: dict[int, dict[str, Any]],
        analytics: dict[str, Any],
    ) -> list[AnalyticsEvent]:
        """Each moving track's direction: the closest of its stream's directions that it
        follows closely enough; an event when a track starts moving a new way."""
        if not rules.directions:
            return []
        rows, slots = moving.rows, moving.slots
        cosine = moving.heading @ rules.direction_vectors.T
        for index, direction in enumerate(rules.directions):
            mode = MOTION_MODES[direction.rule.mode]
            valid = direction.objects.mask(moving.class_id, moving.size_wh)
            valid &= moving.trusted(direction.rule.mode, rules.diagonal)
            if mode.min_cosine is not None:
                valid &= cosine[:, index] >= mode.min_cosine
            cosine[~valid, index] = -np.inf
        best = np.argmax(cosine, axis=1)
        heading = np.isfinite(cosine[np.arange(len(rows)), best])
        last = self.tracks.columns["direction"]
        changed = heading & (last[slots] != best + 1)
        last[slots[changed]] = best[changed] + 1
        events = []
        for index in np.flatnonzero(changed).tolist():
            row = int(rows[index])
            name = rules.directions[int(best[index])].rule.name
            self._totals.moved[name] += 1
            events.append(
                AnalyticsEvent(
                    "direction",
                    name,
                    self.source_id,
                    frame_num,
                    track_id=int(objects.track_id[row]),
                    label=objects.labels[row],
                    class_id=int(objects.class_id[row]),
                    direction=name,
                    count=self._totals.moved[name],
                )
            )
        for index, direction in enumerate(rules.directions):
            name = direction.rule.name
            these = heading & (best == index)
            track_ids = sorted(objects.track_id[rows[these]].tolist())
            analytics[name] = _direction_record(track_ids, self._totals.moved[name])
        names = [direction.rule.name for direction in rules.directions]
        for row, index in zip(rows[heading].tolist(), best[heading].tolist(), strict=True):
            marks.setdefault(row, {})["direction"] = names[index]
        return events

    def _line_record(self, name: str) -> dict[str, Any]:
        counts = self._totals.crossed[name]
        return {
            "type": "line",
            "counts": {direction: dict(by_label) for direction, by_label in counts.items()},
            "total_in": sum(counts["in"].values()),
            "total_out": sum(counts["out"].values()),
        }


def _mark(
    marks: dict[int, dict[str, Any]], key: str, names: list[str], masks: list[BoolArray]
) -> None:
    """``marks[row][key]``: the names of the rules whose mask holds the row."""
    if not masks:
        return
    table = np.stack(masks, axis=1)
    rows = np.flatnonzero(table.any(axis=1))
    for row, hits in zip(rows.tolist(), table[rows].tolist(), strict=True):
        found = [name for name, hit in zip(names, hits, strict=True) if hit]
        marks.setdefault(row, {})[key] = found


def _direction_record(track_ids: list[int], total: int) -> dict[str, Any]:
    return {"type": "direction", "objects": len(track_ids), "track_ids": track_ids, "total": total}
