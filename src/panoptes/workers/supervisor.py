"""The supervisor: worker processes on one host, each a pipeline on its share of the streams,
run and seen from outside as one pipeline.

:class:`Supervisor` has the surface of :class:`~panoptes.core.pipeline.Pipeline` that the CLI
drives (``build``, ``start``, ``wait``, ``stop``, ``summary``, ``bus``), so ``panoptes run
--workers N`` prints the same PERF lines, progress bar and summary for the whole, and Ctrl-C
stops it the same way. It also lists, adds and removes streams for the HTTP API: an added
stream goes to the least loaded worker (by decoded pixels per second), a removal to the worker
that holds the stream. A worker that dies is started again with its streams that had not
ended, after a back-off that doubles; the others go on. See ``docs/workers.md``.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from panoptes.config.schema import PipelineConfig, SourceConfig
from panoptes.core.bus import Bus, Message, MessageType
from panoptes.core.errors import ConfigError, PanoptesError, PipelineError
from panoptes.core.pipeline import RunSummary, StreamSummary
from panoptes.core.registry import load_kind
from panoptes.core.streams import StreamState
from panoptes.server.streams import (
    DuplicateCameraError,
    StreamRow,
    UnknownStreamError,
    find_camera,
)
from panoptes.workers.assign import Placement, Share, split_evenly
from panoptes.workers.child import run_worker
from panoptes.workers.gpus import discover_gpus, shared_gpu_note
from panoptes.workers.spec import WorkerSpec, worker_config

__all__ = ["Supervisor", "WorkerInfo", "WorkerStreamRow"]

STOP_TIMEOUT_S = 60.0
"""After a stop, how long workers may take to drain and close their outputs before they are
killed."""
REQUEST_TIMEOUT_S = 30.0
"""How long an add or remove waits for the worker's answer."""
HEALTHY_RUN_S = 60.0
"""A worker that ran this long before it died has its restart back-off start afresh."""
_SOURCE: TypeAdapter[Any] = TypeAdapter(SourceConfig)
_FINISHED = frozenset({StreamState.ENDED.value, StreamState.FAILED.value})


@dataclass(frozen=True)
class WorkerStreamRow(StreamRow):
    """A stream as ``GET /api/v1/streams`` lists it with workers: its row, and where it runs."""

    worker: int
    gpu: int | None


@dataclass(frozen=True)
class WorkerInfo:
    """One worker as the API, ``/metrics`` and the console show it."""

    index: int
    gpu: int | None
    pid: int | None
    state: str
    """idle (no streams), starting, running, restarting, ended or failed (given up)."""
    restarts: int
    """Times it was started again after it died."""
    streams: list[int]
    """The streams it holds now (those that ended are not counted)."""
    load: float
    """Decoded pixels per second of its streams, as last measured."""
    frames_out: int
    elapsed_s: float | None
    """Its pipeline's running time at the report ``frames_out`` comes from: frames over time
    measured by its own clock, whenever the supervisor is asked."""
    memory_bytes: int | None
    cpu_s: float | None
    outputs_tag: str
    """What its output file names carry (``w1``, ``w1.r1`` after a restart)."""
    visible_devices: str | None
    """``CUDA_VISIBLE_DEVICES`` in its process: its GPU alone."""
    elements: list[dict[str, Any]] = field(default_factory=list)
    """Its elements' counters (``ElementStats`` as dicts)."""


@dataclass
class _Stream:
    source_id: int
    props: Any
    worker: int
    name: str
    uri: str
    camera_id: str | None = None
    row: StreamRow | None = None
    expected_frames: int | None = None
    size_wh: tuple[int, int] | None = None
    removed: bool = False
    dismissed: bool = False
    failure: str | None = None
    """Why the stream was given up with its worker."""

    @property
    def finished(self) -> bool:
        """Ended, failed, removed or given up: never started again."""
        done = self.row is not None and self.row.state in _FINISHED
        return done or self.removed or self.failure is not None


@dataclass
class _Worker:
    index: int
    gpu: int | None
    state: str = "idle"
    process: BaseProcess | None = None
    connection: Connection | None = None
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    pid: int | None = None
    spawns: int = 0
    restarts: int = 0
    backoff_s: float = 0.0
    restart_at: float | None = None
    started_at: float = 0.0
    done: bool = False
    run_tag: str = ""
    report: dict[str, Any] = field(default_factory=dict)
    requests: dict[int, Future[dict[str, Any]]] = field(default_factory=dict)
    died: str | None = None
    visible_devices: str | None = None


@dataclass
class _Request:
    worker: _Worker
    kind: str
    payload: dict[str, Any]
    future: Future[dict[str, Any]] = field(default_factory=Future)


def _uses_gpu(config: PipelineConfig) -> bool:
    """Whether the devices a config names include a GPU: an NVDEC source (``auto`` where a GPU
    is found), or a model on CUDA or TensorRT."""
    decoders = {getattr(source, "decoder", "cpu") for source in config.sources}
    return (
        "nvdec" in decoders
        or ("auto" in decoders and bool(discover_gpus()))
        or any(infer.device != "cpu" for infer in config.infer)
    )


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


class Supervisor:
    """Runs ``config`` in one worker process per entry of ``gpus`` (a GPU id, or None for the
    devices the config names), the sources shared out round robin; with ``share``, only that
    share of the config's sources (``--share 2/4``).

    Streams keep their index in the config as their source id in every worker, so outputs, logs
    and the API agree; streams added at run time get ids after the config's (with a share,
    ``total + ordinal``, then every ``count``-th, so that hosts never give the same id).
    """

    def __init__(
        self,
        config: PipelineConfig,
        *,
        gpus: Sequence[int | None],
        base_dir: str | Path | None = None,
        share: Share | None = None,
        bus: Bus | None = None,
    ) -> None:
        if not gpus:
            raise ValueError("a supervisor needs at least one worker")
        self.config = config
        self.base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
        self.share = share
        self.bus = bus or Bus()
        self.props = config.workers
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.RLock()
        self._workers = [_Worker(index, gpu) for index, gpu in enumerate(gpus)]
        self._placement = Placement(len(self._workers))
        self._streams: dict[int, _Stream] = {}
        self._requests = itertools.count()
        total = len(config.sources)
        chosen = share.indices(total) if share is not None else list(range(total))
        self._next_id = total + (share.ordinal if share else 0)
        self._id_step = share.count if share else 1
        if not chosen and not config.keep_alive:
            raise ConfigError(
                f"--share {share}: no source falls to this share ({total} source(s) in the "
                "config); use fewer shares than sources, or keep_alive: true to wait for "
                "streams added over the REST API"
            )
        for worker, share_positions in enumerate(split_evenly(len(chosen), len(self._workers))):
            for position in share_positions:
                source_id = chosen[position]
                props = config.sources[source_id]
                name, uri = self._describe(props, f"sources[{source_id}]")
                self._streams[source_id] = _Stream(source_id, props, worker, name, uri)
                self._placement.assign(source_id, worker)
        self._built = False
        self._started = False
        self._stopping = False
        self._stop_deadline = 0.0
        self._finished = threading.Event()
        self._start_time = 0.0
        self._end_time = 0.0
        self._thread: threading.Thread | None = None
        self._perf_last: dict[int, int] = {}
        self._perf_at = 0.0

    # -- building and running -------------------------------------------------------------------

    def _describe(self, props: Any, place: str) -> tuple[str, str]:
        """The name and URI a worker will give the stream of ``props``; a ConfigError at
        ``place`` for a malformed URI, found here before any worker starts."""
        checked = props
        if getattr(props, "decoder", "cpu") != "cpu":  # the supervisor touches no GPU
            checked = props.model_copy(update={"decoder": "cpu"})
        try:
            source = load_kind(getattr(props, "type", "uri-source"))(
                checked, base_dir=self.base_dir
            )
        except ConfigError as error:
            field_name = f".{error.place}" if error.place else ""
            raise ConfigError(error.reason, f"{place}{field_name}") from error
        except PanoptesError as error:
            raise ConfigError(getattr(error, "reason", str(error)), f"{place}.uri") from error
        return str(source.name), str(getattr(props, "uri", ""))

    def _tag(self, worker: _Worker) -> str:
        tag = f"w{worker.index}"
        return tag if self.share is None else f"s{self.share.ordinal}.{tag}"

    def _spawn(self, worker: _Worker) -> None:
        """Start ``worker``'s process on its streams that have not finished."""
        streams = [
            stream
            for stream in sorted(self._streams.values(), key=lambda s: s.source_id)
            if stream.worker == worker.index and not stream.finished
        ]
        worker_tag = self._tag(worker)
        worker.run_tag = worker_tag if worker.spawns == 0 else f"{worker_tag}.r{worker.spawns}"
        config = worker_config(
            self.config,
            [stream.props for stream in streams],
            index=worker.index,
            worker_tag=worker_tag,
            run_tag=worker.run_tag,
            gpu=worker.gpu,
            cores=max(1, (os.cpu_count() or 1) // len(self._workers)),
        )
        spec = WorkerSpec(
            index=worker.index,
            gpu=worker.gpu,
            config=config,
            source_ids=tuple(stream.source_id for stream in streams),
            base_dir=self.base_dir,
        )
        for stream in streams:
            stream.row = None  # the new process counts from 0
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=run_worker, args=(spec, theirs), name=f"panoptes-worker-{worker.index}"
        )
        process.start()
        theirs.close()  # the worker's end lives in the worker: its exit closes the pipe here
        worker.process, worker.connection, worker.pid = process, ours, process.pid
        worker.spawns += 1
        worker.state, worker.done, worker.died = "starting", False, None
        worker.restart_at = None
        worker.started_at = time.monotonic()

    def build(self) -> None:
        """Start the workers that have streams and wait until each has built its pipeline
        (models loaded, outputs opened). Raises the first build error, naming the worker, after
        stopping the others."""
        if self._built:
            return
        with self._lock:
            for worker in self._workers:
                if any(s.worker == worker.index for s in self._streams.values()):
                    self._spawn(worker)
        while True:
            with self._lock:
                states = [worker.state for worker in self._workers]
            if "starting" not in states or "failed" in states:
                break
            self._pump(0.5)
        failed = [worker for worker in self._workers if worker.state == "failed"]
        if failed:
            self._halt()
            raise PipelineError(f"worker {failed[0].index}: {failed[0].died}")
        self._built = True

    def start(self) -> None:
        """Build if needed, start every worker's pipeline and the supervising thread; returns
        at once."""
        if self._started:
            raise PipelineError("the supervisor was already started")
        self.build()
        with self._lock:
            self._started = True
            self._start_time = self._perf_at = time.monotonic()
            for worker in self._workers:
                if worker.state == "ready":
                    self._send(worker, "start", {})
                    worker.state = "running"
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask every worker to stop: sources stop, queued frames drain, outputs close."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            self._stop_deadline = time.monotonic() + STOP_TIMEOUT_S
            for worker in self._workers:
                if worker.state == "restarting":
                    worker.state, worker.restart_at = "ended", None
                if worker.process is not None:
                    self._send(worker, "stop", {})

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait until every worker has finished; True when they have."""
        return self._finished.wait(timeout_s)

    @property
    def started(self) -> bool:
        return self._started

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def close(self) -> None:
        """Kill any worker still running (after an error in the caller); safe to call twice."""
        self._halt(timeout_s=5.0)

    def _halt(self, timeout_s: float = 10.0) -> None:
        """Stop the workers, killing those that do not exit within ``timeout_s``."""
        with self._lock:
            processes = [w.process for w in self._workers if w.process is not None]
            for worker in self._workers:
                if worker.process is not None:
                    self._send(worker, "stop", {})
        deadline = time.monotonic() + timeout_s
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(5)

    def _run(self) -> None:
        """The supervising thread: messages, deaths and restarts, PERF, the end."""
        while True:
            self._pump(0.1)
            with self._lock:
                self._tick()
                if self._all_done():
                    self._end_time = time.monotonic()
                    break
        self._finished.set()
        self.bus.post(Message(MessageType.EOS, "supervisor", "end of stream"))

    def _all_done(self) -> bool:
        busy = any(
            worker.process is not None or worker.state in ("starting", "restarting")
            for worker in self._workers
        )
        return not busy and (self._stopping or not self.config.keep_alive)

    def _pump(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for messages or a worker's exit, and handle them."""
        with self._lock:
            waiting: dict[Any, _Worker] = {}
            for worker in self._workers:
                if worker.connection is not None:
                    waiting[worker.connection] = worker
                if worker.process is not None:
                    waiting[worker.process.sentinel] = worker
        if not waiting:
            time.sleep(timeout_s)
            return
        for ready in wait(list(waiting), timeout_s):
            worker = waiting[ready]
            with self._lock:
                if ready is worker.connection:
                    self._receive(worker)
                elif worker.process is not None and not worker.process.is_alive():
                    self._receive(worker)
                    self._exited(worker)

    def _tick(self) -> None:
        now = time.monotonic()
        for worker in self._workers:
            due = worker.restart_at is not None and now >= worker.restart_at
            if worker.state == "restarting" and due:
                worker.restarts += 1
                self._spawn(worker)
        if self._stopping and now > self._stop_deadline:
            for worker in self._workers:
                if worker.process is not None and worker.process.is_alive():
                    self.bus.warning(
                        f"worker {worker.index}",
                        f"did not stop within {STOP_TIMEOUT_S:g} s: killed",
                        worker=worker.index,
                    )
                    worker.process.kill()
            self._stop_deadline = float("inf")
        interval_s = self.config.perf.interval_s
        if self._started and interval_s > 0 and now - self._perf_at >= interval_s:
            self._post_perf(now)

    # -- talking to workers ---------------------------------------------------------------------

    def _send(self, worker: _Worker, kind: str, payload: dict[str, Any]) -> bool:
        connection = worker.connection
        if connection is None:
            return False
        try:
            with worker.send_lock:
                connection.send((kind, payload))
        except (OSError, ValueError):  # it died: its exit is handled by the supervising thread
            return False
        return True

    def _expect(self, worker: _Worker, kind: str, payload: dict[str, Any]) -> _Request:
        """A request to ``worker`` whose answer the supervising thread will deliver; sent by
        :meth:`_ask` once the lock is released (a worker slow to read must not block the
        supervising thread)."""
        request = _Request(worker, kind, {**payload, "request": next(self._requests)})
        worker.requests[request.payload["request"]] = request.future
        return request

    def _ask(self, request: _Request, what: str) -> dict[str, Any]:
        """Send ``request`` and wait for the answer (a worker that stopped meanwhile answers
        ``gone``)."""
        if not self._send(request.worker, request.kind, request.payload):
            with self._lock:
                request.worker.requests.pop(request.payload["request"], None)
            if not request.future.done():
                request.future.set_result({"error": "the worker has stopped", "gone": True})
        try:
            return request.future.result(REQUEST_TIMEOUT_S)
        except FutureTimeout:
            raise PipelineError(
                f"{what}: no answer from the worker within {REQUEST_TIMEOUT_S:g} s"
            ) from None

    def _receive(self, worker: _Worker) -> None:
        connection = worker.connection
        if connection is None:
            return
        try:
            while connection.poll():
                kind, payload = connection.recv()
                self._handle(worker, kind, payload)
        except (EOFError, OSError):
            connection.close()
            worker.connection = None

    def _handle(self, worker: _Worker, kind: str, payload: Any) -> None:
        if kind == "ready":
            worker.pid = payload.get("pid", worker.pid)
            worker.visible_devices = payload.get("visible_devices")
            if self._stopping:
                self._send(worker, "stop", {})
            elif self._started:
                self._send(worker, "start", {})
                worker.state = "running"
            else:
                worker.state = "ready"
        elif kind == "failed":
            worker.state, worker.died = "failed", str(payload["error"])
            if self._built:
                self._give_up(worker, f"cannot start again: {worker.died}")
        elif kind == "stats":
            self._take_report(worker, payload)
        elif kind == "message":
            data = {**payload.get("data", {}), "worker": worker.index, "gpu": worker.gpu}
            origin = f"{payload['origin']} (worker {worker.index})"
            self.bus.post(Message(MessageType(payload["type"]), origin, payload["text"], data))
        elif kind == "reply":
            future = worker.requests.pop(payload["request"], None)
            if future is not None:
                future.set_result(payload)
        elif kind == "done":
            worker.done = True

    def _take_report(self, worker: _Worker, report: dict[str, Any]) -> None:
        worker.report = report
        sizes: dict[int, Any] = report["sizes_wh"]
        for row in report["rows"]:
            stream = self._streams.get(row.source_id)
            if stream is None or stream.worker != worker.index:
                continue
            stream.row = row
            stream.expected_frames = report["expected_frames"].get(row.source_id)
            if row.source_id in sizes:
                stream.size_wh = tuple(sizes[row.source_id])
            if stream.finished:
                with contextlib.suppress(KeyError):
                    self._placement.remove(row.source_id)
            elif row.fps is not None and stream.size_wh is not None:
                width, height = stream.size_wh
                self._placement.set_load(row.source_id, row.fps * width * height)

    def _exited(self, worker: _Worker) -> None:
        """A worker's process ended: done, or died and to be started again."""
        process = worker.process
        assert process is not None
        process.join(5)
        code = process.exitcode
        worker.process = None
        if worker.connection is not None:
            worker.connection.close()
            worker.connection = None
        for future in worker.requests.values():
            future.set_result({"error": "the worker has stopped", "gone": True})
        worker.requests.clear()
        if worker.state == "failed":
            return
        unfinished = [
            stream.source_id
            for stream in self._streams.values()
            if stream.worker == worker.index and not stream.finished
        ]
        gpu = f" (gpu {worker.gpu})" if worker.gpu is not None else ""
        name = f"worker {worker.index}"
        if not worker.done:
            worker.died = _exit_reason(code)
            if self._stopping or not unfinished:
                self.bus.warning(
                    name, f"process {worker.pid}{gpu} died ({worker.died})", worker=worker.index
                )
        if self._stopping or not unfinished:
            worker.state = "ended"
            return
        if worker.done:  # it ended as a stream was added: start it again for that stream
            self._spawn(worker)
            return
        attempts = self.props.restart_attempts
        if 0 <= attempts <= worker.restarts:
            self._give_up(worker, f"died ({worker.died}) after {worker.restarts} restart(s)")
            return
        if worker.backoff_s == 0 or time.monotonic() - worker.started_at > HEALTHY_RUN_S:
            worker.backoff_s = self.props.restart_backoff_s
        delay_s = worker.backoff_s
        worker.backoff_s = min(2 * worker.backoff_s, self.props.restart_backoff_max_s)
        worker.state, worker.restart_at = "restarting", time.monotonic() + delay_s
        streams = ", ".join(map(str, unfinished))
        self.bus.warning(
            name,
            f"process {worker.pid}{gpu} died ({worker.died}); starting it again in "
            f"{delay_s:g} s with stream(s) {streams}",
            worker=worker.index,
            restarts=worker.restarts + 1,
        )

    def _give_up(self, worker: _Worker, reason: str) -> None:
        worker.state = "failed"
        given_up = []
        for stream in self._streams.values():
            if stream.worker == worker.index and not stream.finished:
                stream.failure = f"worker {worker.index} {reason}"
                given_up.append(str(stream.source_id))
                with contextlib.suppress(KeyError):
                    self._placement.remove(stream.source_id)
        self.bus.error(
            f"worker {worker.index}",
            f"{reason}; stream(s) {', '.join(given_up) or 'none'} given up",
            worker=worker.index,
        )

    def _post_perf(self, now: float) -> None:
        span_s = now - self._perf_at
        elapsed_s = self.elapsed_s()
        streams: dict[str, dict[str, Any]] = {}
        for stream in sorted(self._streams.values(), key=lambda s: s.source_id):
            row = stream.row
            if row is None or stream.finished or stream.dismissed:
                continue
            frames = row.frames_out
            fps = max(0, frames - self._perf_last.get(stream.source_id, 0)) / span_s
            self._perf_last[stream.source_id] = frames
            streams[str(stream.source_id)] = {
                "name": stream.name,
                "source_id": stream.source_id,
                "fps": fps,
                "avg_fps": frames / elapsed_s if elapsed_s > 0 else 0.0,
                "frames": frames,
                "dropped": row.dropped,
                "state": row.state,
                "worker": stream.worker,
                "gpu": self._workers[stream.worker].gpu,
            }
        self._perf_at = now
        if not streams:  # between the end of the last stream and the end of the run
            return
        total = sum(float(item["fps"]) for item in streams.values())
        self.bus.post(
            Message(MessageType.PERF, "supervisor", "", {"streams": streams, "total_fps": total})
        )

    # -- streams --------------------------------------------------------------------------------

    def _row(self, stream: _Stream) -> WorkerStreamRow:
        worker = self._workers[stream.worker]
        row = stream.row
        if row is None:
            row = StreamRow(
                source_id=stream.source_id,
                name=stream.name,
                uri=stream.uri,
                state=StreamState.STARTING.value,
                fps=None,
                frames_out=0,
                frames_decoded=0,
                dropped=0,
                corrupt=0,
                errors=0,
                reconnects=0,
                latency_s=None,
                error=None,
                camera_id=str(stream.source_id),
            )
        if stream.failure is not None:
            row = replace(row, state=StreamState.FAILED.value, fps=0.0, error=stream.failure)
        elif worker.state == "restarting" and not stream.finished:
            error = f"worker {worker.index} died ({worker.died}); starting it again"
            row = replace(row, state=StreamState.RECONNECTING.value, fps=None, error=error)
        if stream.camera_id is not None:
            row = replace(row, camera_id=stream.camera_id)
        return WorkerStreamRow(**asdict(row), worker=stream.worker, gpu=worker.gpu)

    def rows(self) -> list[WorkerStreamRow]:
        """Every listed stream, by source id: removed and deleted ones are not."""
        with self._lock:
            return [
                self._row(stream)
                for stream in sorted(self._streams.values(), key=lambda s: s.source_id)
                if not stream.dismissed and not stream.removed
            ]

    def row(self, source_id: int) -> WorkerStreamRow:
        for row in self.rows():
            if row.source_id == source_id:
                return row
        raise UnknownStreamError(f"no stream with id {source_id}")

    def add_source(self, props: Any, *, camera_id: str | None = None) -> int:
        """Add a source (its properties, or a dict like one entry of ``sources``) on the least
        loaded worker; returns its source id. Raises ConfigError for a malformed URI,
        PipelineError when the run has ended, DuplicateCameraError for a camera id in use."""
        if isinstance(props, Mapping):
            props = _SOURCE.validate_python(dict(props))
        with self._lock:
            if self.finished or self._stopping:
                raise PipelineError("the pipeline has ended; start it again to add streams")
            source_id = self._next_id
            name, uri = self._describe(props, f"sources[{source_id}]")
            self._next_id += self._id_step  # taken only by a stream that can be added
            if camera_id is not None:
                for other in self._streams.values():
                    if other.camera_id == camera_id and not other.finished:
                        raise DuplicateCameraError(
                            f"camera_id {camera_id!r} is already stream {other.source_id}; "
                            "remove it first or choose another camera_id"
                        )
                    if other.camera_id == camera_id:  # it left: its row goes
                        other.dismissed, other.camera_id = True, None
            available = [w.index for w in self._workers if w.state != "failed"]
            if not available:
                raise PipelineError("every worker has failed: no worker can take a stream")
            index = self._placement.place(source_id, available=available)
            stream = _Stream(source_id, props, index, name, uri, camera_id=camera_id)
            self._streams[source_id] = stream
            worker = self._workers[index]
            if worker.process is None:
                if worker.state != "restarting":  # it restarts with the new stream among its own
                    self._spawn(worker)
                return source_id
            request = self._expect(worker, "add", {"props": props, "source_id": source_id})
        reply = self._ask(request, f"adding stream {source_id}")
        if "error" in reply and not reply.get("gone") and not reply.get("ended"):
            with self._lock:
                self._streams.pop(source_id, None)
                with contextlib.suppress(KeyError):
                    self._placement.remove(source_id)
            raise PipelineError(f"worker {index}: {reply['error']}")
        # A worker that stopped meanwhile starts again with the stream (see _exited).
        return source_id

    def remove_source(self, source_id: int) -> None:
        """Remove a stream from its worker, or from the list when it already left (ended or
        failed). Raises UnknownStreamError for an id that is not listed."""
        with self._lock:
            stream = self._streams.get(source_id)
            if stream is None or stream.dismissed or stream.removed:
                raise UnknownStreamError(f"no stream with id {source_id}")
            worker = self._workers[stream.worker]
            live = not stream.finished and worker.process is not None
            stream.removed = True
            stream.camera_id = None
            with contextlib.suppress(KeyError):
                self._placement.remove(source_id)
            if not live:
                return
            request = self._expect(worker, "remove", {"source_id": source_id})
        # An error means it ended meanwhile: it is removed from the list all the same.
        self._ask(request, f"removing stream {source_id}")

    def find_camera(self, camera_id: str | None, camera_url: str | None) -> int:
        """The source id of a DeepStream camera: by the camera id it was added with (or a source
        id as text), else by its URL. Raises UnknownStreamError."""
        return find_camera(self.rows(), camera_id, camera_url)

    # -- reports --------------------------------------------------------------------------------

    def workers(self) -> list[WorkerInfo]:
        with self._lock:
            return [
                WorkerInfo(
                    index=worker.index,
                    gpu=worker.gpu,
                    pid=worker.pid,
                    state=worker.state,
                    restarts=worker.restarts,
                    streams=self._placement.streams_of(worker.index),
                    load=self._placement.load_of(worker.index),
                    frames_out=sum(
                        s.row.frames_out
                        for s in self._streams.values()
                        if s.worker == worker.index and s.row is not None
                    ),
                    elapsed_s=worker.report.get("elapsed_s"),
                    memory_bytes=worker.report.get("memory_bytes"),
                    cpu_s=worker.report.get("cpu_s"),
                    outputs_tag=worker.run_tag or self._tag(worker),
                    visible_devices=worker.visible_devices,
                    elements=list(worker.report.get("elements", [])),
                )
                for worker in self._workers
            ]

    def elapsed_s(self) -> float:
        if not self._started:
            return 0.0
        end = self._end_time if self._finished.is_set() else time.monotonic()
        return max(0.0, end - self._start_time)

    def summary(self) -> RunSummary:
        """What the run did, per stream (its last run's counters) and in total."""
        elapsed_s = self.elapsed_s()
        with self._lock:
            streams = []
            for stream in sorted(self._streams.values(), key=lambda s: s.source_id):
                row = self._row(stream)
                state = StreamState.REMOVED.value if stream.removed else row.state
                streams.append(
                    StreamSummary(
                        source_id=stream.source_id,
                        name=stream.name,
                        state=state,
                        frames=row.frames_out,
                        fps=row.frames_out / elapsed_s if elapsed_s > 0 else 0.0,
                        dropped=row.dropped,
                        corrupt=row.corrupt,
                        errors=row.errors,
                        error=row.error,
                    )
                )
        return RunSummary(elapsed_s, streams, self.bus.errors())

    def expected_frames(self) -> int | None:
        """Frames the whole run will deliver, when every stream is a file of known length."""
        total = 0
        with self._lock:
            for stream in self._streams.values():
                if stream.removed or stream.failure is not None:
                    continue
                if stream.expected_frames is None:
                    return None
                total += stream.expected_frames
        return total

    def frames_out(self) -> int:
        with self._lock:
            return sum(s.row.frames_out for s in self._streams.values() if s.row is not None)

    def describe(self) -> list[str]:
        """One line per worker: its GPU, process and streams, for the console."""
        lines = []
        for info in self.workers():
            gpu = f"gpu {info.gpu}, " if info.gpu is not None else ""
            pid = f"pid {info.pid}" if info.pid is not None else "not started: no stream"
            streams = ", ".join(map(str, info.streams)) or "none"
            lines.append(
                f"worker {info.index} ({gpu}{pid}): stream(s) {streams}; "
                f"outputs tagged .{info.outputs_tag}"
            )
        note = shared_gpu_note([worker.gpu for worker in self._workers], _uses_gpu(self.config))
        if note is not None:
            lines.append(note)
        return lines

    def workers_table(self) -> str:
        """The workers at the end of a run, as a table."""
        rows = [("worker", "gpu", "pid", "state", "frames", "restarts")]
        for info in self.workers():
            rows.append(
                (
                    str(info.index),
                    "-" if info.gpu is None else str(info.gpu),
                    "-" if info.pid is None else str(info.pid),
                    info.state,
                    str(info.frames_out),
                    str(info.restarts),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [
            "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
            for row in rows
        ]
        lines.insert(1, "-" * len(lines[0]))
        return "\n".join(lines)
