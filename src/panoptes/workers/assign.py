"""Sharing streams out between workers: evenly by count when a run starts, by measured load
(decoded pixels per second) when a stream is added while it runs.

Everything here is plain bookkeeping on source ids, with no processes, so that the rules are
tested on their own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from panoptes.core.errors import ConfigError

__all__ = ["Placement", "Share", "split_evenly"]

_SHARE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Share:
    """One host's part of a config's sources, ``ordinal`` of ``count`` (``--share 2/4``): the
    sources whose index in the config is ``ordinal`` modulo ``count``. A StatefulSet's pods,
    ordinals 0 to count - 1, run every source once between them."""

    ordinal: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.ordinal < self.count:
            raise ConfigError(
                f"--share {self}: the ordinal must be 0 to {self.count - 1} of a count of at "
                "least 1 (e.g. 2/4: the third of four shares)"
            )

    @classmethod
    def parse(cls, text: str) -> Share:
        """``"2/4"`` → ``Share(2, 4)``; a ConfigError names what is wrong."""
        found = _SHARE.match(text)
        if found is None:
            raise ConfigError(
                f"--share {text!r}: expected ORDINAL/COUNT, e.g. 2/4 (a StatefulSet pod's "
                "ordinal and the number of replicas)"
            )
        return cls(int(found.group(1)), int(found.group(2)))

    def indices(self, total: int) -> list[int]:
        """The indices of this share among ``total`` sources."""
        return list(range(self.ordinal, total, self.count))

    def __str__(self) -> str:
        return f"{self.ordinal}/{self.count}"


def split_evenly(count: int, workers: int) -> list[list[int]]:
    """Indices ``0 .. count - 1`` dealt round robin to ``workers`` lists: sizes differ by one at
    most, and neighbouring sources of a config (often alike: the cameras of one site) land on
    different workers."""
    if workers < 1:
        raise ValueError(f"workers must be 1 or more, not {workers}")
    return [list(range(worker, count, workers)) for worker in range(workers)]


class Placement:
    """Which worker holds each stream, and each stream's measured load.

    A load is any rate that grows with the work a stream costs; the supervisor gives decoded
    pixels per second (frames per second times width times height). A stream not measured yet
    counts as the mean of the measured ones, so that streams added in a row do not all go to
    the same worker before the first is measured.
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be 1 or more, not {workers}")
        self.workers = workers
        self._owner: dict[int, int] = {}
        self._load: dict[int, float | None] = {}

    def assign(self, source_id: int, worker: int, load: float | None = None) -> None:
        """Put ``source_id`` on ``worker`` (moving it there if it was elsewhere)."""
        if not 0 <= worker < self.workers:
            raise ValueError(f"no worker {worker}: there are {self.workers}")
        self._owner[source_id] = worker
        self._load[source_id] = load

    def place(self, source_id: int, *, available: Iterable[int] | None = None) -> int:
        """Put a new stream on the least loaded worker (of ``available``, default all) and
        return that worker."""
        worker = self.least_loaded(available)
        self.assign(source_id, worker)
        return worker

    def remove(self, source_id: int) -> int:
        """Forget ``source_id``; returns the worker that held it. KeyError when none did."""
        self._load.pop(source_id, None)
        return self._owner.pop(source_id)

    def owner(self, source_id: int) -> int:
        """The worker holding ``source_id``; KeyError when none does."""
        return self._owner[source_id]

    def streams_of(self, worker: int) -> list[int]:
        return sorted(sid for sid, owner in self._owner.items() if owner == worker)

    def set_load(self, source_id: int, load: float | None) -> None:
        """Record a stream's latest measured load (None: not measured)."""
        if source_id in self._owner:
            self._load[source_id] = load

    def set_loads(self, loads: Mapping[int, float | None]) -> None:
        for source_id, load in loads.items():
            self.set_load(source_id, load)

    def load_of(self, worker: int) -> float:
        """The sum of the loads of ``worker``'s streams, unmeasured ones at the mean."""
        measured = [load for load in self._load.values() if load is not None]
        default = sum(measured) / len(measured) if measured else 1.0
        return sum(
            default if self._load[sid] is None else float(self._load[sid] or 0.0)
            for sid in self.streams_of(worker)
        )

    def least_loaded(self, available: Iterable[int] | None = None) -> int:
        """The worker with the least load, then the fewest streams, then the lowest index."""
        candidates = list(range(self.workers) if available is None else available)
        if not candidates:
            raise ValueError("no worker is available")
        return min(candidates, key=lambda w: (self.load_of(w), len(self.streams_of(w)), w))
