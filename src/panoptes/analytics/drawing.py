"""The rules drawn as display metadata, for the osd: zone edges, lines with the arrow of their
direction, and their names and counts (DeepStream's ``osd-mode`` 1 and 2)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from panoptes.analytics.geometry import FloatArray
from panoptes.analytics.stream import ScaledRules
from panoptes.core.meta import Color, DisplayLine, DisplayMeta, DisplayText

ZONE_COLOR: Color = (255, 255, 0)
CROWD_COLOR: Color = (255, 160, 0)
OVERCROWDED_COLOR: Color = (255, 0, 0)
LINE_COLOR: Color = (0, 255, 255)
DIRECTION_COLOR: Color = (255, 0, 255)

Segment = tuple[tuple[float, float], tuple[float, float]]


class RulesDrawing:
    """The display items of one stream's rules (in its frame pixels): the shapes worked out
    once, the counts written on each frame."""

    def __init__(self, rules: ScaledRules) -> None:
        self.rules = rules
        self._lines: list[tuple[Segment, Color, int]] = []
        for zone in rules.rois:
            self._lines += [(segment, ZONE_COLOR, 2) for segment in _polygon(zone.polygon)]
        for line in rules.lines:
            self._lines.append(((_xy(line.start), _xy(line.end)), LINE_COLOR, 3))
            arrow = _arrow(line.direction_from, line.direction_to)
            self._lines += [(segment, LINE_COLOR, 2) for segment in arrow]
        for direction in rules.directions:
            if not direction.compass:
                arrow = _arrow(direction.vector_from, direction.vector_to)
                self._lines += [(segment, DIRECTION_COLOR, 2) for segment in arrow]
        self._crowd_edges = [_polygon(crowd.polygon) for crowd in rules.overcrowding]

    def draw(
        self,
        display: DisplayMeta,
        analytics: dict[str, Any],
        *,
        counts: bool = True,
        font_scale: float | None = None,
    ) -> None:
        """Add the rules to ``display``; with ``counts``, the frame's counts from ``analytics``
        (as :meth:`StreamAnalytics.analyze` returns them) beside their names."""
        rules = self.rules
        display.lines += [DisplayLine(a, b, color, width) for (a, b), color, width in self._lines]
        texts: list[tuple[str, tuple[float, float], Color]] = []
        for zone in rules.rois:
            name = zone.rule.name
            text = f"{name}: {analytics[name]['objects']}" if counts else name
            texts.append((text, _label_xy(zone.polygon), ZONE_COLOR))
        for line in rules.lines:
            text = line.rule.name
            if counts:
                record = analytics[text]
                text += "".join(f" {way} {record[f'total_{way}']}" for way in line.rule.count)
            texts.append((text, _label_xy(np.stack([line.start, line.end])), LINE_COLOR))
        for crowd, edges in zip(rules.overcrowding, self._crowd_edges, strict=True):
            name = crowd.rule.name
            record = analytics[name]
            color = OVERCROWDED_COLOR if record["overcrowded"] else CROWD_COLOR
            display.lines += [DisplayLine(a, b, color) for a, b in edges]
            text = name
            if counts:
                text = f"{name}: {record['objects']}/{record['threshold']}"
                text += " overcrowded" if record["overcrowded"] else ""
            texts.append((text, _label_xy(crowd.polygon), color))
        for direction in rules.directions:
            if direction.compass:
                continue
            name = direction.rule.name
            text = f"{name}: {analytics[name]['objects']}" if counts else name
            texts.append((text, _xy(direction.vector_from), DIRECTION_COLOR))
        display.texts += [DisplayText(t, xy, c, font_scale) for t, xy, c in texts]


def draw_rules(
    display: DisplayMeta,
    rules: ScaledRules,
    analytics: dict[str, Any],
    *,
    counts: bool = True,
    font_scale: float | None = None,
) -> None:
    """Add ``rules`` and the frame's ``analytics`` to ``display`` (see :class:`RulesDrawing`,
    which keeps the shapes for the next frames)."""
    RulesDrawing(rules).draw(display, analytics, counts=counts, font_scale=font_scale)


def _xy(point: FloatArray) -> tuple[float, float]:
    return (float(point[0]), float(point[1]))


def _polygon(polygon: FloatArray) -> list[Segment]:
    following = np.roll(polygon, -1, axis=0)
    return [(_xy(start), _xy(end)) for start, end in zip(polygon, following, strict=True)]


def _label_xy(points: FloatArray) -> tuple[float, float]:
    """Where a shape's name goes: just above its topmost corner."""
    top = points[int(np.argmin(points[:, 1]))]
    return (float(top[0]), max(float(top[1]) - 18.0, 0.0))


def _arrow(start: FloatArray, end: FloatArray) -> list[Segment]:
    """A shaft from ``start`` to ``end`` and a head at ``end`` (two strokes at ±25°)."""
    segments = [(_xy(start), _xy(end))]
    back = start - end
    length = float(np.hypot(*back))
    if length == 0:
        return segments
    head = min(max(0.2 * length, 8.0), 25.0)
    for angle in (math.radians(25), -math.radians(25)):
        cos, sin = math.cos(angle), math.sin(angle)
        turned = np.array([cos * back[0] - sin * back[1], sin * back[0] + cos * back[1]])
        segments.append((_xy(end), _xy(end + turned / length * head)))
    return segments
