"""Prometheus metrics read from the pipeline at each scrape (``GET /metrics``).

Each app has its own registry, so no state is shared between servers (or tests) through
prometheus_client's global one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from panoptes.core.streams import StreamState
from panoptes.server.streams import LATENCY_QUANTILES, StreamTable

_STREAM_LABELS = ("source_id", "name")
_ELEMENT_LABELS = ("element", "kind")


class PipelineCollector(Collector):
    """Per stream (labelled ``source_id`` and ``name``): frame rate, frame counters, state and
    latency percentiles; per element (``element``, ``kind``): batches, busy seconds (for
    ``infer`` elements, the inference time), queue depth and failures."""

    def __init__(self, table: StreamTable) -> None:
        self.table = table

    def collect(self) -> Iterator[Metric]:
        pipeline = self.table.pipeline
        rows = self.table.rows()
        yield from stream_metrics(rows, _STREAM_LABELS, lambda row: [str(row.source_id), row.name])
        yield GaugeMetricFamily("panoptes_streams", "Streams listed.", value=len(rows))
        yield GaugeMetricFamily(
            "panoptes_pipeline_uptime_seconds",
            "Seconds since the pipeline started.",
            value=pipeline.elapsed_s(),
        )
        yield from _element_metrics(self.table)


def stream_metrics(
    rows: Sequence[Any], label_names: Sequence[str], labels_of: Callable[[Any], list[str]]
) -> Iterator[Metric]:
    """The per-stream families of ``rows`` (stream rows: ``fps``, the frame counters, ``state``,
    ``latency_s``), each labelled ``label_names`` with the values ``labels_of(row)`` gives."""
    fps = GaugeMetricFamily(
        "panoptes_stream_fps",
        "Frames out per second over the last few seconds.",
        labels=label_names,
    )
    counters = {
        field: CounterMetricFamily(f"panoptes_stream_{name}", documentation, labels=label_names)
        for field, name, documentation in (
            ("frames_out", "frames_out", "Frames that left the last processing element."),
            ("frames_decoded", "frames_decoded", "Frames decoded by the source."),
            ("dropped", "dropped_frames", "Frames a live stream dropped: pipeline behind."),
            ("corrupt", "corrupt_frames", "Packets or images that failed to decode."),
            ("errors", "errors", "Errors of the stream (failed opens, lost connections)."),
            ("reconnects", "reconnects", "Times the stream was opened again."),
        )
    }
    state = GaugeMetricFamily(
        "panoptes_stream_state",
        "1 for the stream's current state, 0 for the others.",
        labels=(*label_names, "state"),
    )
    latency = GaugeMetricFamily(
        "panoptes_stream_latency_seconds",
        "Capture-to-output latency over the stream's recent frames, by quantile.",
        labels=(*label_names, "quantile"),
    )
    for row in rows:
        labels = labels_of(row)
        if row.fps is not None:
            fps.add_metric(labels, row.fps)
        for field, family in counters.items():
            family.add_metric(labels, getattr(row, field))
        for value in StreamState:
            state.add_metric([*labels, value.value], float(value.value == row.state))
        if row.latency_s is not None:
            for quantile in LATENCY_QUANTILES:
                key = f"p{round(quantile * 100)}"
                latency.add_metric([*labels, f"{quantile:g}"], row.latency_s[key])
    yield fps
    yield from counters.values()
    yield state
    yield latency


class ElementMetrics:
    """The per-element families (batches, busy seconds, queue depth, failures), labelled by
    ``labels``: one pipeline's elements, or every worker's."""

    def __init__(self, labels: Sequence[str]) -> None:
        labels = list(labels)
        self.batches = CounterMetricFamily(
            "panoptes_element_batches", "Batches the element processed.", labels=labels
        )
        self.busy = CounterMetricFamily(
            "panoptes_element_busy_seconds",
            "Seconds the element spent processing (inference time for infer elements).",
            labels=labels,
        )
        self.depth = GaugeMetricFamily(
            "panoptes_element_queue_depth", "Batches waiting for the element.", labels=labels
        )
        self.failures = CounterMetricFamily(
            "panoptes_element_failures", "Batches the element failed on.", labels=labels
        )

    def add(
        self, labels: Sequence[str], batches: int, busy_s: float, queue_depth: int, failures: int
    ) -> None:
        """One element's sample in each family."""
        labels = list(labels)
        self.batches.add_metric(labels, batches)
        self.busy.add_metric(labels, busy_s)
        self.depth.add_metric(labels, queue_depth)
        self.failures.add_metric(labels, failures)

    def families(self) -> tuple[Metric, ...]:
        return (self.batches, self.busy, self.depth, self.failures)


def _element_metrics(table: StreamTable) -> Iterator[Metric]:
    elements = ElementMetrics(_ELEMENT_LABELS)
    for stats in table.pipeline.element_stats():
        elements.add(
            [stats.name, stats.kind], stats.batches, stats.busy_s, stats.queue_depth, stats.failures
        )
    yield from elements.families()


def metrics_registry(table: StreamTable) -> CollectorRegistry:
    """A registry of its own with the pipeline's metrics and the process's (resident memory,
    open file descriptors, CPU seconds: prometheus_client's ``process_*`` metrics)."""
    registry = CollectorRegistry()
    registry.register(PipelineCollector(table))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The registry's metrics in Prometheus's text format."""
    return generate_latest(registry)
