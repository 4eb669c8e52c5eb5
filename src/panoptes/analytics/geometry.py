"""Plane geometry on arrays of points: anchors of boxes, polygons, lines and directions.

Every function takes and returns numpy arrays in one pixel space (a stream's original-frame
pixels once the rules are scaled to it) and works on all the objects of a frame at once.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

COMPASS: tuple[tuple[str, tuple[float, float]], ...] = tuple(
    (name, (math.sin(math.radians(angle)), -math.cos(math.radians(angle))))
    for name, angle in (
        ("north", 0),
        ("north-east", 45),
        ("east", 90),
        ("south-east", 135),
        ("south", 180),
        ("south-west", 225),
        ("west", 270),
        ("north-west", 315),
    )
)
"""The eight compass directions as unit vectors (x, y) in image coordinates: north is up the
image (towards y = 0), east is to the right."""


def bottom_centres(xyxy: npt.ArrayLike) -> FloatArray:
    """float64 [N, 2]: the middle of each box's bottom edge, (x1 + x2) / 2 and y2.

    The point DeepStream's nvdsanalytics takes for every rule: where a person or a vehicle
    touches the ground, so that a zone drawn on the floor holds the objects standing in it.
    """
    boxes = np.asarray(xyxy, np.float64).reshape(-1, 4)
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, boxes[:, 3]], axis=1)


class Polygon:
    """A polygon [M, 2], prepared once for testing many points against it.

    Inside means the even-odd rule (a ray to the right crosses the edges an odd number of
    times), so that polygons given in either order, convex or not, work; points on the left
    and top edges are inside, on the right and bottom edges outside. Written here because
    OpenCV's ``pointPolygonTest`` takes one point per call and a geometry library (shapely)
    would be a large dependency for one test; on [N, M] arrays it costs microseconds a frame.
    """

    __slots__ = ("_run", "_x1", "_y1", "_y2", "vertices")

    def __init__(self, vertices: npt.ArrayLike) -> None:
        corners = np.asarray(vertices, np.float64).reshape(-1, 2)
        following = np.concatenate([corners[1:], corners[:1]])
        self.vertices = corners
        self._x1, self._y1, self._y2 = corners[:, 0], corners[:, 1], following[:, 1]
        rise = self._y2 - self._y1
        # x per unit of y along each edge; horizontal edges never straddle a point's height.
        self._run = np.divide(
            following[:, 0] - self._x1, rise, out=np.zeros_like(rise), where=rise != 0
        )

    def contains(self, points: npt.ArrayLike) -> BoolArray:
        """bool [N]: whether each point (x, y) of ``points`` [N, 2] is inside."""
        xy = np.asarray(points, np.float64).reshape(-1, 2)
        y = xy[:, 1:2]
        # An edge counts when it straddles the point's height (half-open: a vertex counts once)
        # and meets that height to the right of the point.
        straddles = (self._y1 <= y) != (self._y2 <= y)
        crossings = straddles & (xy[:, 0:1] < self._x1 + (y - self._y1) * self._run)
        return np.asarray(np.count_nonzero(crossings, axis=1) % 2 == 1)


def points_in_polygon(points: npt.ArrayLike, polygon: npt.ArrayLike) -> BoolArray:
    """bool [N]: whether each point (x, y) of ``points`` [N, 2] lies inside ``polygon`` [M, 2]
    (see :class:`Polygon`)."""
    return Polygon(polygon).contains(points)


def polygon_area(polygon: npt.ArrayLike) -> float:
    """The area enclosed by ``polygon`` [M, 2] (shoelace formula), whatever its orientation."""
    vertices = np.asarray(polygon, np.float64).reshape(-1, 2)
    x, y = vertices[:, 0], vertices[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def unit(vector: npt.ArrayLike) -> FloatArray:
    """``vector`` [..., 2] scaled to length 1 (zero vectors stay zero)."""
    v = np.asarray(vector, np.float64)
    length = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.asarray(np.divide(v, length, out=np.zeros_like(v), where=length > 0))


def signed_side(points: npt.ArrayLike, start: npt.ArrayLike, normal: npt.ArrayLike) -> FloatArray:
    """float64 [N]: how far each point is from the line through ``start`` with unit ``normal``,
    positive on the side the normal points to, 0 on the line."""
    xy = np.asarray(points, np.float64).reshape(-1, 2)
    return np.asarray((xy - np.asarray(start, np.float64)) @ np.asarray(normal, np.float64))


def crossing_positions(
    from_xy: npt.ArrayLike, to_xy: npt.ArrayLike, start: npt.ArrayLike, end: npt.ArrayLike
) -> FloatArray:
    """float64 [N]: where each path ``from_xy[i] → to_xy[i]`` meets the line through ``start``
    and ``end``, as a position along that line (0 at ``start``, 1 at ``end``); NaN for a path
    parallel to the line."""
    p = np.asarray(from_xy, np.float64).reshape(-1, 2)
    r = np.asarray(to_xy, np.float64).reshape(-1, 2) - p
    a = np.asarray(start, np.float64)
    s = np.asarray(end, np.float64) - a
    denominator = r[:, 0] * s[1] - r[:, 1] * s[0]
    numerator = (a[0] - p[:, 0]) * r[:, 1] - (a[1] - p[:, 1]) * r[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(denominator != 0, numerator / denominator, np.nan))
