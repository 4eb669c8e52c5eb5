"""The native configuration schema. Element sections are the elements' own property models, so
the docs, ``panoptes inspect`` and validation all come from one place."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from panoptes.elements.analytics import AnalyticsProperties
from panoptes.elements.fakesink import FakeSinkProperties
from panoptes.elements.file_sink import FileSinkProperties
from panoptes.elements.infer import InferProperties
from panoptes.elements.jsonl import JsonlSinkProperties
from panoptes.elements.kafka_sink import KafkaSinkProperties
from panoptes.elements.mqtt_sink import MqttSinkProperties
from panoptes.elements.mux import MuxProperties
from panoptes.elements.osd import OsdProperties
from panoptes.elements.record import RecordProperties
from panoptes.elements.redis_sink import RedisSinkProperties
from panoptes.elements.rtsp_sink import RtspSinkProperties
from panoptes.elements.snapshot import SnapshotSinkProperties
from panoptes.elements.test_source import TestSourceProperties
from panoptes.elements.tiler import TilerProperties
from panoptes.elements.tracker import TrackerProperties
from panoptes.elements.uri_source import UriSourceProperties
from panoptes.elements.web_view import HttpProperties, WebViewProperties


def _source_kind(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("type", "uri-source"))
    return str(getattr(value, "type", "uri-source"))


def _sink_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        kind = value.get("type")
        return None if kind is None else str(kind)
    return str(getattr(value, "type", None))


SourceConfig = Annotated[
    Annotated[UriSourceProperties, Tag("uri-source")]
    | Annotated[TestSourceProperties, Tag("test-source")],
    Discriminator(
        _source_kind,
        custom_error_type="source_type",
        custom_error_message="unknown source type; known: uri-source, test-source",
    ),
]

SINK_KINDS = (
    "fakesink",
    "jsonl",
    "file",
    "snapshot",
    "mqtt",
    "kafka",
    "redis",
    "web-view",
    "rtsp",
)
"""The ``type`` of each sink, one per line, as tagged in :data:`SinkConfig`."""

SinkConfig = Annotated[
    Annotated[FakeSinkProperties, Tag("fakesink")]
    | Annotated[JsonlSinkProperties, Tag("jsonl")]
    | Annotated[FileSinkProperties, Tag("file")]
    | Annotated[SnapshotSinkProperties, Tag("snapshot")]
    | Annotated[MqttSinkProperties, Tag("mqtt")]
    | Annotated[KafkaSinkProperties, Tag("kafka")]
    | Annotated[RedisSinkProperties, Tag("redis")]
    | Annotated[WebViewProperties, Tag("web-view")]
    | Annotated[RtspSinkProperties, Tag("rtsp")],
    Discriminator(
        _sink_kind,
        custom_error_type="sink_type",
        custom_error_message="unknown or missing sink type; known: " + ", ".join(SINK_KINDS),
    ),
]


def _default_sinks() -> list[SinkConfig]:
    return [FakeSinkProperties()]


class PerfProperties(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    interval_s: float = Field(
        5.0, ge=0, description="Seconds between performance reports (**PERF lines); 0 = none."
    )


class WorkersProperties(BaseModel):
    """Several pipeline processes on one host, the sources shared out between them (see
    ``docs/workers.md``). ``workers: 2`` is short for ``workers: {count: 2}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int | None = Field(
        None,
        ge=1,
        description="Pipeline processes (workers); the sources are shared out evenly, each "
        "worker with its own decoders, models and caches. Default: one per GPU of gpus, else 1 "
        "(the pipeline runs in the panoptes process itself).",
    )
    gpus: Literal["all"] | list[Annotated[int, Field(ge=0)]] | None = Field(
        None,
        description="'all': one worker per GPU found; a list of GPU ids: one worker per id. "
        "Each worker sees only its GPU (CUDA_VISIBLE_DEVICES), so its decoders and models run "
        "there whatever gpu_id the config names. None: the devices the config names.",
    )
    restart_attempts: int = Field(
        5,
        ge=-1,
        description="Times a worker that dies (a crash, a kill) is started again with its "
        "streams before they are given up as failed; -1 = forever.",
    )
    restart_backoff_s: float = Field(
        1.0, gt=0, description="Wait before a worker's first restart; doubles after each."
    )
    restart_backoff_max_s: float = Field(
        30.0, gt=0, description="Longest wait between two restarts of a worker."
    )

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpu_list(cls, value: Any) -> Any:
        """'all', a list of ids, or the command line's '0,1'."""
        if value is None or value == "all":
            return value
        ids = value
        if isinstance(value, str):
            ids = [part.strip() for part in value.split(",") if part.strip()]
        elif isinstance(value, int) and not isinstance(value, bool):
            ids = [value]
        if not isinstance(ids, list) or not ids or not all(str(i).isdigit() for i in ids):
            raise ValueError(f"expected 'all' or GPU ids such as [0, 1], not {value!r}")
        if len(set(map(int, ids))) != len(ids):
            raise ValueError(f"a GPU is named twice in {value!r}")
        return [int(item) for item in ids]


class ProbeConfig(BaseModel):
    """A Python function called on each batch an element outputs (a probe)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    element: str = Field(description="Name of the element whose output it sees, or 'mux'.")
    function: str = Field(
        description="'file.py:function' (relative to the config's folder) or "
        "'package.module:function'; called as function(batch)."
    )


class PipelineConfig(BaseModel):
    """A whole pipeline: sources, mux, models, sinks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: list[SourceConfig] = Field(min_length=1, description="The streams to read.")
    mux: MuxProperties = Field(default_factory=MuxProperties, description="Batching.")
    infer: list[InferProperties] = Field(
        default_factory=list, description="Models, run in order on each batch."
    )
    tracker: TrackerProperties | None = Field(
        None, description="Object tracking, after the models; none by default."
    )
    analytics: AnalyticsProperties | None = Field(
        None,
        description="Zones, counting lines, overcrowding and directions of travel on the tracked "
        "objects (DeepStream's nvdsanalytics), after the tracker and the secondary models; "
        "none by default.",
    )
    record: RecordProperties | None = Field(
        None,
        description="Smart recording (DeepStream's smart record): on an analytics event, a "
        "probe's frame.request_recording() or a start() call, save a clip of the stream from "
        "before_s before to after_s after, copied from its H.264/HEVC packets without "
        "re-encoding; the clip's path goes into the events (extra.video_path) and a bus message. "
        "Runs after every element that raises events; none by default.",
    )
    tiler: TilerProperties | None = Field(
        None, description="Tile every stream into one picture for the video sinks."
    )
    osd: OsdProperties | None = Field(
        None, description="Draw boxes and labels onto the frames for the video sinks."
    )
    sinks: list[SinkConfig] = Field(
        default_factory=_default_sinks, description="Outputs; default a fakesink."
    )
    probes: list[ProbeConfig] = Field(
        default_factory=list, description="Python functions that read and change metadata."
    )
    perf: PerfProperties = Field(default_factory=PerfProperties, description="Performance reports.")
    queue_size: int = Field(2, ge=1, description="Batches held between two elements.")
    http: HttpProperties | None = Field(
        None,
        description="HTTP server: a web page with the live view and the streams, a REST API to "
        "list, add and remove streams, health, and Prometheus metrics; none by default.",
    )
    keep_alive: bool = Field(
        False,
        description="Keep running when every source has ended, for sources added at run time; "
        "stop with Ctrl-C or SIGTERM.",
    )
    workers: WorkersProperties = Field(
        default_factory=WorkersProperties,
        description="Worker processes on this host, one per GPU with gpus: all; a number is "
        "the count. The command line's --workers and --gpus take precedence.",
    )

    @field_validator("workers", mode="before")
    @classmethod
    def _workers_count(cls, value: Any) -> Any:
        return {"count": value} if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _names_unique(self) -> PipelineConfig:
        seen: dict[str, str] = {}
        sections: list[tuple[str, list[Any]]] = [("infer", self.infer), ("sinks", self.sinks)]
        singles = ("tracker", "analytics", "record", "tiler", "osd")
        sections += [(key, [getattr(self, key)]) for key in singles]
        for section, items in sections:
            for index, item in enumerate(items):
                if item is None or item.name is None:
                    continue
                place = section if section in singles else f"{section}[{index}]"
                if item.name in seen:
                    raise ValueError(
                        f"{place}.name: {item.name!r} is already the name of {seen[item.name]}"
                    )
                seen[item.name] = place
        return self
