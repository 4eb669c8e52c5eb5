"""The pipeline's streams as the HTTP API shows them: counters, a frame rate over the last few
seconds, latency percentiles, and the DeepStream camera ids of the streams added that way."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from panoptes.core.errors import PipelineError
from panoptes.core.pipeline import Pipeline
from panoptes.core.streams import Stream, StreamState

LATENCY_QUANTILES = (0.5, 0.95, 0.99)

_SHOWN_AFTER_LEAVING = frozenset({StreamState.FAILED.value, StreamState.ENDED.value})
"""States in which a stream that left the pipeline is still listed, until deleted: a camera that
could not be opened shows as failed instead of vanishing."""


class UnknownStreamError(PipelineError, LookupError):
    """No stream has the id or camera id asked for."""


class DuplicateCameraError(PipelineError):
    """A DeepStream camera id is already in use by a stream still in the pipeline."""


@dataclass(frozen=True)
class StreamRow:
    """One stream as listed by ``GET /api/v1/streams``."""

    source_id: int
    name: str
    uri: str
    state: str
    fps: float | None
    """Frames out per second over the last few seconds; None until measured."""
    frames_out: int
    frames_decoded: int
    dropped: int
    corrupt: int
    errors: int
    reconnects: int
    latency_s: dict[str, float] | None
    """Capture-to-output latency percentiles over recent frames, keyed ``"p50"``, ``"p95"``,
    ``"p99"``; None while no frame came out."""
    error: str | None
    camera_id: str
    """DeepStream's id of the camera: the one given to ``/api/v1/stream/add``, else the
    source id as text."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _FrameRate:
    """Frames per second of one counter over the last ``window_s`` seconds, from samples taken
    whenever the streams are listed (and every second by the server)."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def update(self, now_s: float, frames: int) -> float | None:
        samples = self._samples
        samples.append((now_s, frames))
        # Keep one sample at or before the window's start, so the rate spans the whole window.
        while len(samples) > 2 and samples[1][0] <= now_s - self.window_s:
            samples.popleft()
        start_s, start_frames = samples[0]
        if now_s - start_s < 0.25:
            return None
        return max(0, frames - start_frames) / (now_s - start_s)


class StreamTable:
    """Lists, adds and removes the streams of ``pipeline``; thread-safe.

    Streams that left the pipeline failed or ended stay listed until deleted; removed ones
    leave at once.
    """

    def __init__(self, pipeline: Pipeline, *, window_s: float = 5.0) -> None:
        self.pipeline = pipeline
        self.window_s = window_s
        self._lock = threading.Lock()
        self._rates: dict[int, _FrameRate] = {}
        self._dismissed: set[int] = set()
        self._camera_ids: dict[str, int] = {}

    # -- listing --------------------------------------------------------------------------------

    def rows(self) -> list[StreamRow]:
        """Every listed stream, by source id."""
        now_s = time.monotonic()
        rows: list[StreamRow] = []
        with self._lock:  # add() holds it too: a stream it adds is never half-known here
            live = {stream.source_id for stream in self.pipeline.streams()}
            for stream in self.pipeline.all_streams():
                source_id = stream.source_id
                if source_id in self._dismissed or stream.state is StreamState.REMOVED:
                    continue
                if source_id not in live and stream.state.value not in _SHOWN_AFTER_LEAVING:
                    continue
                rate = self._rates.setdefault(source_id, _FrameRate(self.window_s))
                fps = rate.update(now_s, stream.stats.frames_out)
                rows.append(self._row(stream, fps if source_id in live else 0.0))
            self._forget_gone({row.source_id for row in rows} | live)
        return rows

    def row(self, source_id: int) -> StreamRow:
        for row in self.rows():
            if row.source_id == source_id:
                return row
        raise UnknownStreamError(f"no stream with id {source_id}")

    def _camera_id(self, source_id: int) -> str:
        for camera_id, known in self._camera_ids.items():
            if known == source_id:
                return camera_id
        return str(source_id)

    def _row(self, stream: Stream, fps: float | None) -> StreamRow:
        stats = stream.stats
        latencies = list(stats.latency_s)  # one C call: safe against the appending thread
        latency_s = None
        if latencies:
            values = np.quantile(np.asarray(latencies), LATENCY_QUANTILES)
            latency_s = {
                f"p{round(q * 100)}": float(v)
                for q, v in zip(LATENCY_QUANTILES, values, strict=True)
            }
        return StreamRow(
            source_id=stream.source_id,
            name=stream.name,
            uri=stream.uri,
            state=stream.state.value,
            fps=fps,
            frames_out=stats.frames_out,
            frames_decoded=stats.frames_decoded,
            dropped=stats.dropped,
            corrupt=stats.corrupt,
            errors=stats.errors,
            reconnects=stats.reconnects,
            latency_s=latency_s,
            error=stream.error,
            camera_id=self._camera_id(stream.source_id),
        )

    def _forget_gone(self, kept: set[int]) -> None:
        """Drop the state of streams neither listed nor in the pipeline (removed, deleted)."""
        for source_id in [key for key in self._rates if key not in kept]:
            del self._rates[source_id]
        for camera_id, source_id in list(self._camera_ids.items()):
            if source_id not in kept:
                del self._camera_ids[camera_id]

    # -- changing -------------------------------------------------------------------------------

    def add(self, props: Any, *, camera_id: str | None = None) -> int:
        """Add a source (its properties, or a dict like one entry of ``sources``); returns its
        source id. Raises ConfigError for a malformed URI, PipelineError when the pipeline
        has ended, DuplicateCameraError for a camera id in use."""
        if self.pipeline.finished:
            raise PipelineError("the pipeline has ended; start it again to add streams")
        with self._lock:
            if camera_id is not None and camera_id in self._camera_ids:
                previous = self._camera_ids[camera_id]
                live = {
                    stream.source_id
                    for stream in self.pipeline.streams()
                    if stream.state is not StreamState.REMOVED
                }
                if previous in live:
                    raise DuplicateCameraError(
                        f"camera_id {camera_id!r} is already stream {previous}; remove it first "
                        "or choose another camera_id"
                    )
                self._dismissed.add(previous)
                del self._camera_ids[camera_id]
            source_id = self.pipeline.add_source(props)
            if camera_id is not None:
                self._camera_ids[camera_id] = source_id
        return source_id

    def remove(self, source_id: int) -> None:
        """Remove a stream from the pipeline, or from the list when it already left (failed or
        ended). Raises UnknownStreamError for an id that is not listed."""
        # Checked first: a stream removed a moment ago is still in the pipeline (until the mux
        # announces it) and removing it again would succeed there.
        if source_id not in {row.source_id for row in self.rows()}:
            raise UnknownStreamError(f"no stream with id {source_id}")
        with contextlib.suppress(PipelineError):  # it ended or failed since: dismissed below
            self.pipeline.remove_source(source_id)
        with self._lock:
            self._dismissed.add(source_id)
            for camera_id, known in list(self._camera_ids.items()):
                if known == source_id:
                    del self._camera_ids[camera_id]

    def find_camera(self, camera_id: str | None, camera_url: str | None) -> int:
        """The source id of a DeepStream camera: by the camera id it was added with (or a source
        id as text), else by its URL. Raises UnknownStreamError."""
        rows = self.rows()
        with self._lock:
            if camera_id is not None and camera_id in self._camera_ids:
                return self._camera_ids[camera_id]
        return find_camera(rows, camera_id, camera_url)


def find_camera(rows: Sequence[StreamRow], camera_id: str | None, camera_url: str | None) -> int:
    """The source id of the row of a DeepStream camera: by its camera id (or source id as text),
    else by its URL. Raises UnknownStreamError."""
    for row in rows:
        if camera_id is not None and row.camera_id == camera_id:
            return row.source_id
    for row in rows:
        if camera_url is not None and row.uri == camera_url:
            return row.source_id
    asked = " or ".join(
        f"{key} {value!r}"
        for key, value in (("camera_id", camera_id), ("camera_url", camera_url))
        if value is not None
    )
    raise UnknownStreamError(f"no stream with {asked}")
