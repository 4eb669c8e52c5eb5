"""Per-frame metadata: objects stored column-wise, with a per-object view for probes.

A frame's objects live in a handful of numpy arrays (:class:`Objects`), so that a batch with
hundreds of detections costs a few arrays rather than hundreds of Python objects. Probes that
prefer one object at a time use :class:`ObjectView`, a thin window onto one row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
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
    """

    __slots__ = (
        "class_id",
        "classifications",
        "component_id",
        "confidence",
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
        new_index = np.cumsum(mask) - 1
        kept_parent = self.parent[mask]
        has_parent = kept_parent != NO_ID
        # A parent that was removed leaves its children without one.
        parent_kept = np.zeros_like(has_parent)
        parent_kept[has_parent] = mask[kept_parent[has_parent]]
        kept_parent = np.where(parent_kept, new_index[np.maximum(kept_parent, 0)], NO_ID)
        rows = np.flatnonzero(mask)
        self.xyxy = self.xyxy[mask]
        self.confidence = self.confidence[mask]
        self.class_id = self.class_id[mask]
        self.track_id = self.track_id[mask]
        self.component_id = self.component_id[mask]
        self.parent = kept_parent.astype(np.int32)
        self.labels = [self.labels[i] for i in rows]
        self.extra = {name: column[mask] for name, column in self.extra.items()}
        self.classifications = [self.classifications[i] for i in rows]
        self.user_meta = [self.user_meta[i] for i in rows]
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

    def to_dicts(self) -> list[dict[str, Any]]:
        """Objects as plain dicts (the jsonl sink's ``objects``); bbox rounded to 0.1 px."""
        xyxy = np.round(self.xyxy.astype(np.float64), 1).tolist()
        conf = np.round(self.confidence.astype(np.float64), 4).tolist()
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
            if self.keypoints is not None:
                item["keypoints"] = np.round(self.keypoints[i].astype(np.float64), 1).tolist()
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


@dataclass
class DisplayMeta:
    """Extra drawing for the on-screen display, in original-frame pixels."""

    texts: list[tuple[str, tuple[float, float]]] = field(default_factory=list)
    lines: list[tuple[tuple[float, float], tuple[float, float]]] = field(default_factory=list)
    rectangles: list[tuple[float, float, float, float]] = field(default_factory=list)
    circles: list[tuple[tuple[float, float], float]] = field(default_factory=list)


@dataclass
class FrameMeta:
    """Everything known about one frame besides its pixels."""

    objects: Objects = field(default_factory=Objects)
    user_meta: dict[str, Any] = field(default_factory=dict)
    tensor_meta: list[TensorMeta] = field(default_factory=list)
    display_meta: DisplayMeta = field(default_factory=DisplayMeta)
    inferred_by: set[int] = field(default_factory=set)
    """``component_id`` of each model that ran on this frame (``interval`` skips some)."""
