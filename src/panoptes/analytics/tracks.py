"""What the analytics remember of each track of one stream: its recent positions and, per
rule, its state (inside a zone or not, lines already crossed, the direction it moves in).

Tracks are rows ("slots") of a few arrays, so that the rules update every object of a frame
with array operations rather than a loop over dicts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from panoptes.analytics.geometry import FloatArray

IntArray = npt.NDArray[np.int64]

HISTORY_FRAMES = 10
"""Positions kept per track (DeepStream's LAST_N_FRAMES)."""


class TrackTable:
    """The tracks of one stream, one slot per track id, with its last ``HISTORY_FRAMES``
    anchors (bottom centres, pixels) and named per-rule columns.

    Columns added with :meth:`add_column` are zeroed when a slot is given to a new track, so a
    new track starts outside every zone, having crossed nothing.
    """

    def __init__(self, capacity: int = 32) -> None:
        self.slots: dict[int, int] = {}
        self.track_id = np.full(capacity, -1, np.int64)
        self.points = np.zeros((capacity, HISTORY_FRAMES, 2), np.float64)
        self.seen = np.zeros(capacity, np.int64)
        """Frames each track was seen in."""
        self.last_time_s = np.zeros(capacity, np.float64)
        self.columns: dict[str, npt.NDArray[Any]] = {}
        self._free = list(range(capacity - 1, -1, -1))

    def __len__(self) -> int:
        return len(self.slots)

    @property
    def capacity(self) -> int:
        return len(self.track_id)

    def add_column(self, name: str, dtype: Any, shape: tuple[int, ...] = ()) -> None:
        """A per-track array ``columns[name]`` [capacity, *shape] of ``dtype``, zero for new
        tracks."""
        self.columns[name] = np.zeros((self.capacity, *shape), dtype)

    def observe(self, track_ids: IntArray, anchors: FloatArray, time_s: float) -> IntArray:
        """Record this frame's anchors [N, 2] of ``track_ids`` [N]; returns their slots [N]."""
        slots = np.empty(len(track_ids), np.int64)
        for index, track_id in enumerate(track_ids.tolist()):
            slot = self.slots.get(track_id)
            if slot is None:
                slot = self._allocate(track_id)
            slots[index] = slot
        position = self.seen[slots] % HISTORY_FRAMES
        self.points[slots, position] = anchors
        self.seen[slots] += 1
        self.last_time_s[slots] = time_s
        return slots

    def reference_points(self, slots: IntArray) -> FloatArray:
        """float64 [N, 2]: where each track was a little while ago, the mean of the oldest few
        (up to four) of its stored positions, to measure its movement against.

        Averaging several old positions, as DeepStream does, keeps a box's jitter from reading
        as movement.
        """
        seen = self.seen[slots]
        stored = np.minimum(seen, HISTORY_FRAMES)
        oldest = np.clip(stored // 2, 1, 4)
        offsets = np.arange(4)
        positions = (seen[:, None] - stored[:, None] + offsets[None, :]) % HISTORY_FRAMES
        points = self.points[slots[:, None], positions]
        weights = (offsets[None, :] < oldest[:, None]).astype(np.float64)
        return np.asarray(
            (points * weights[:, :, None]).sum(axis=1) / oldest[:, None].astype(np.float64)
        )

    def slot(self, track_id: int) -> int | None:
        return self.slots.get(track_id)

    def release(self, track_id: int) -> int | None:
        """Forget ``track_id``; returns the slot it had (its columns still readable until the
        slot is given to another track), or None when it was not known."""
        slot = self.slots.pop(track_id, None)
        if slot is not None:
            self.track_id[slot] = -1
            self._free.append(slot)
        return slot

    def stale(self, time_s: float, timeout_s: float) -> list[int]:
        """Track ids not seen for more than ``timeout_s`` seconds before ``time_s``."""
        used = self.track_id >= 0
        old = used & (time_s - self.last_time_s > timeout_s)
        return [int(t) for t in self.track_id[old]]

    def _allocate(self, track_id: int) -> int:
        if not self._free:
            self._grow()
        slot = self._free.pop()
        self.slots[track_id] = slot
        self.track_id[slot] = track_id
        self.seen[slot] = 0
        self.points[slot] = 0.0
        for column in self.columns.values():
            column[slot] = 0
        return slot

    def _grow(self) -> None:
        old = self.capacity
        new = 2 * old

        def grown(array: npt.NDArray[Any], fill: Any = 0) -> npt.NDArray[Any]:
            out = np.full((new, *array.shape[1:]), fill, array.dtype)
            out[:old] = array
            return out

        self.track_id = grown(self.track_id, -1)
        self.points = grown(self.points)
        self.seen = grown(self.seen)
        self.last_time_s = grown(self.last_time_s)
        self.columns = {name: grown(column) for name, column in self.columns.items()}
        self._free.extend(range(new - 1, old - 1, -1))
