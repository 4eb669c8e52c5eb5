"""The worker process: one pipeline on its share of the streams, reporting to the supervisor.

It talks to the supervisor over a ``multiprocessing`` pipe, in ``(kind, payload)`` pairs:

- to the supervisor: ``ready`` (built), ``failed`` (the build failed: a bad model, an output
  that cannot be written), ``stats`` (every ``stats_interval_s``: its streams as
  :class:`~panoptes.server.streams.StreamRow`, with element counters and memory), ``message``
  (its bus messages but PERF), ``reply`` (to ``add`` and ``remove``) and ``done`` (the
  pipeline reached end of stream; the process exits after it);
- from the supervisor: ``start``, ``add`` (a source and the id it takes), ``remove`` and
  ``stop`` (drain and close, as Ctrl-C does).

SIGINT and SIGTERM stop it cleanly too (Ctrl-C in a terminal reaches every process of the
group), and a supervisor that goes away (its end of the pipe closes) stops it as well.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from panoptes.core.bus import Message, MessageType
from panoptes.core.element import ElementProperties
from panoptes.core.errors import PanoptesError
from panoptes.core.frame import Batch
from panoptes.core.pipeline import Pipeline
from panoptes.server.streams import StreamTable
from panoptes.workers.spec import WorkerSpec

__all__ = ["WorkerPipeline", "run_worker"]

_PLAIN = (str, int, float, bool, type(None))


class WorkerPipeline(Pipeline):
    """A pipeline whose streams take the ids the supervisor gives them (their index in the
    whole config), so that every worker's outputs, logs and REST rows agree on them."""

    def __init__(
        self, config: Any, *, source_ids: Sequence[int], base_dir: str | Path | None = None
    ) -> None:
        self._given_ids = deque(source_ids)
        self._ids_lock = threading.Lock()
        super().__init__(config, base_dir=base_dir)

    def add_source(
        self,
        props: ElementProperties | Mapping[str, Any],
        *,
        place: str | None = None,
        source_id: int | None = None,
    ) -> int:
        """As :meth:`Pipeline.add_source`, with the stream's id given (by default the next of
        the ids the pipeline was made with)."""
        with self._ids_lock:
            if source_id is None and self._given_ids:
                source_id = self._given_ids.popleft()
        if source_id is None:
            return super().add_source(props, place=place)
        return super().add_source(props, place=f"sources[{source_id}]", source_id=source_id)


class _Link:
    """The worker's end of the pipe: sends from any thread; a closed pipe is noted, once."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.lock = threading.Lock()
        self.closed = threading.Event()

    def send(self, kind: str, payload: Any) -> None:
        if self.closed.is_set():
            return
        try:
            with self.lock:
                self.connection.send((kind, payload))
        except (OSError, ValueError):  # the supervisor is gone: the worker stops
            self.closed.set()

    def recv(self) -> tuple[str, Any]:
        kind, payload = self.connection.recv()
        return str(kind), payload


def _plain(value: Any) -> Any:
    """``value`` with what may not pickle (an exception, a path) turned into text."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return str(value)


def _memory_bytes() -> int | None:
    """Resident memory of this process (Linux), for the supervisor's /metrics."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _report(pipeline: WorkerPipeline, table: StreamTable, sizes: dict[int, Any]) -> dict[str, Any]:
    """The ``stats`` payload: every stream's row, what each will deliver, its frame size, and
    the elements' counters."""
    times = os.times()
    return {
        "rows": table.rows(),
        "expected_frames": {
            stream.source_id: stream.stats.expected_frames for stream in pipeline.all_streams()
        },
        "sizes_wh": dict(sizes),
        "elements": [asdict(stats) for stats in pipeline.element_stats()],
        "elapsed_s": pipeline.elapsed_s(),
        "memory_bytes": _memory_bytes(),
        "cpu_s": times.user + times.system,
    }


def _serve_commands(
    pipeline: WorkerPipeline, link: _Link, start: threading.Event, stop: threading.Event
) -> None:
    """The command thread: obey the supervisor until the pipe closes."""
    while True:
        try:
            kind, payload = link.recv()
        except (EOFError, OSError):
            link.closed.set()
            stop.set()
            return
        if kind == "start":
            start.set()
        elif kind == "stop":
            stop.set()
        elif kind in ("add", "remove"):
            reply: dict[str, Any] = {"request": payload["request"]}
            try:
                if pipeline.finished:
                    reply["ended"] = True
                    raise PanoptesError("the worker's pipeline has ended")
                if kind == "add":
                    pipeline.add_source(payload["props"], source_id=payload["source_id"])
                else:
                    pipeline.remove_source(payload["source_id"])
            except PanoptesError as error:
                reply["error"] = str(error)
            link.send("reply", reply)


def run_worker(spec: WorkerSpec, connection: Connection) -> None:
    """The worker process's entry point (a ``multiprocessing`` target)."""
    if spec.gpu is not None:
        # Before anything touches CUDA: the worker's decoders and models see its GPU only.
        os.environ["CUDA_VISIBLE_DEVICES"] = str(spec.gpu)
    link = _Link(connection)
    start, stop = threading.Event(), threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set():  # asked twice: quit at once, as the CLI does
            os._exit(130)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    try:
        pipeline = WorkerPipeline(spec.config, source_ids=spec.source_ids, base_dir=spec.base_dir)
        pipeline.build()
    except PanoptesError as error:
        link.send("failed", {"error": str(error)})
        return
    sizes: dict[int, Any] = {}

    def note_sizes(batch: Batch) -> None:
        for frame in batch.frames:
            sizes[frame.source_id] = frame.size_wh

    def forward(message: Message) -> None:
        if message.type not in (MessageType.PERF, MessageType.EOS):
            payload = {**asdict(message), "type": message.type.value}
            link.send("message", _plain(payload))

    pipeline.add_probe("mux", note_sizes)
    pipeline.bus.subscribe(forward)
    table = StreamTable(pipeline)
    threading.Thread(
        target=_serve_commands, args=(pipeline, link, start, stop), name="commands", daemon=True
    ).start()
    link.send(
        "ready", {"pid": os.getpid(), "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    )
    while not (start.wait(0.1) or stop.is_set()):
        pass
    pipeline.start()
    stopping = False
    while not pipeline.wait(spec.stats_interval_s):
        if stop.is_set() and not stopping:
            stopping = True
            pipeline.stop()
        link.send("stats", _report(pipeline, table, sizes))
    link.send("stats", _report(pipeline, table, sizes))
    link.send("done", {"streams": [asdict(stream) for stream in pipeline.summary().streams]})
    with contextlib.suppress(OSError):
        connection.close()
