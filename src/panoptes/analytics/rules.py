"""The analytics rules as configured: zones, lines, crowding and directions, per stream.

Coordinates are pixels at the configuration's resolution (``config_width`` × ``config_height``
of the analytics section, DeepStream's ``config-width``/``config-height``), or of the frames
themselves when none is given; they are scaled to each stream's own size when it starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from panoptes.analytics.geometry import polygon_area

Point = tuple[float, float]
"""(x, y) in pixels."""

MotionModeName = Literal["loose", "balanced", "strict"]
Way = Literal["in", "out"]
"""A line's directions: "in" along its direction, "out" against it."""


@dataclass(frozen=True)
class MotionMode:
    """How sure the analytics must be of a track's movement before a line crossing or a
    direction counts (DeepStream's ``mode``).

    The movement is measured from a track's older positions (the mean of the oldest few of its
    last ten bottom centres) to its current one.
    """

    min_cosine: float | None
    """Least cosine between the movement and the rule's direction; None: any direction (for a
    line, which side the track came from is all that counts)."""
    min_travel: float
    """Least length of the movement, as a share of the frame's diagonal."""
    min_frames: int
    """Frames a track must have been seen in, more than this, before it counts."""


# DeepStream's thresholds (nvds_analytics.cpp): cosine 0.1 / 0.5 / 0.8, squared displacement
# 1000 / 3000 / 6000 pixels at the muxer's resolution, more than 3 / 10 / 20 frames seen. The
# displacements are kept here as a share of the diagonal of a 1920×1080 frame, the usual muxer
# resolution, so that they mean the same movement whatever a stream's size. In loose mode a
# line counts any change of side (DeepStream does when the direction is across the line).
MOTION_MODES: dict[str, MotionMode] = {
    "loose": MotionMode(min_cosine=None, min_travel=0.0144, min_frames=3),
    "balanced": MotionMode(min_cosine=0.5, min_travel=0.0249, min_frames=10),
    "strict": MotionMode(min_cosine=0.8, min_travel=0.0352, min_frames=20),
}


class _Rule(BaseModel):
    """What every rule has: a name and the objects it looks at."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        min_length=1,
        description="The rule's name: its key in frame.meta.analytics and its events' rule.",
    )
    class_ids: list[int] | None = Field(
        None,
        description="Classes the rule looks at (DeepStream's class-id); none, or -1 among them, "
        "for every class.",
    )
    min_size_wh: tuple[float, float] | None = Field(
        None,
        description="Least box width and height (pixels, at the configuration's resolution) of "
        "the objects the rule looks at; none: no least size.",
    )
    max_size_wh: tuple[float, float] | None = Field(
        None,
        description="Largest box width and height of the objects the rule looks at; none: no "
        "largest size.",
    )

    @field_validator("class_ids")
    @classmethod
    def _every_class(cls, value: list[int] | None) -> list[int] | None:
        return None if value is None or -1 in value else value


class _Zone(_Rule):
    """A rule on a polygon."""

    polygon: list[Point] = Field(
        min_length=3, description="Corners of the zone, [[x, y], ...], in order around it."
    )

    @field_validator("polygon")
    @classmethod
    def _has_area(cls, value: list[Point]) -> list[Point]:
        if polygon_area(value) <= 0:
            raise ValueError("the corners enclose no area; give at least three not in a line")
        return value


class RoiRule(_Zone):
    """A zone (DeepStream's ROI filtering): which objects are in it, and tracks entering and
    leaving it."""

    inverse: bool = Field(
        False,
        description="The zone is everything outside the polygon (DeepStream's inverse-roi).",
    )
    mode: Literal["flag", "filter"] = Field(
        "flag",
        description="flag: objects are marked with the zones they are in (as nvdsanalytics "
        "does); filter: objects of the rule's classes outside every filter zone of their "
        "stream are removed from the frame before the other rules see them.",
    )
    min_frames: int = Field(
        1,
        ge=1,
        description="Frames in a row a track must be inside (outside) before it counts as "
        "having entered (left), so that a box jittering on the edge does not flicker.",
    )


class LineRule(_Rule):
    """A line that tracks are counted crossing, per class and direction (DeepStream's line
    crossing): "in" along the direction, "out" against it."""

    direction: tuple[Point, Point] = Field(
        description='Two points, from and to: the way that counts as "in" (DeepStream\'s first '
        "two points)."
    )
    line: tuple[Point, Point] = Field(
        description="The two ends of the line (DeepStream's last two points)."
    )
    mode: MotionModeName = Field(
        "balanced",
        description="How strictly a crossing must follow the direction: loose (any change of "
        "side), balanced (within 60° of it), strict (within 37°, longer tracks, more movement).",
    )
    extended: bool = Field(
        False,
        description="Count crossings anywhere on the infinite line through the two ends, not "
        "only between them.",
    )
    count: list[Way] = Field(
        default_factory=lambda: list[Way](["in", "out"]),
        min_length=1,
        description="Directions counted: in, out or both (DeepStream counts only in).",
    )

    @field_validator("direction", "line")
    @classmethod
    def _two_points_apart(cls, value: tuple[Point, Point]) -> tuple[Point, Point]:
        return _distinct(value)

    @field_validator("line")
    @classmethod
    def _not_along_direction(
        cls, value: tuple[Point, Point], info: ValidationInfo
    ) -> tuple[Point, Point]:
        direction = info.data.get("direction")
        if direction is None:
            return value
        (dx1, dy1), (dx2, dy2) = direction
        (lx1, ly1), (lx2, ly2) = value
        dx, dy, lx, ly = dx2 - dx1, dy2 - dy1, lx2 - lx1, ly2 - ly1
        sine = (dx * ly - dy * lx) / ((dx * dx + dy * dy) * (lx * lx + ly * ly)) ** 0.5
        if abs(sine) < 0.05:
            raise ValueError("runs along the direction; the direction must cross the line")
        return value


class OvercrowdingRule(_Zone):
    """A zone that becomes overcrowded when it holds ``threshold`` objects or more (DeepStream's
    overcrowding), for ``time_threshold_ms``."""

    threshold: int = Field(
        1,
        ge=0,
        description="Objects in the zone that make it overcrowded, at least (DeepStream's "
        "object-threshold).",
    )
    time_threshold_ms: int = Field(
        0,
        ge=0,
        description="Milliseconds the count must stay at or above the threshold before the "
        "zone is overcrowded, and below it before it is no longer (stream time).",
    )


class DirectionRule(_Rule):
    """A named direction; a track moving closest to it (among its stream's directions) is
    said to move that way (DeepStream's direction detection)."""

    vector: tuple[Point, Point] = Field(
        description="Two points, from and to, giving the direction (DeepStream's direction-X)."
    )
    mode: MotionModeName = Field(
        "balanced",
        description="How close the movement must be to the direction: loose (the nearest "
        "direction, however far), balanced (within 60°), strict (within 37°, longer tracks).",
    )

    @field_validator("vector")
    @classmethod
    def _two_points_apart(cls, value: tuple[Point, Point]) -> tuple[Point, Point]:
        return _distinct(value)


def _distinct(value: tuple[Point, Point]) -> tuple[Point, Point]:
    if value[0] == value[1]:
        raise ValueError("the two points are the same; give two different points")
    return value


class StreamRules(BaseModel):
    """The rules of one stream, or of every stream (``source: "*"``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: int | str = Field(
        "*",
        description="The stream: its source_id (0, 1 ... in the order of sources), its name, "
        "or '*' for every stream (in addition to a stream's own rules).",
    )
    rois: list[RoiRule] = Field(default_factory=list, description="Zones.")
    lines: list[LineRule] = Field(default_factory=list, description="Counting lines.")
    overcrowding: list[OvercrowdingRule] = Field(
        default_factory=list, description="Zones watched for overcrowding."
    )
    directions: list[DirectionRule] = Field(
        default_factory=list, description="Named directions of travel."
    )
    compass: bool = Field(
        False,
        description="Also tell which of the eight compass directions each track moves in "
        "(north is up the image), as directions named north, north-east ...",
    )

    @model_validator(mode="after")
    def _names_unique(self) -> StreamRules:
        seen: dict[str, str] = {}
        for place, rule in self.named_rules():
            if rule in seen:
                raise ValueError(f"{place}: {rule!r} is already the name of {seen[rule]}")
            seen[rule] = place
        return self

    def named_rules(self) -> list[tuple[str, str]]:
        """(place, name) of every rule, ``rois[0].name``, including the compass directions."""
        rules: list[tuple[str, str]] = []
        for key in ("rois", "lines", "overcrowding", "directions"):
            items: list[_Rule] = getattr(self, key)
            rules += [(f"{key}[{index}].name", rule.name) for index, rule in enumerate(items)]
        if self.compass:
            from panoptes.analytics.geometry import COMPASS

            rules += [("compass", name) for name, _ in COMPASS]
        return rules

    def applies_to(self, source_id: int, source_name: str) -> bool:
        """Whether these rules are for the stream ``source_id`` called ``source_name``."""
        if isinstance(self.source, int):
            return self.source == source_id
        return self.source in ("*", source_name)
