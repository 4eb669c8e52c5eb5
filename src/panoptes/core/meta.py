"""Per-frame metadata: objects stored column-wise, with a per-object view for probes.

A frame's objects live in a handful of numpy arrays (:class:`Objects`), so that a batch with
hundreds of detections costs a few arrays rather than hundreds of Python objects. Probes that
prefer one object at a time use :class:`ObjectView`, a thin window onto one row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from panoptes.core.geometry import Letterbox

NO_ID = -1
"""Value of ``track_id`` and ``parent`` when an object has none."""


class Objects:
    """The objects of one frame, one row per object.

    Columns:
        xyxy: float32 [N, 4], box corners in pixels of the original frame.
        confidence: float32 [N], detector score in [0, 1].
        class_id: int32 [N], class index of the model that made the object.
        track_id: int64 [N], id given by a tracker, ``NO_ID`` (-1) when untracked.
        component_id: int32 [N], ``gie_id`` of the model (or element) that made the object.
        parent: int32 [N], row of the object this one was derived from (secondary models),
            ``NO_ID`` when none.
        labels: list[str] of N, the class names.
        extra: named float32/int columns added by later elements (a tracker's ``track_age``).
        classifications: per-object lists of (component_id, label, confidence) from classifiers.
        keypoints: float32 [N, K, 3] (x, y, visibility) in original-frame pixels, or None.
        user_meta: per-object dicts for probes, created on first use.
        display_text: per-object text for the osd, None for the default (``person 0.93 #12``).
    """

    __slots__ = (
        "class_id",
        "classifications",
        "component_id",
        "confidence",
        "display_text",
        "extra",
        "keypoints",
        "labels",
        "parent",
        "track_id",
        "user_meta",
        "xyxy",
    )

    def __init__(self) -> None:
        self.xyxy = np.zeros((0, 4), np.float32)
        self.confidence = np.zeros(0, np.float32)
        self.class_id = np.zeros(0, np.int32)
        self.track_id = np.zeros(0, np.int64)
        self.component_id = np.zeros(0, np.int32)
        self.parent = np.zeros(0, np.int32)
        self.labels: list[str] = []
        self.extra: dict[str, np.ndarray] = {}
        self.classifications: list[list[tuple[int, str, float]]] = []
        self.keypoints: np.ndarray | None = None
        self.user_meta: list[dict[str, Any] | None] = []
        self.display_text: list[str | None] = []

    def __len__(self) -> int:
        return len(self.confidence)

    def __iter__(self) -> Iterator[ObjectView]:
        return (ObjectView(self, i) for i in range(len(self)))

    def __getitem__(self, index: int) -> ObjectView:
        if not -len(self) <= index < len(self):
            raise IndexError(f"object {index} out of range ({len(self)} objects)")
        return ObjectView(self, index % len(self))

    def add(
        self,
        xyxy: np.ndarray,
        confidence: np.ndarray,
        class_id: np.ndarray,
        labels: Sequence[str],
        *,
        component_id: int = 0,
        track_id: np.ndarray | None = None,
        parent: np.ndarray | None = None,
        keypoints: np.ndarray | None = None,
    ) -> None:
        """Append N objects given as columns (xyxy [N, 4] in original-frame pixels)."""
        n = len(confidence)
        if n == 0:
            return
        n_before = len(self)
        self.xyxy = np.concatenate([self.xyxy, np.asarray(xyxy, np.float32).reshape(n, 4)])
        self.confidence = np.concatenate([self.confidence, np.asarray(confidence, np.float32)])
        self.class_id = np.concatenate([self.class_id, np.asarray(class_id, np.int32)])
        ids = np.full(n, NO_ID, np.int64) if track_id is None else np.asarray(track_id, np.int64)
        self.track_id = np.concatenate([self.track_id, ids])
        self.component_id = np.concatenate([self.component_id, np.full(n, component_id, np.int32)])
        parents = np.full(n, NO_ID, np.int32) if parent is None else np.asarray(parent, np.int32)
        self.parent = np.concatenate([self.parent, parents])
        self.labels.extend(labels)
        for name, column in self.extra.items():
            self.extra[name] = np.concatenate([column, np.zeros(n, column.dtype)])
        self.classifications.extend([] for _ in range(n))
        self.user_meta.extend([None] * n)
        self.display_text.extend([None] * n)
        if keypoints is not None or self.keypoints is not None:
            k = keypoints.shape[1] if keypoints is not None else self.keypoints.shape[1]  # type: ignore[union-attr]
            old = (
                self.keypoints
                if self.keypoints is not None
                else np.zeros((n_before, k, 3), np.float32)
            )
            new = keypoints if keypoints is not None else np.zeros((n, k, 3), np.float32)
            self.keypoints = np.concatenate([old, np.asarray(new, np.float32)])

    def keep(self, mask: np.ndarray | Sequence[bool]) -> None:
        """Keep only the rows where ``mask`` is true (a bool array [N]); parents are renumbered."""
        mask = np.asarray(mask, bool)
        if mask.shape != (len(self),):
            raise ValueError(f"mask has shape {mask.shape}, expected ({len(self)},)")
        kept_parent = self.parent[mask]
        has_parent = kept_parent != NO_ID
        if has_parent.any():
            # A parent that was removed leaves its children without one.
            new_index = np.cumsum(mask) - 1
            parent_kept = np.zeros_like(has_parent)
            parent_kept[has_parent] = mask[kept_parent[has_parent]]
            kept_parent = np.where(parent_kept, new_index[np.maximum(kept_parent, 0)], NO_ID)
        rows = np.flatnonzero(mask).tolist()
        self.xyxy = self.xyxy[mask]
        self.confidence = self.confidence[mask]
        self.class_id = self.class_id[mask]
        self.track_id = self.track_id[mask]
        self.component_id = self.component_id[mask]
        self.parent = kept_parent.astype(np.int32, copy=False)
        self.labels = [self.labels[i] for i in rows]
        self.extra = {name: column[mask] for name, column in self.extra.items()}
        self.classifications = [self.classifications[i] for i in rows]
        self.user_meta = [self.user_meta[i] for i in rows]
        self.display_text = [self.display_text[i] for i in rows]
        if self.keypoints is not None:
            self.keypoints = self.keypoints[mask]

    def remove(self, index: int) -> None:
        """Remove the object at row ``index``."""
        mask = np.ones(len(self), bool)
        mask[index] = False
        self.keep(mask)

    def column(self, name: str, dtype: Any = np.float32) -> np.ndarray:
        """An extra column by name, created (zero-filled) on first use."""
        if name not in self.extra:
            self.extra[name] = np.zeros(len(self), dtype)
        return self.extra[name]

    def transformed(self, transform: Letterbox) -> Objects:
        """A copy whose boxes and keypoints are mapped by ``transform`` (e.g. into a tile)."""
        out = self.copy()
        out.xyxy = transform.to_destination(self.xyxy)
        if self.keypoints is not None:
            out.keypoints = self.keypoints.copy()
            out.keypoints[..., :2] = transform.points_to_destination(self.keypoints[..., :2])
        return out

    def copy(self) -> Objects:
        """A copy: new arrays and lists; user metadata dicts are shared."""
        out = Objects()
        out.xyxy = self.xyxy.copy()
        out.confidence = self.confidence.copy()
        out.class_id = self.class_id.copy()
        out.track_id = self.track_id.copy()
        out.component_id = self.component_id.copy()
        out.parent = self.parent.copy()
        out.labels = list(self.labels)
        out.extra = {name: column.copy() for name, column in self.extra.items()}
        out.classifications = [list(c) for c in self.classifications]
        out.keypoints = None if self.keypoints is None else self.keypoints.copy()
        out.user_meta = list(self.user_meta)
        out.display_text = list(self.display_text)
        return out

    @classmethod
    def concatenate(cls, parts: Sequence[Objects]) -> Objects:
        """The objects of several frames as one set (parents renumbered to the new rows)."""
        out = cls()
        if not parts:
            return out
        offsets = np.cumsum([0, *(len(p) for p in parts)])[:-1]
        out.xyxy = np.concatenate([p.xyxy for p in parts])
        out.confidence = np.concatenate([p.confidence for p in parts])
        out.class_id = np.concatenate([p.class_id for p in parts])
        out.track_id = np.concatenate([p.track_id for p in parts])
        out.component_id = np.concatenate([p.component_id for p in parts])
        out.parent = np.concatenate(
            [
                np.where(p.parent == NO_ID, NO_ID, p.parent + offset)
                for p, offset in zip(parts, offsets, strict=True)
            ]
        ).astype(np.int32)
        out.labels = [label for p in parts for label in p.labels]
        names = {name: p.extra[name].dtype for p in parts for name in p.extra}
        out.extra = {
            name: np.concatenate(
                [p.extra[name] if name in p.extra else np.zeros(len(p), dtype) for p in parts]
            )
            for name, dtype in names.items()
        }
        out.classifications = [c for p in parts for c in p.classifications]
        out.user_meta = [m for p in parts for m in p.user_meta]
        out.display_text = [t for p in parts for t in p.display_text]
        widths = {p.keypoints.shape[1] for p in parts if p.keypoints is not None}
        if len(widths) == 1:
            (k,) = widths
            out.keypoints = np.concatenate(
                [
                    p.keypoints if p.keypoints is not None else np.zeros((len(p), k, 3), np.float32)
                    for p in parts
                ]
            )
        return out

    def to_dicts(self) -> list[dict[str, Any]]:
        """Objects as plain dicts (the jsonl sink's ``objects``); bbox rounded to 0.1 px.

        Extra columns (a tracker's ``track_age``, ``tracker_confidence``, ``tracker_only``) are
        written under their own names.
        """
        xyxy = np.round(self.xyxy.astype(np.float64), 1).tolist()
        conf = np.round(self.confidence.astype(np.float64), 4).tolist()
        extra = {
            name: (
                np.round(column.astype(np.float64), 4).tolist()
                if np.issubdtype(column.dtype, np.floating)
                else column.tolist()
            )
            for name, column in self.extra.items()
        }
        keypoints = None
        if self.keypoints is not None:
            # x, y to 0.1 px like the boxes; visibility to 0.01.
            rounded = self.keypoints.astype(np.float64)
            rounded[..., :2] = np.round(rounded[..., :2], 1)
            rounded[..., 2] = np.round(rounded[..., 2], 2)
            keypoints = rounded.tolist()
        out: list[dict[str, Any]] = []
        for i in range(len(self)):
            track = int(self.track_id[i])
            item: dict[str, Any] = {
                "class_id": int(self.class_id[i]),
                "label": self.labels[i],
                "confidence": conf[i],
                "bbox": xyxy[i],
                "track_id": None if track == NO_ID else track,
            }
            if self.parent[i] != NO_ID:
                item["parent"] = int(self.parent[i])
            if self.classifications[i]:
                item["classifications"] = [
                    {"component_id": c, "label": label, "confidence": round(score, 4)}
                    for c, label, score in self.classifications[i]
                ]
            if keypoints is not None:
                item["keypoints"] = keypoints[i]
            for name, values in extra.items():
                item[name] = values[i]
            if self.user_meta[i]:
                item["user_meta"] = self.user_meta[i]
            out.append(item)
        return out


class ObjectView:
    """One object of a frame; reads and writes go to the frame's columns."""

    __slots__ = ("_index", "_objects")

    def __init__(self, objects: Objects, index: int) -> None:
        self._objects = objects
        self._index = index

    @property
    def index(self) -> int:
        return self._index

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """(x1, y1, x2, y2) in original-frame pixels."""
        x1, y1, x2, y2 = self._objects.xyxy[self._index].tolist()
        return (x1, y1, x2, y2)

    @bbox.setter
    def bbox(self, xyxy: Sequence[float]) -> None:
        self._objects.xyxy[self._index] = xyxy

    @property
    def confidence(self) -> float:
        return float(self._objects.confidence[self._index])

    @confidence.setter
    def confidence(self, value: float) -> None:
        self._objects.confidence[self._index] = value

    @property
    def class_id(self) -> int:
        return int(self._objects.class_id[self._index])

    @class_id.setter
    def class_id(self, value: int) -> None:
        self._objects.class_id[self._index] = value

    @property
    def label(self) -> str:
        return self._objects.labels[self._index]

    @label.setter
    def label(self, value: str) -> None:
        self._objects.labels[self._index] = value

    @property
    def track_id(self) -> int | None:
        track = int(self._objects.track_id[self._index])
        return None if track == NO_ID else track

    @property
    def component_id(self) -> int:
        return int(self._objects.component_id[self._index])

    @property
    def parent(self) -> ObjectView | None:
        row = int(self._objects.parent[self._index])
        return None if row == NO_ID else ObjectView(self._objects, row)

    @property
    def classifications(self) -> list[tuple[int, str, float]]:
        """(component_id, label, confidence) from secondary classifiers."""
        return self._objects.classifications[self._index]

    @property
    def keypoints(self) -> np.ndarray | None:
        """float32 [K, 3] (x, y, visibility) in original-frame pixels, or None."""
        kp = self._objects.keypoints
        return None if kp is None else kp[self._index]

    @property
    def display_text(self) -> str | None:
        """Text the osd draws for this object; None draws the default (``person 0.93 #12``)."""
        return self._objects.display_text[self._index]

    @display_text.setter
    def display_text(self, value: str | None) -> None:
        self._objects.display_text[self._index] = value

    def get(self, column: str) -> float | int | None:
        """An extra column's value (``obj.get("track_age")``), None when the column is absent."""
        values = self._objects.extra.get(column)
        return None if values is None else values[self._index].item()

    @property
    def user_meta(self) -> dict[str, Any]:
        """A dict for the probe's own data, carried with the object to later elements."""
        meta = self._objects.user_meta[self._index]
        if meta is None:
            meta = self._objects.user_meta[self._index] = {}
        return meta

    def __repr__(self) -> str:
        box = ", ".join(f"{v:.1f}" for v in self.bbox)
        track = f" #{self.track_id}" if self.track_id is not None else ""
        return f"<{self.label} {self.confidence:.2f}{track} [{box}]>"


@dataclass
class TensorMeta:
    """Raw output tensors of one model for one frame (``output_tensor_meta``).

    ``tensors`` maps output names to this frame's slice (batch dimension removed);
    ``letterbox`` maps original-frame pixels to the network input's pixels, so that a probe can
    take coordinates from the tensors back to the frame with ``letterbox.to_source``.
    """

    component_id: int
    model: str
    tensors: dict[str, np.ndarray]
    letterbox: Letterbox
    input_size_wh: tuple[int, int]


Color = tuple[int, int, int]
"""(R, G, B), 0 to 255."""

COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip
"""Keypoint pairs joined by the skeleton of COCO's 17 person keypoints (nose, eyes, ears,
shoulders, elbows, wrists, hips, knees, ankles), as YOLO-Pose models output them."""


@dataclass
class DisplayText:
    text: str
    xy: tuple[float, float]
    """Top-left corner of the text, in original-frame pixels."""
    color: Color = (255, 255, 255)
    font_scale: float | None = None
    """None: the osd's ``font_scale``."""
    background: Color | None = (0, 0, 0)


@dataclass
class DisplayLine:
    xy1: tuple[float, float]
    xy2: tuple[float, float]
    color: Color = (0, 255, 0)
    thickness: int = 2


@dataclass
class DisplayRect:
    xyxy: tuple[float, float, float, float]
    color: Color = (0, 255, 0)
    thickness: int = 2
    """Border width in pixels; -1 fills the rectangle."""
    alpha: float = 1.0
    """Opacity of a filled rectangle (0.3 shades a zone)."""


@dataclass
class DisplayCircle:
    center: tuple[float, float]
    radius: float
    color: Color = (0, 255, 0)
    thickness: int = 2
    """Border width in pixels; -1 fills the circle."""


@dataclass
class DisplaySkeleton:
    keypoints: np.ndarray
    """float32 [K, 3] (x, y, visibility) in original-frame pixels."""
    edges: Sequence[tuple[int, int]] = COCO_SKELETON
    color: Color = (255, 128, 0)
    min_visibility: float = 0.5
    """Keypoints less visible than this are not drawn."""


@dataclass
class DisplayMeta:
    """Extra drawing for the on-screen display, in original-frame pixels, added by probes.

    ``frame.meta.display_meta.add_text("queue: 4", (10, 10))`` and friends; the osd draws them
    after the objects' boxes.
    """

    texts: list[DisplayText] = field(default_factory=list)
    lines: list[DisplayLine] = field(default_factory=list)
    rectangles: list[DisplayRect] = field(default_factory=list)
    circles: list[DisplayCircle] = field(default_factory=list)
    skeletons: list[DisplaySkeleton] = field(default_factory=list)

    def add_text(self, text: str, xy: tuple[float, float], **style: Any) -> DisplayText:
        item = DisplayText(text, (float(xy[0]), float(xy[1])), **style)
        self.texts.append(item)
        return item

    def add_line(
        self, xy1: tuple[float, float], xy2: tuple[float, float], **style: Any
    ) -> DisplayLine:
        item = DisplayLine((float(xy1[0]), float(xy1[1])), (float(xy2[0]), float(xy2[1])), **style)
        self.lines.append(item)
        return item

    def add_rectangle(self, xyxy: Sequence[float], **style: Any) -> DisplayRect:
        x1, y1, x2, y2 = (float(v) for v in xyxy)
        item = DisplayRect((x1, y1, x2, y2), **style)
        self.rectangles.append(item)
        return item

    def add_circle(self, center: tuple[float, float], radius: float, **style: Any) -> DisplayCircle:
        item = DisplayCircle((float(center[0]), float(center[1])), float(radius), **style)
        self.circles.append(item)
        return item

    def add_skeleton(self, keypoints: np.ndarray, **style: Any) -> DisplaySkeleton:
        item = DisplaySkeleton(np.asarray(keypoints, np.float32).reshape(-1, 3), **style)
        self.skeletons.append(item)
        return item

    def __len__(self) -> int:
        return (
            len(self.texts)
            + len(self.lines)
            + len(self.rectangles)
            + len(self.circles)
            + len(self.skeletons)
        )

    def transformed(self, transform: Letterbox) -> DisplayMeta:
        """A copy with every coordinate mapped by ``transform`` (sizes scaled by its x scale)."""
        scale = transform.scale_xy[0]

        def point(xy: tuple[float, float]) -> tuple[float, float]:
            x, y = transform.points_to_destination(np.array(xy, np.float32)).tolist()
            return (x, y)

        out = DisplayMeta()
        out.texts = [replace(t, xy=point(t.xy)) for t in self.texts]
        out.lines = [replace(line, xy1=point(line.xy1), xy2=point(line.xy2)) for line in self.lines]
        out.rectangles = [
            replace(r, xyxy=tuple(transform.to_destination(np.array(r.xyxy, np.float32)).tolist()))
            for r in self.rectangles
        ]
        out.circles = [
            replace(c, center=point(c.center), radius=c.radius * scale) for c in self.circles
        ]
        skeletons = []
        for skeleton in self.skeletons:
            keypoints = skeleton.keypoints.copy()
            keypoints[:, :2] = transform.points_to_destination(keypoints[:, :2])
            skeletons.append(replace(skeleton, keypoints=keypoints))
        out.skeletons = skeletons
        return out

    def extend(self, other: DisplayMeta) -> None:
        self.texts.extend(other.texts)
        self.lines.extend(other.lines)
        self.rectangles.extend(other.rectangles)
        self.circles.extend(other.circles)
        self.skeletons.extend(other.skeletons)


@dataclass
class AnalyticsEvent:
    """Something the analytics saw happen on one frame: a track entered or left a zone, crossed
    a line, a zone became overcrowded (or stopped being), a track moved in a named direction.

    Message converters turn these into payloads (``mode: events``); smart recording starts a clip
    on them.
    """

    kind: str
    """``"entered"``, ``"exited"``, ``"crossed"``, ``"overcrowded"``, ``"overcrowding-ended"``
    or ``"direction"``."""
    rule: str
    """Name of the zone, line or direction rule it belongs to."""
    source_id: int
    frame_num: int
    track_id: int | None = None
    """The tracked object concerned; None for zone-wide events (overcrowding)."""
    label: str | None = None
    class_id: int | None = None
    direction: str | None = None
    """A crossing's or a movement's direction name (``"in"``, ``"out"``, ``"north"``...)."""
    count: int | None = None
    """Objects in the zone (overcrowding) or the rule's running count after this event."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else worth sending (a recorded clip's path, a probe's data)."""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "rule": self.rule}
        for key in ("track_id", "label", "class_id", "direction", "count"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        data.update(self.extra)
        return data


@dataclass(frozen=True)
class RecordingRequest:
    """A probe's request for a clip of its frame's stream (``frame.request_recording()``)."""

    before_s: float | None = None
    """Seconds of the stream before the frame; None: the ``record`` section's ``before_s``."""
    after_s: float | None = None
    """Seconds after the frame; None: the ``record`` section's ``after_s``."""


@dataclass
class FrameMeta:
    """Everything known about one frame besides its pixels."""

    objects: Objects = field(default_factory=Objects)
    user_meta: dict[str, Any] = field(default_factory=dict)
    tensor_meta: list[TensorMeta] = field(default_factory=list)
    display_meta: DisplayMeta = field(default_factory=DisplayMeta)
    inferred_by: set[int] = field(default_factory=set)
    """``component_id`` of each model that ran on this frame (``interval`` skips some)."""
    snapshot_requested: bool = False
    """Set by a probe (``frame.request_snapshot()``) to have ``snapshot`` sinks save this frame."""
    recording_request: RecordingRequest | None = None
    """Set by a probe (``frame.request_recording()``) to have the ``record`` element save a clip."""
    analytics: dict[str, Any] = field(default_factory=dict)
    """The analytics' state on this frame, by rule name: zone occupancy, line counts per class
    and direction, overcrowding state (see :mod:`panoptes.analytics`)."""
    events: list[AnalyticsEvent] = field(default_factory=list)
    """Events raised on this frame (analytics, or a probe's own)."""
