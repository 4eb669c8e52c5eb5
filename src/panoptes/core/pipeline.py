"""The pipeline: sources → mux → elements → sinks, each in its own thread behind a bounded queue.

Threads give real parallelism here because the heavy work (FFmpeg decoding, OpenCV resizing,
onnxruntime) releases the GIL. End of stream travels in band, after the last batch, so every
element drains and every sink closes its files before the pipeline reports EOS on the bus.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from panoptes.core.bus import Bus, Message, MessageType
from panoptes.core.element import BuildContext, Element, ElementProperties
from panoptes.core.errors import ConfigError, PanoptesError, PipelineError, SourceError
from panoptes.core.frame import Batch, Frame, StreamEvent, image_size_wh
from panoptes.core.memory import pin_mmap_threshold
from panoptes.core.negotiation import (
    CONVERTERS,
    CPU_ONLY,
    CPU_YUV,
    Conversion,
    group_by_conversion,
    memory_after,
)
from panoptes.core.registry import load_kind
from panoptes.core.streams import FrameQueue, Stream, StreamState, StreamStats

Probe = Callable[[Batch], Any]
"""A callable on an element's output. It may change metadata, call ``batch.drop(frame)``, or
return ``False`` to drop the whole batch."""

_EOS = object()


@dataclass
class StreamSummary:
    source_id: int
    name: str
    state: str
    frames: int
    fps: float
    dropped: int
    corrupt: int
    errors: int
    error: str | None


@dataclass
class ElementStats:
    name: str
    kind: str
    batches: int
    busy_s: float
    queue_depth: int
    failures: int


@dataclass
class RunSummary:
    """What a finished run did, per stream and in total."""

    elapsed_s: float
    streams: list[StreamSummary]
    errors: list[Message]

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.streams)

    @property
    def fps(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        return not self.errors


class _Stage:
    """One element and the thread that feeds it."""

    def __init__(self, element: Element, queue_size: int) -> None:
        self.element = element
        self.input: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self.outputs: list[queue.Queue[Any]] = []
        self.probes: list[Probe] = []
        self.thread: threading.Thread | None = None
        self.copies_frames = False
        """Whether this stage starts a branch that changes frames (the video branch)."""
        self.counts_output = False
        """Whether frames leaving this stage count as the pipeline's output (PERF, summary)."""
        self.batches = 0
        self.busy_s = 0.0
        """Seconds spent in the element's ``process``, over ``batches`` batches."""


class Pipeline:
    """Build from a config (:meth:`from_config`), attach probes, then :meth:`run`.

    Sources can be added and removed while it runs (:meth:`add_source`, :meth:`remove_source`).
    """

    def __init__(
        self,
        config: Any,
        *,
        base_dir: str | Path | None = None,
        bus: Bus | None = None,
    ) -> None:
        from panoptes.config.schema import PipelineConfig
        from panoptes.elements.mux import Mux

        if not isinstance(config, PipelineConfig):
            from panoptes.config.loader import parse_config

            config = parse_config(config)
        http = config.http
        if http is not None and http.view and all(s.type != "web-view" for s in config.sinks):
            # The browser view is a video sink like any other, fed after the tiler and osd.
            config = config.model_copy(update={"sinks": [*config.sinks, http.web_view_sink()]})
        self.config: PipelineConfig = config
        self.base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
        self.bus = bus or Bus()
        self._condition = threading.Condition()
        self._streams: dict[int, Stream] = {}
        self._retired: list[Stream] = []
        """Streams that ended or were removed, kept for the summary (their frames are gone)."""
        self._stats: dict[int, StreamStats] = {}
        self._stages_running = 0
        self._streams_lock = threading.Lock()
        self._next_source_id = 0
        self._pending_events: list[StreamEvent] = []
        self._stop = threading.Event()
        self._started = False
        self._finished = threading.Event()
        self._start_time = 0.0
        self._end_time = 0.0
        self._batch_count = 0
        self.mux = Mux(config.mux, self._condition)
        self.mux_busy_s = 0.0
        """Seconds the mux thread spent converting batches (GPU frames), not waiting."""
        self._stages: list[_Stage] = []
        self._built = False
        self._threads: list[threading.Thread] = []
        self._mux_probes: list[Probe] = []
        self._unstarted: list[tuple[Stream, Any]] = []
        self._yuv_frames = False
        """Whether the CPU decoders may give YUV planes (decided by :meth:`build`)."""
        self._mux_outputs: list[queue.Queue[Any]] = []
        self._counts_at_mux = True
        self._unused: list[str] = []
        """Sections configured but not run (a tiler with no video sink to feed)."""
        self.conversions: list[Conversion] = []
        """The converters the build inserted between elements (see :meth:`build`)."""
        for index, props in enumerate(config.sources):
            self.add_source(props, place=f"sources[{index}]")

    @classmethod
    def from_config(cls, config: str | Path | Mapping[str, Any], **kwargs: Any) -> Pipeline:
        """A pipeline from a YAML file or a config dict (relative paths from the file's folder)."""
        if isinstance(config, (str, Path)):
            from panoptes.config.loader import load_config

            parsed, base_dir = load_config(config, kwargs.pop("overrides", ()))
            return cls(parsed, base_dir=kwargs.pop("base_dir", base_dir), **kwargs)
        return cls(config, **kwargs)

    # -- building -------------------------------------------------------------------------------

    def _make_element(
        self, kind: str, props: ElementProperties, *, name: str, place: str, **extra: Any
    ) -> Element:
        cls = load_kind(kind)
        context = BuildContext(
            bus=self.bus, base_dir=self.base_dir, place=place, config=self.config
        )
        element: Element = cls(props, name=name, context=context, **extra)
        return element

    def build(self) -> None:
        """Create and build every element: models load, files open, errors raise here.

        The flow is ``mux → infer* → tracker → infer* → analytics → ┬ metadata sinks`` and
        ``└ tiler → osd → video sinks``; the tiler and osd run only when a video sink is there.

        Memory is negotiated as the elements are linked (see :mod:`panoptes.core.negotiation`):
        where the frames reaching an element may be in a kind of memory it does not take (on
        the GPU, from a hardware decoder, before a CPU element), a converter is inserted before
        it, shared by the branches that need the same conversion; :attr:`conversions` lists
        them and the bus says them at start.
        """
        if self._built:
            return
        config = self.config
        video_sinks = [
            (index, sink) for index, sink in enumerate(config.sinks) if _takes_video(sink.type)
        ]
        meta_sinks = [
            (index, sink) for index, sink in enumerate(config.sinks) if not _takes_video(sink.type)
        ]
        plan: list[tuple[str, ElementProperties, str, str, dict[str, Any]]] = []
        models = [
            ("infer", infer, infer.name or f"infer{i}", f"infer[{i}]", {"gie_id": i + 1})
            for i, infer in enumerate(config.infer)
        ]
        # As deepstream-app links them: primary models, the tracker, then the secondary models,
        # which work on tracked objects.
        plan += [m for m in models if getattr(m[1], "process_mode", "primary") == "primary"]
        if config.tracker is not None:
            tracker = config.tracker
            plan.append(("tracker", tracker, tracker.name or "tracker", "tracker", {}))
        plan += [m for m in models if getattr(m[1], "process_mode", "primary") != "primary"]
        if config.analytics is not None:  # on the tracked, classified objects, before the sinks
            analytics = config.analytics
            plan.append(("analytics", analytics, analytics.name or "analytics", "analytics", {}))
        if config.record is not None:  # last: after every element that raises events
            record = config.record
            plan.append(("record", record, record.name or "record", "record", {}))
        chain_length = len(plan)
        # Built in the order they are wired below: chain, metadata sinks, video branch, video sinks.
        for index, sink in meta_sinks:
            name = sink.name or f"{sink.type}{index}"
            plan.append((sink.type, sink, name, f"sinks[{index}]", {}))
        for key in ("tiler", "osd"):
            section = getattr(config, key)
            if section is None:
                continue
            if not video_sinks:
                self._unused.append(key)
                continue
            plan.append((key, section, section.name or key, key, {}))
        for index, sink in video_sinks:
            name = sink.name or f"{sink.type}{index}"
            plan.append((sink.type, sink, name, f"sinks[{index}]", {}))
        place = ""
        try:
            for kind, element_props, name, place, extra in plan:
                element = self._make_element(kind, element_props, name=name, place=place, **extra)
                self._stages.append(_Stage(element, config.queue_size))
                element.build()
            place = "probes"
            probes = self._config_probes()
        except BaseException as error:
            for stage in self._stages:
                stage.element.close()
            self._stages = []
            # Keep the error's type (callers catch ModelError, ConfigError...) but say where.
            if isinstance(error, PanoptesError) and not str(error).startswith(place):
                error.args = (f"{place}: {error}",)
            raise
        chain = self._stages[:chain_length]
        meta = self._stages[chain_length:][: len(meta_sinks)]
        rest = self._stages[chain_length + len(meta_sinks) :]
        video = [s for s in rest if not s.element.is_sink]
        video_out = [s for s in rest if s.element.is_sink]
        # The CPU decoders' pictures stay in their YUV planes where nothing needs them whole:
        # the mux scales them (converting at its resolution), or every element reads boxes only
        # or letterboxes the planes itself (a detector).
        self._yuv_frames = self.mux.scales or all(
            CPU_YUV in stage.element.input_memory() for stage in self._stages
        )
        for _, source in self._unstarted:
            self._offer_yuv(source)
        memory = self._sources_memory()
        if self.mux.scales and CPU_YUV in memory:
            memory = memory - {CPU_YUV} | CPU_ONLY
        self.mux.memory = memory
        linker = _Linker(self)
        flow = self.mux.memory
        if chain:
            self._mux_outputs = linker.link(flow, [chain[0]])
            for upstream, downstream in itertools.pairwise(chain):
                upstream.outputs.extend(linker.link(linker.output_memory(upstream), [downstream]))
            flow = linker.output_memory(chain[-1])
        if video:
            # The video branch draws on its own copies of the frames (the metadata sinks read
            # the originals at the same time); the metadata itself is shared, read-only.
            video[0].copies_frames = True
        branch_heads = linker.link(flow, [*meta, *(video[:1] or video_out)])
        if chain:
            chain[-1].outputs.extend(branch_heads)
            chain[-1].counts_output = True
        else:
            self._mux_outputs = branch_heads
        for upstream, downstream in itertools.pairwise(video):
            upstream.outputs.extend(linker.link(linker.output_memory(upstream), [downstream]))
        if video:
            video[-1].outputs.extend(linker.link(linker.output_memory(video[-1]), video_out))
        self._counts_at_mux = not chain
        self._stages = linker.ordered(self._stages)
        self.conversions = linker.conversions
        self._built = True
        for element_name, function in probes:
            if element_name not in self._unused:
                self.add_probe(element_name, function)

    def _offer_yuv(self, source: Any) -> None:
        """Let ``source`` give YUV planes when the pipeline takes them (see :meth:`build`)."""
        allow_yuv = getattr(source, "allow_yuv", None)
        if self._yuv_frames and allow_yuv is not None:
            allow_yuv()

    def _sources_memory(self) -> frozenset[str]:
        """The kinds of memory the sources' frames may come in: what the mux puts out."""
        kinds = [getattr(source, "memory", CPU_ONLY) for _, source in self._unstarted]
        return frozenset().union(*kinds) or CPU_ONLY

    def tensor_device(self) -> str:
        """The torch device of the pipeline's tensor frames: the GPU of its first source that
        decodes on one (``cuda:0`` when none does)."""
        for _, source in self._unstarted:
            device = getattr(source, "tensor_device", None)
            if device is not None:
                return str(device)
        return "cuda:0"

    def _config_probes(self) -> list[tuple[str, Probe]]:
        """The probes the config names, as (element name, function), checked and imported."""
        from panoptes.core.imports import load_function

        names = {stage.element.name for stage in self._stages} | {"mux"}
        names |= set(self._unused)
        probes: list[tuple[str, Probe]] = []
        for index, probe in enumerate(self.config.probes):
            if probe.element not in names:
                known = ", ".join(sorted(names))
                raise ConfigError(
                    f"no element named {probe.element!r}; elements: {known}",
                    f"probes[{index}].element",
                )
            try:
                function = load_function(probe.function, self.base_dir)
            except ImportError as error:
                raise ConfigError(str(error), f"probes[{index}].function") from error
            probes.append((probe.element, function))
        return probes

    def element(self, name: str) -> Element:
        """The element called ``name`` (built first if the pipeline was not)."""
        self.build()
        for stage in self._stages:
            if stage.element.name == name:
                return stage.element
        names = ", ".join(s.element.name for s in self._stages) or "none"
        raise PipelineError(f"no element named {name!r}; elements: {names}")

    def add_probe(self, element: str, probe: Probe) -> None:
        """Call ``probe(batch)`` on each batch that ``element`` outputs ("mux" for the mux's)."""
        self.build()
        if element == "mux":
            self._mux_probes.append(probe)
            return
        for stage in self._stages:
            if stage.element.name == element:
                stage.probes.append(probe)
                return
        self.element(element)  # raises, naming the known elements

    # -- sources --------------------------------------------------------------------------------

    def add_source(
        self,
        props: ElementProperties | Mapping[str, Any],
        *,
        place: str | None = None,
        source_id: int | None = None,
    ) -> int:
        """Add a source (its properties or a dict like one entry of ``sources``); returns its id.

        ``source_id``: the id the stream takes (one process's share of a larger set of cameras
        keeps the ids of the whole), by default the next one free; an id in use is refused.
        """
        if isinstance(props, Mapping):
            from pydantic import TypeAdapter

            from panoptes.config.schema import SourceConfig

            props = TypeAdapter(SourceConfig).validate_python(dict(props))
        cls = load_kind(getattr(props, "type", "uri-source"))
        with self._streams_lock:
            if source_id is None:
                source_id = self._next_source_id
            elif source_id < 0 or source_id in self._stats:
                raise ValueError(f"source id {source_id} is in use or negative")
            self._next_source_id = max(self._next_source_id, source_id + 1)
        place = place or f"sources[{source_id}]"
        try:
            source = cls(props, base_dir=self.base_dir)
        except ConfigError as error:  # a property that does not fit the source (its decoder)
            field = f".{error.place}" if error.place else ""
            raise ConfigError(error.reason, f"{place}{field}") from error
        except PanoptesError as error:  # a malformed URI: the config is wrong, not the camera
            raise ConfigError(getattr(error, "reason", str(error)), f"{place}.uri") from error
        name = source.name
        stats = StreamStats()
        stream = Stream(
            source_id=source_id,
            name=name,
            uri=str(getattr(props, "uri", "")),
            place=place,
            queue=FrameQueue(getattr(props, "queue_size", 4), self._condition, stats),
            stats=stats,
        )
        with self._streams_lock:
            self._streams[source_id] = stream
            self._stats[source_id] = stats
            self._pending_events.append(StreamEvent("added", source_id, name))
        self.bus.post(
            Message(
                MessageType.STREAM_ADDED, name, f"{place}: {stream.uri}", {"source_id": source_id}
            )
        )
        if self._built:
            self._offer_yuv(source)
        if self._started:
            self._start_source(stream, source)
        else:
            self._unstarted.append((stream, source))
        return source_id

    def remove_source(self, source_id: int) -> None:
        """Stop a source; its queued frames are discarded and downstream state is freed."""
        with self._streams_lock:
            stream = self._streams.get(source_id)
        if stream is None:
            raise PipelineError(f"no source with id {source_id}")
        stream.stop.set()
        with self._condition:
            if stream.state is StreamState.REMOVED:
                return
            stream.state = StreamState.REMOVED
            self._condition.notify_all()
        stream.queue.clear()
        self.bus.post(
            Message(MessageType.STREAM_REMOVED, stream.name, "", {"source_id": source_id})
        )

    def element_stats(self) -> list[ElementStats]:
        """Per element: batches processed, seconds spent, and batches waiting in its queue."""
        return [
            ElementStats(
                name=stage.element.name,
                kind=stage.element.kind,
                batches=stage.batches,
                busy_s=stage.busy_s,
                queue_depth=stage.input.qsize(),
                failures=stage.element.failures,
            )
            for stage in self._stages
        ]

    def streams(self) -> list[Stream]:
        """The streams still in the pipeline (ended and removed ones leave once announced)."""
        with self._streams_lock:
            return list(self._streams.values())

    def _fail_stream(self, stream: Stream, text: str) -> None:
        stream.error = text
        stream.stats.errors += 1
        with self._condition:
            if stream.state is not StreamState.REMOVED:
                stream.state = StreamState.FAILED
            self._condition.notify_all()
        self.bus.error(stream.name, f"{stream.place}.uri: {text}", source_id=stream.source_id)

    def _say_source_warnings(self, stream: Stream, source: Any) -> None:
        """Post what the source has to say (a fallback from NVDEC to the CPU) on the bus."""
        take = getattr(source, "take_warnings", None)
        for text in take() if take is not None else ():
            self.bus.warning(stream.name, f"{stream.place}: {text}", source_id=stream.source_id)

    def _start_source(self, stream: Stream, source: Any) -> None:
        self._say_source_warnings(stream, source)
        for stage in self._stages:
            # Before the source opens, so that an element tapping its packets (record) has them
            # from the first; the element lets go when the stream's end reaches it in band.
            attach = getattr(stage.element, "attach_source", None)
            if attach is not None:
                attach(stream.source_id, stream.name, source)
        thread = threading.Thread(
            target=self._run_source,
            args=(stream, source),
            name=f"source-{stream.source_id}",
            daemon=True,
        )
        stream.thread = thread
        thread.start()

    def _run_source(self, stream: Stream, source: Any) -> None:
        """The source thread: open, read into the stream's queue, and for a network stream
        that fails, stalls or ends, open it again with a growing back-off."""
        stop = stream.stop
        props = source.props
        attempts_left = getattr(props, "reconnect_attempts", 0)
        backoff_s = getattr(props, "reconnect_backoff_s", 1.0)
        failure: str | None = None
        while True:
            self._set_state(stream, StreamState.CONNECTING if failure is None else None)
            try:
                self._read_source(stream, source)
                ended = None if source.is_live else "ended"
            except SourceError as error:
                ended = error.reason
            except Exception as error:  # a bug or an unexpected library error: say so
                ended = f"unexpected {type(error).__name__}: {error}"
                attempts_left = 0
            finally:
                stream.stats.corrupt = source.corrupt_frames
                try:
                    source.close()
                except Exception as error:
                    self.bus.warning(stream.name, f"failed to close: {error!r}")
            if stop.is_set() or ended == "ended":
                break
            if not getattr(source, "is_network", False) or attempts_left == 0:
                self._fail_stream(stream, ended or "the stream ended")
                return
            if stream.state is StreamState.PLAYING:  # it had played: back-off starts afresh
                backoff_s = getattr(props, "reconnect_backoff_s", 1.0)
            failure = ended or "the stream ended"
            attempts_left -= 1 if attempts_left > 0 else 0
            stream.error = failure
            stream.stats.reconnects += 1
            self._set_state(stream, StreamState.RECONNECTING)
            self.bus.warning(
                stream.name,
                f"{stream.place}.uri: {failure}; reconnecting in {backoff_s:g} s"
                + (f" ({attempts_left} attempt(s) left)" if attempts_left >= 0 else ""),
                source_id=stream.source_id,
            )
            if stop.wait(backoff_s):
                break
            backoff_s = min(2 * backoff_s, getattr(props, "reconnect_backoff_max_s", 30.0))
        if stream.stats.corrupt:
            self.bus.warning(
                stream.name,
                f"{stream.stats.corrupt} corrupt frame(s) skipped",
                source_id=stream.source_id,
            )
        self._set_state(stream, StreamState.ENDED)

    def _read_source(self, stream: Stream, source: Any) -> None:
        """Open the source and queue its frames until it ends (or stops)."""
        stop = stream.stop
        max_frames = getattr(source.props, "max_frames", None)
        source.open()
        self._say_source_warnings(stream, source)
        freshest = getattr(source, "keeps_freshest", source.is_live)
        stream.queue.leaky = freshest
        stream.queue.maxsize = 1 if freshest else stream.queue.capacity
        stream.stats.expected_frames = source.expected_frames
        fps = getattr(source, "fps", None)
        played = False
        for decoded in source.frames(stop):
            if not played:
                played = True
                stream.error = None
                self._set_state(stream, StreamState.PLAYING)
            frame = Frame(
                source_id=stream.source_id,
                source_name=stream.name,
                # Counted per stream, so numbers carry on across reconnections.
                frame_num=stream.stats.frames_decoded,
                pts_s=decoded.pts_s,
                capture_time_s=time.time(),
                size_wh=image_size_wh(decoded.image),
                # A numpy array, or the hardware decoder's NV12 tensor for the mux to convert.
                image=cast(Any, decoded.image),
                fps=fps,
                color_space=decoded.color_space,
            )
            self.mux.prepare(frame)
            stream.stats.frames_decoded += 1
            stream.stats.corrupt = source.corrupt_frames
            if not stream.queue.put(frame, stop):
                break
            if max_frames is not None and stream.stats.frames_decoded >= max_frames:
                stop.set()
                break

    def _set_state(self, stream: Stream, state: StreamState | None) -> None:
        """Move a stream to ``state`` (None: leave it), unless it was removed or failed."""
        if state is None:
            return
        with self._condition:
            if stream.state not in (StreamState.REMOVED, StreamState.FAILED):
                stream.state = state
            self._condition.notify_all()

    # -- running --------------------------------------------------------------------------------

    def start(self) -> None:
        """Build if needed and start every thread; returns at once."""
        if self._started:
            raise PipelineError("the pipeline was already started")
        self.build()
        pin_mmap_threshold()
        self._started = True
        self._start_time = time.monotonic()
        for key in self._unused:
            self.bus.warning(key, f"{key} is not run: no video sink (file, rtsp) to feed")
        for conversion in self.conversions:
            self.bus.post(
                Message(
                    MessageType.INFO,
                    conversion.name,
                    conversion.describe(),
                    {"memory": conversion.memory, "before": list(conversion.consumers)},
                )
            )
        self._stages_running = len(self._stages)
        for stage in self._stages:
            stage.thread = threading.Thread(
                target=self._run_stage,
                args=(stage,),
                name=f"element-{stage.element.name}",
                daemon=True,
            )
            stage.thread.start()
            self._threads.append(stage.thread)
        mux_thread = threading.Thread(target=self._run_mux, name="mux", daemon=True)
        mux_thread.start()
        self._threads.append(mux_thread)
        for stream, source in self._unstarted:
            self._start_source(stream, source)
        self._unstarted.clear()
        if self.config.perf.interval_s > 0:
            threading.Thread(target=self._run_perf, name="perf", daemon=True).start()

    def _push(self, queues: list[queue.Queue[Any]], item: Any) -> None:
        for q in queues:
            q.put(item)

    def _next_events(self) -> list[StreamEvent]:
        """Stream events for the next batch; streams announced as ended or removed retire."""
        ended: list[Stream] = []
        with self._streams_lock:
            events, self._pending_events = self._pending_events, []
            for stream in list(self._streams.values()):
                if stream.finished:
                    kind = "removed" if stream.state is StreamState.REMOVED else "ended"
                    events.append(StreamEvent(kind, stream.source_id, stream.name))
                    del self._streams[stream.source_id]
                    stream.stats.latency_s.clear()
                    self._retired.append(stream)
                    if kind == "ended":
                        ended.append(stream)
        # Posted outside the lock: a subscriber may call back into the pipeline.
        for stream in ended:
            self.bus.post(
                Message(MessageType.STREAM_ENDED, stream.name, "", {"source_id": stream.source_id})
            )
        return events

    def _run_mux(self) -> None:
        if self.mux.batch_size == 0:
            preferred = [stage.element.preferred_batch for stage in self._stages]
            self.mux.batch_size = max(1, len(self.streams()), *preferred)
        outputs = self._mux_outputs
        while True:
            frames = self.mux.collect(
                self._live_streams, self._stop, keep_alive=self.config.keep_alive
            )
            events = self._next_events()
            removed = {event.source_id for event in events if event.kind == "removed"}
            if frames and removed:
                # Taken just before the removal: a removed stream's frames go no further.
                frames = [frame for frame in frames if frame.source_id not in removed]
            if frames:
                started_s = time.perf_counter()
                try:
                    self.mux.finish(frames)
                except Exception as error:  # a GPU failure: these frames cannot go on
                    self.bus.error("mux", f"failed to convert a batch: {error!r}")
                    frames = []
                self.mux_busy_s += time.perf_counter() - started_s
            if frames is None:
                if events:
                    self._deliver(Batch([], self._batch_count, events, time.monotonic()), outputs)
                break
            if not frames and not events:
                continue
            batch = Batch(frames, self._batch_count, events, time.monotonic())
            self._batch_count += 1
            self._deliver(batch, outputs)
        self._push(outputs, _EOS)

    def _live_streams(self) -> list[Stream]:
        with self._streams_lock:
            return list(self._streams.values())

    def _deliver(self, batch: Batch, outputs: list[queue.Queue[Any]]) -> None:
        if self._mux_probes:
            batch = self._apply_probes(self._mux_probes, batch, "mux")
        if self._counts_at_mux:
            self._count_output(batch)
        self._push(outputs, batch)

    def _apply_probes(self, probes: list[Probe], batch: Batch, origin: str) -> Batch:
        """Run the probes; a probe returning False empties the batch, whose stream events
        still travel on, so later elements free the state of streams that ended."""
        for probe in probes:
            try:
                keep = probe(batch)
            except Exception as error:
                self.bus.error(
                    origin, f"probe {getattr(probe, '__name__', probe)!r} failed: {error!r}"
                )
                continue
            if keep is False:
                batch.frames = []
                break
        return batch

    def _count_output(self, batch: Batch) -> None:
        """Frames leaving the last processing element, per stream: what PERF reports."""
        now = time.time()
        for frame in batch.frames:
            stats = self._stats.get(frame.source_id)
            if stats is not None:
                stats.frames_out += 1
                stats.latency_s.append(now - frame.capture_time_s)

    def _run_stage(self, stage: _Stage) -> None:
        element = stage.element
        while True:
            if element.pending:
                try:
                    item = stage.input.get_nowait()
                except queue.Empty:
                    try:
                        for batch in element.flush():
                            self._forward(stage, batch)
                    except Exception as error:
                        self.bus.error(element.name, f"failed to flush: {error!r}")
                    continue
            else:
                item = stage.input.get()
            if item is _EOS:
                try:
                    for batch in element.drain():
                        self._forward(stage, batch)
                except Exception as error:
                    self.bus.error(element.name, f"failed to drain: {error!r}")
                self._push(stage.outputs, _EOS)
                break
            if stage.copies_frames:
                item = item.branch_copy()
            started_s = time.perf_counter()
            try:
                out = element.process(item)
            except Exception as error:
                element.report_failure(item, error)
                # The frames go on without this element's work, and the stream events with them.
                out = None if element.is_sink else item
            stage.batches += 1
            stage.busy_s += time.perf_counter() - started_s
            if out is not None:
                self._forward(stage, out)
        try:
            element.close()
        except Exception as error:
            self.bus.error(element.name, f"failed to close: {error!r}")
        with self._streams_lock:
            self._stages_running -= 1
            last = self._stages_running == 0
        if last:  # every element has drained and closed: the run is over
            self._end_time = time.monotonic()
            self._finished.set()
            self.bus.post(Message(MessageType.EOS, "pipeline", "end of stream"))

    def _forward(self, stage: _Stage, batch: Batch) -> None:
        if stage.probes:
            batch = self._apply_probes(stage.probes, batch, stage.element.name)
        if stage.counts_output:
            self._count_output(batch)
        self._push(stage.outputs, batch)

    def stop(self) -> None:
        """Ask every source to stop; queued frames still flow and the sinks close properly."""
        self._stop.set()
        for stream in self.streams():
            stream.stop.set()
        with self._condition:
            self._condition.notify_all()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait until end of stream; True when the pipeline finished."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for thread in self._threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
            if thread.is_alive():
                return False
        return self._finished.is_set()

    @property
    def started(self) -> bool:
        """Whether :meth:`start` was called (the pipeline may have finished since)."""
        return self._started

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def run(self) -> RunSummary:
        """Start, wait for end of stream (Ctrl-C stops cleanly), and summarise."""
        self.start()
        try:
            while not self.wait(0.2):
                pass
        except KeyboardInterrupt:
            self.stop()
            self.wait()
        return self.summary()

    def elapsed_s(self) -> float:
        end = self._end_time if self._finished.is_set() else time.monotonic()
        return max(0.0, end - self._start_time) if self._started else 0.0

    def summary(self) -> RunSummary:
        elapsed = self.elapsed_s()
        streams = [
            StreamSummary(
                source_id=s.source_id,
                name=s.name,
                state=s.state.value,
                frames=s.stats.frames_out,
                fps=s.stats.frames_out / elapsed if elapsed > 0 else 0.0,
                dropped=s.stats.dropped,
                corrupt=s.stats.corrupt,
                errors=s.stats.errors,
                error=s.error,
            )
            for s in self.all_streams()
        ]
        return RunSummary(elapsed, streams, self.bus.errors())

    def all_streams(self) -> list[Stream]:
        """Every stream of the run, those that ended, failed or were removed included, by
        source id (:meth:`streams` has only those still in the pipeline)."""
        with self._streams_lock:
            everything = [*self._retired, *self._streams.values()]
        return sorted(everything, key=lambda stream: stream.source_id)

    def _run_perf(self) -> None:
        interval = self.config.perf.interval_s
        last: dict[int, int] = {}
        last_time = time.monotonic()
        while not self._finished.wait(interval):
            if all(not t.is_alive() for t in self._threads):
                break
            now = time.monotonic()
            span = now - last_time
            streams: dict[str, dict[str, Any]] = {}
            for stream in self.streams():
                frames = stream.stats.frames_out
                fps = (frames - last.get(stream.source_id, 0)) / span if span > 0 else 0.0
                last[stream.source_id] = frames
                latencies = sorted(stream.stats.latency_s)
                streams[str(stream.source_id)] = {
                    "name": stream.name,
                    "source_id": stream.source_id,
                    "fps": fps,
                    "avg_fps": frames / self.elapsed_s() if self.elapsed_s() > 0 else 0.0,
                    "frames": frames,
                    "dropped": stream.stats.dropped,
                    "state": stream.state.value,
                    "latency_ms_p50": 1000 * latencies[len(latencies) // 2] if latencies else None,
                }
            last_time = now
            total = sum(float(v["fps"]) for v in streams.values())
            self.bus.post(
                Message(MessageType.PERF, "pipeline", "", {"streams": streams, "total_fps": total})
            )

    def expected_frames(self) -> int | None:
        """Frames the whole run will deliver, when every stream is a file of known length."""
        total = 0
        for stream in self.all_streams():
            if stream.stats.expected_frames is None:
                if stream.state in (StreamState.FAILED, StreamState.REMOVED):
                    continue
                return None
            total += stream.stats.expected_frames
        return total

    def frames_out(self) -> int:
        with self._streams_lock:
            return sum(stats.frames_out for stats in self._stats.values())


def _takes_video(kind: str) -> bool:
    return bool(getattr(load_kind(kind), "takes_video", False))


class _Linker:
    """Links a producer to its consumers during :meth:`Pipeline.build`, inserting a converter
    where the memory its frames may be in is not all that a consumer takes (see
    :mod:`panoptes.core.negotiation`), and keeps track of the memory each stage receives."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self._received: dict[_Stage, frozenset[str]] = {}
        self._inserted: list[tuple[_Stage, list[_Stage]]] = []
        self.conversions: list[Conversion] = []

    def link(self, flow: frozenset[str], consumers: list[_Stage]) -> list[queue.Queue[Any]]:
        """The queues a producer whose frames may be in ``flow`` pushes to: the consumers' own,
        or the input of a converter shared by those that need the same conversion."""
        queues: list[queue.Queue[Any]] = []
        pairs = [(stage, stage.element.input_memory()) for stage in consumers]
        for memory, group in group_by_conversion(flow, pairs).items():
            if memory is None:
                queues.extend(stage.input for stage in group)
                self._received.update((stage, flow) for stage in group)
                continue
            converter = self._converter(memory, group)
            converter.outputs.extend(stage.input for stage in group)
            received = memory_after(flow, converter.element.output_memory)
            self._received.update((stage, received) for stage in group)
            queues.append(converter.input)
        return queues

    def output_memory(self, stage: _Stage) -> frozenset[str]:
        """The memory the frames leaving ``stage`` may be in."""
        return memory_after(self._received[stage], stage.element.output_memory)

    def ordered(self, stages: list[_Stage]) -> list[_Stage]:
        """``stages`` with each converter just before the first stage it feeds."""
        result: list[_Stage] = []
        for stage in stages:
            result += [converter for converter, fed in self._inserted if fed[0] is stage]
            result.append(stage)
        return result

    def _converter(self, memory: str, consumers: list[_Stage]) -> _Stage:
        from panoptes.elements.convert import ToCpuProperties, ToCudaProperties

        pipeline = self._pipeline
        kind = CONVERTERS[memory]
        name = f"{kind}-{consumers[0].element.name}"
        props: ElementProperties = (
            ToCudaProperties(name=name, device=pipeline.tensor_device())
            if kind == "to-cuda"
            else ToCpuProperties(name=name)
        )
        element = pipeline._make_element(kind, props, name=name, place=name)
        element.build()
        stage = _Stage(element, pipeline.config.queue_size)
        self._inserted.append((stage, consumers))
        names = tuple(consumer.element.name for consumer in consumers)
        self.conversions.append(Conversion(name, memory, names))
        return stage
