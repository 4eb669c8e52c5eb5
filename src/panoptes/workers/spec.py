"""What one worker process runs: its share of the sources, with outputs that do not clash with
the other workers' and its GPU.

Output names take the worker's tag before their extension (``out/meta.jsonl`` becomes
``out/meta.w1.jsonl``; with ``--share 2/4``, ``out/meta.s2.w1.jsonl``), and a worker started
again (after a crash, or for a stream added once its streams had ended) writes new files
(``out/meta.w1.r1.jsonl``) so that nothing written before is lost. Broker outboxes keep the
worker's tag without the restart, so a restarted worker sends what its predecessor left.
RTSP sinks of worker k listen on their port + k. Snapshot and record folders are shared: their
file names carry the stream's (global) source id or name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from panoptes.config.schema import PerfProperties, PipelineConfig
from panoptes.elements.broker_sink import BrokerSinkProperties
from panoptes.elements.fakesink import FakeSinkProperties
from panoptes.elements.file_sink import FileSinkProperties
from panoptes.elements.infer import InferProperties
from panoptes.elements.jsonl import JsonlSinkProperties
from panoptes.elements.rtsp_sink import RtspSinkProperties
from panoptes.elements.web_view import WebViewProperties

__all__ = ["WorkerSpec", "tagged_path", "worker_config"]


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs, sent to it when it is spawned."""

    index: int
    gpu: int | None
    """The GPU it runs on: the only one its ``CUDA_VISIBLE_DEVICES`` shows; None: as the
    config says."""
    config: PipelineConfig
    """Its pipeline: the worker's sources, tagged outputs, no HTTP server, no PERF thread."""
    source_ids: tuple[int, ...]
    """The ids of ``config.sources``, in order: their index in the whole config (or the ids
    the supervisor gave streams added at run time), the same in every worker."""
    base_dir: Path
    stats_interval_s: float = 0.5
    """How often the worker reports its streams' counters."""


def tagged_path(path: str, tag: str) -> str:
    """``out/meta.jsonl`` with tag ``w1`` → ``out/meta.w1.jsonl``; no extension: added at the
    end."""
    folder, slash, name = path.rpartition("/")
    stem, dot, extension = name.rpartition(".")
    tagged = f"{stem}.{tag}.{extension}" if dot and stem else f"{name}.{tag}"
    return f"{folder}{slash}{tagged}"


def worker_config(
    config: PipelineConfig,
    sources: Sequence[Any],
    *,
    index: int,
    worker_tag: str,
    run_tag: str,
    gpu: int | None,
    cores: int | None = None,
) -> PipelineConfig:
    """``config`` as worker ``index`` runs it: ``sources`` only, outputs renamed (files with
    ``run_tag``, outboxes with ``worker_tag``), RTSP ports moved by ``index``, no web-view sink
    (the supervisor serves the API), and on a GPU, every GPU setting pointing at the one GPU the
    worker sees. ``cores``: the CPU cores that are the worker's share, which CPU models left to
    their defaults size their copies and threads by instead of every core of the machine."""
    sinks: list[Any] = []
    for position, sink in enumerate(config.sinks):
        if isinstance(sink, WebViewProperties):
            continue
        if sink.name is None:  # the name it has in one process, whatever sinks are left out
            sink = sink.model_copy(update={"name": f"{sink.type}{position}"})
        if isinstance(sink, (JsonlSinkProperties, FileSinkProperties)) and sink.path != "-":
            sink = sink.model_copy(update={"path": tagged_path(sink.path, run_tag)})
        elif isinstance(sink, BrokerSinkProperties):
            outbox = sink.outbox or f"out/outbox-{sink.name}.sqlite"
            sink = sink.model_copy(update={"outbox": tagged_path(outbox, worker_tag)})
        elif isinstance(sink, RtspSinkProperties) and sink.port != 0:
            sink = sink.model_copy(update={"port": sink.port + index})
        sinks.append(sink)
    if not sinks:
        sinks.append(FakeSinkProperties())
    infer = [_on_cores(model, cores) for model in config.infer] if cores else list(config.infer)
    if gpu is not None:
        # CUDA_VISIBLE_DEVICES shows the worker its GPU alone, as device 0.
        sources = [
            source.model_copy(update={"gpu_id": 0})
            if getattr(source, "decoder", "cpu") != "cpu"
            else source
            for source in sources
        ]
        infer = [
            model.model_copy(update={"gpu_id": 0}) if model.device != "cpu" else model
            for model in infer
        ]
    return config.model_copy(
        update={
            "sources": list(sources),
            "sinks": sinks,
            "infer": infer,
            "http": None,
            "perf": PerfProperties(interval_s=0),
        }
    )


def _on_cores(model: InferProperties, cores: int) -> InferProperties:
    """``model`` with the copies and threads it would take on a machine of ``cores`` cores:
    workers that each took every core would run several times more threads than there are."""
    if model.device != "cpu" or model.backend != "onnxruntime":
        return model
    if model.network_type == "classifier":  # one copy, on every core it has
        return model if model.threads else model.model_copy(update={"threads": cores})
    instances = model.instances or max(1, min(4, cores))
    threads = model.threads or max(1, cores // instances)
    return model.model_copy(update={"instances": instances, "threads": threads})
