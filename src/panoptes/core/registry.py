"""Element kinds, mapped to ``"module:Class"`` strings imported only when a kind is used.

An element whose module needs an optional dependency (Kafka, Triton, CUDA) costs nothing until a
configuration asks for it.
"""

from __future__ import annotations

import importlib
from typing import Any

from panoptes.core.errors import PipelineError

KINDS: dict[str, str] = {
    "uri-source": "panoptes.elements.uri_source:UriSource",
    "test-source": "panoptes.elements.test_source:TestSource",
    "mux": "panoptes.elements.mux:Mux",
    "infer": "panoptes.elements.infer:Infer",
    "tracker": "panoptes.elements.tracker:Tracker",
    "record": "panoptes.elements.record:RecordElement",
    "analytics": "panoptes.elements.analytics:Analytics",
    "tiler": "panoptes.elements.tiler:Tiler",
    "osd": "panoptes.elements.osd:Osd",
    "fakesink": "panoptes.elements.fakesink:FakeSink",
    "jsonl": "panoptes.elements.jsonl:JsonlSink",
    "file": "panoptes.elements.file_sink:FileSink",
    "snapshot": "panoptes.elements.snapshot:SnapshotSink",
    "mqtt": "panoptes.elements.mqtt_sink:MqttSink",
    "kafka": "panoptes.elements.kafka_sink:KafkaSink",
    "redis": "panoptes.elements.redis_sink:RedisSink",
    "web-view": "panoptes.elements.web_view:WebView",
    "rtsp": "panoptes.elements.rtsp_sink:RtspSink",
    "to-cpu": "panoptes.elements.convert:ToCpu",
    "to-cuda": "panoptes.elements.convert:ToCuda",
}


def load_kind(kind: str) -> Any:
    """The class registered for ``kind``; an unknown kind's error lists the known ones."""
    try:
        target = KINDS[kind]
    except KeyError:
        known = ", ".join(sorted(KINDS))
        raise PipelineError(f"unknown element kind {kind!r}; known kinds: {known}") from None
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)
