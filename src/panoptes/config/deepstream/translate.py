"""deepstream-app configurations (INI or YAML, with their nvinfer and tracker files) translated
into panoptes' native schema, with a note for everything not honoured as it is.

Every key falls into one of three kinds (the table :data:`KEYS`, also the documentation page):
honoured (does what DeepStream does), approximated (something close is done, the note says what),
or not supported (a warning names it; nothing is silently dropped). Unknown groups and keys are
warned about by name and line, as deepstream-app does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from panoptes.config.deepstream.keyfile import Group, KeyFile
from panoptes.config.deepstream.yaml_forms import read_config_file, read_yaml_document
from panoptes.core.errors import ConfigError
from panoptes.media.reader import NETWORK_SCHEMES

Status = Literal["honoured", "approximated", "unsupported"]
NoteStatus = Literal["approximated", "unsupported", "unknown"]

H: Status = "honoured"
A: Status = "approximated"
U: Status = "unsupported"

# What panoptes does with each group's keys. One table for the translation, for `validate`'s
# report and for docs/deepstream.md.
KEYS: dict[str, dict[str, tuple[Status, str]]] = {
    "application": {
        "enable-perf-measurement": (H, "perf.interval_s (0 when off)"),
        "perf-measurement-interval-sec": (H, "perf.interval_s"),
        "gie-kitti-output-dir": (U, "KITTI files are not written; use a jsonl sink"),
        "kitti-track-output-dir": (U, "KITTI files are not written; use a jsonl sink"),
        "terminated-track-output-dir": (U, "use batch.terminated_tracks in a probe"),
        "shadow-track-output-dir": (U, "not written"),
    },
    "tests": {"file-loop": (H, "loop: true on file sources")},
    "streammux": {
        "batch-size": (H, "mux.batch_size"),
        "batched-push-timeout": (H, "mux.batched_push_timeout_ms (microseconds → ms)"),
        "width": (H, "mux.width"),
        "height": (H, "mux.height"),
        "enable-padding": (H, "mux.keep_aspect"),
        "live-source": (A, "liveness comes from each source's URI"),
        "gpu-id": (A, "GPU memory is not configured by hand"),
        "nvbuf-memory-type": (A, "GPU memory is not configured by hand"),
        "buffer-pool-size": (A, "queues are sized by queue_size"),
        "attach-sys-ts-as-ntp": (A, "frames carry the wall-clock capture time"),
        "sync-inputs": (A, "files are read as fast as the pipeline takes them"),
        "config-file": (U, "the new nvstreammux's config file is not read"),
    },
    "source": {
        "enable": (H, "a source per enabled group, in file order"),
        "type": (H, "2 URI, 3 multi-URI, 4 RTSP; 1 and 5 (cameras) are not supported"),
        "uri": (H, "uri (relative to the config's folder)"),
        "num-sources": (H, "type 3 repeats the source (a %d in the uri is the index)"),
        "drop-frame-interval": (H, "drop_frame_interval"),
        "camera-id": (A, "sources are numbered in file order"),
        "gpu-id": (A, "decoding runs on the CPU here"),
        "cudadec-memtype": (A, "decoding runs on the CPU here"),
        "nvbuf-memory-type": (A, "decoding runs on the CPU here"),
        "num-extra-surfaces": (A, "queues are sized by queue_size"),
        "intra-decode-enable": (A, "every frame is decoded"),
        "latency": (A, "live sources drop old frames instead of buffering"),
        "select-rtp-protocol": (A, "RTSP over TCP (?transport=udp on the uri for UDP)"),
        "rtsp-reconnect-interval-sec": (H, "stall_timeout_s (0: the open timeout)"),
        "rtsp-reconnect-attempts": (H, "reconnect_attempts (-1: forever)"),
        "smart-record": (
            A,
            "record.sources; clips start on analytics events, probe requests and "
            "POST /api/v1/record/start (cloud messages are not read)",
        ),
        "smart-rec-dir-path": (H, "record.dir"),
        "smart-rec-file-prefix": (H, "record.prefix"),
        "smart-rec-cache": (H, "record.cache_s"),
        "smart-rec-container": (H, "record.container (0 mp4, 1 mkv)"),
        "smart-rec-default-duration": (H, "record.default_duration_s"),
        "smart-rec-duration": (H, "record.after_s"),
        "smart-rec-start-time": (H, "record.before_s"),
        "smart-rec-interval": (H, "record.min_interval_s"),
        "camera-width": (U, "cameras (type 1, 5) are not supported"),
        "camera-height": (U, "cameras (type 1, 5) are not supported"),
        "camera-fps-n": (U, "cameras (type 1, 5) are not supported"),
        "camera-fps-d": (U, "cameras (type 1, 5) are not supported"),
        "camera-v4l2-dev-node": (U, "cameras (type 1, 5) are not supported"),
        "camera-csi-sensor-id": (U, "cameras (type 1, 5) are not supported"),
    },
    "sink": {
        "enable": (H, "a sink per enabled group"),
        "type": (H, "1 fakesink, 3 file, 4 RTSP, 6 message broker; 2, 5 become a fakesink"),
        "output-file": (H, "file sink path (relative to the working folder, as DeepStream)"),
        "container": (H, "1 mp4, 2 mkv: the file's extension"),
        "codec": (H, "1 h264, 2 h265"),
        "bitrate": (H, "bitrate_kbps (bits/s → kbit/s)"),
        "sync": (A, "files are written as fast as frames come"),
        "qos": (A, "no QoS events"),
        "enc-type": (A, "software encoding (libx264/libx265)"),
        "iframeinterval": (H, "RTSP sink gop (file sinks keep the encoder's default)"),
        "profile": (A, "the encoder's default profile"),
        "gpu-id": (A, "encoding runs on the CPU here"),
        "nvbuf-memory-type": (A, "encoding runs on the CPU here"),
        "source-id": (A, "video sinks take the tiled (or per-stream) output"),
        "link-to-demux": (A, "video sinks take the tiled (or per-stream) output"),
        "width": (A, "the tiler's size"),
        "height": (A, "the tiler's size"),
        "rtsp-port": (H, "rtsp sink port (served at /ds-test)"),
        "udp-port": (A, "RTP leaves from the RTSP server's own ports"),
        "udp-buffer-size": (A, "RTP leaves from the RTSP server's own ports"),
        "msg-conv-config": (H, "broker sink msg_conv_config (sensors, places, modules)"),
        "msg-conv-payload-type": (H, "broker sink payload: 0 deepstream-full, 1 minimal"),
        "msg-conv-frame-interval": (H, "broker sink frame_interval"),
        "msg-broker-proto-lib": (H, "the sink's kind: the MQTT, Kafka or Redis adaptor"),
        "msg-broker-conn-str": (H, "broker host and port (brokers for Kafka, url for Redis)"),
        "msg-broker-config": (H, "the adaptor's [message-broker] settings"),
        "topic": (H, "broker sink topic (Redis: stream)"),
        "msg-conv-msg2p-lib": (A, "payloads are made by panoptes' own converter"),
        "msg-conv-comp-id": (A, "events come from every model"),
        "msg-broker-comp-id": (A, "events come from every model"),
        "msg-conv-msg2p-new-api": (A, "events come from the frame and object metadata"),
        "new-api": (A, "events come from the frame and object metadata"),
        "disable-msgconv": (A, "[message-converter] settings fill the keys the sink lacks"),
        "display-id": (U, "no screen output"),
        "overlay-id": (U, "no screen output"),
        "offset-x": (U, "no screen output"),
        "offset-y": (U, "no screen output"),
    },
    "osd": {
        "enable": (H, "osd (drawn when a video sink exists)"),
        "border-width": (H, "osd.border_width"),
        "text-size": (H, "osd.font_scale (text-size / 30)"),
        "show-clock": (H, "osd.clock"),
        "display-text": (H, "osd.show_label and show_confidence"),
        "display-bbox": (H, "osd.border_width 0 when off"),
        "text-color": (A, "labels are white"),
        "text-bg-color": (A, "osd.text_background on; the colour is the class colour"),
        "font": (A, "OpenCV's Hershey font"),
        "clock-x-offset": (A, "the clock is at the top left"),
        "clock-y-offset": (A, "the clock is at the top left"),
        "clock-text-size": (A, "the clock uses font_scale"),
        "clock-color": (A, "the clock is white"),
        "display-mask": (A, "no masks are made"),
        "process-mode": (A, "drawing runs on the CPU"),
        "gpu-id": (A, "drawing runs on the CPU"),
        "nvbuf-memory-type": (A, "drawing runs on the CPU"),
        "hw-blend-color-attr": (A, "drawing runs on the CPU"),
    },
    "tiled-display": {
        "enable": (H, "tiler (used when a video sink exists)"),
        "rows": (H, "tiler.rows"),
        "columns": (H, "tiler.columns"),
        "width": (H, "tiler.width"),
        "height": (H, "tiler.height"),
        "gpu-id": (A, "tiling runs on the CPU"),
        "nvbuf-memory-type": (A, "tiling runs on the CPU"),
        "compute-hw": (A, "tiling runs on the CPU"),
        "square-seq-grid": (A, "tiles in source order"),
    },
    "primary-gie": {
        "enable": (H, "the first infer element"),
        "config-file": (H, "the nvinfer file's [property] and [class-attrs-*] (see below)"),
        "gie-unique-id": (H, "infer gie_id (overrides the model file's)"),
        "interval": (H, "infer interval (overrides the model file's)"),
        "labelfile-path": (H, "infer labels (overrides the model file's)"),
        "model-engine-file": (A, "see [property] model-engine-file"),
        "batch-size": (A, "see [property] batch-size"),
        "bbox-border-color": (H, "osd.class_colors per class (bbox-border-colorN)"),
        "bbox-bg-color": (A, "labels have a filled background in the class colour"),
        "operate-on-gie-id": (H, "infer operate_on_gie_id"),
        "operate-on-class-ids": (H, "infer operate_on_class_ids"),
        "gpu-id": (A, "inference runs on the CPU with onnxruntime"),
        "nvbuf-memory-type": (A, "inference runs on the CPU with onnxruntime"),
        "plugin-type": (A, "0 (nvinfer) only; 1 (nvinferserver) is not read yet"),
        "input-tensor-meta": (U, "no pre-process element"),
        "infer-raw-output-dir": (U, "raw outputs are not dumped; use output_tensor_meta"),
    },
    "nvds-analytics": {
        "enable": (H, "analytics"),
        "config-file": (H, "analytics rules (docs: the nvdsanalytics keys)"),
        "gpu-id": (A, "analytics run on the CPU"),
        "unique-id": (A, "analytics results are not told apart by id"),
    },
    "tracker": {
        "enable": (H, "tracker"),
        "ll-config-file": (A, "the tracker file's kind picks the nearest tracker (see below)"),
        "ll-lib-file": (A, "panoptes' own trackers"),
        "tracker-width": (A, "tracking works in frame pixels"),
        "tracker-height": (A, "tracking works in frame pixels"),
        "display-tracking-id": (H, "osd.show_track_id"),
        "gpu-id": (A, "tracking runs on the CPU"),
        "enable-batch-process": (A, "streams are tracked one after another in each batch"),
        "enable-past-frame": (A, "ended tracks are listed in batch.terminated_tracks"),
        "tracking-surface-type": (A, "no surfaces"),
        "compute-hw": (A, "tracking runs on the CPU"),
        "tracking-id-reset-mode": (A, "ids are unique over the whole run"),
        "input-tensor-meta": (U, "no pre-process element"),
        "user-meta-pool-size": (A, "no pools"),
        "sub-batches": (A, "one tracker per stream"),
    },
    "property": {
        "onnx-file": (H, "infer model"),
        "model-engine-file": (
            A,
            "a TensorRT engine is not used by onnxruntime on the CPU: the model comes from "
            "onnx-file",
        ),
        "labelfile-path": (H, "infer labels"),
        "batch-size": (A, "batches come from the mux; model copies share each batch"),
        "network-mode": (A, "the CPU runs the model in its own precision (FP32 or the INT8 graph)"),
        "int8-calib-file": (A, "no calibration: INT8 models are quantized in the ONNX file"),
        "num-detected-classes": (A, "the class count comes from the model's outputs"),
        "interval": (H, "infer interval"),
        "gie-unique-id": (H, "infer gie_id"),
        "process-mode": (H, "infer process_mode (1 primary, 2 secondary)"),
        "operate-on-gie-id": (H, "infer operate_on_gie_id"),
        "operate-on-class-ids": (H, "infer operate_on_class_ids"),
        "network-type": (H, "0 detector, 1 classifier, 100 other (tensor meta only)"),
        "cluster-mode": (H, "2 NMS, 4 none; 0, 1, 3 (grouping, DBSCAN, hybrid) → NMS"),
        "maintain-aspect-ratio": (H, "preprocess.keep_ratio"),
        "symmetric-padding": (H, "preprocess.pad_position center (else top-left)"),
        "net-scale-factor": (H, "preprocess.std = 1 / net-scale-factor"),
        "offsets": (H, "preprocess.mean"),
        "model-color-format": (H, "preprocess.color_order (0 RGB, 1 BGR; 2 grey unsupported)"),
        "infer-dims": (A, "the input size comes from the model"),
        "output-tensor-meta": (H, "infer output_tensor_meta"),
        "parse-bbox-func-name": (
            A,
            "known C parsers map to the built-in parser for the model's outputs; "
            "python:module:function names a Python parser",
        ),
        "custom-lib-path": (A, "C libraries are not loaded: the parsers are built in"),
        "engine-create-func-name": (A, "no engines are built"),
        "classifier-threshold": (H, "infer classifier_threshold"),
        "classifier-async-mode": (A, "classification runs in the pipeline's own thread"),
        "secondary-reinfer-interval": (H, "infer reinfer_interval"),
        "input-object-min-width": (H, "infer input_object_min_width"),
        "input-object-min-height": (H, "infer input_object_min_height"),
        "input-object-max-width": (H, "infer input_object_max_width"),
        "input-object-max-height": (H, "infer input_object_max_height"),
        "output-blob-names": (A, "every output is read"),
        "gpu-id": (A, "inference runs on the CPU"),
        "workspace-size": (A, "no engines are built"),
        "force-implicit-batch-dim": (A, "no engines are built"),
        "scaling-filter": (A, "bilinear scaling"),
        "scaling-compute-hw": (A, "scaling runs on the CPU"),
        "filter-out-class-ids": (U, "not supported; use operate-on-class-ids downstream"),
        "uff-file": (U, "UFF models cannot run here: export the model to ONNX"),
        "model-file": (U, "Caffe or Darknet models cannot run here: export the model to ONNX"),
        "proto-file": (U, "Caffe models cannot run here: export the model to ONNX"),
        "tlt-encoded-model": (U, "TAO .etlt models cannot run here: export the model to ONNX"),
        "tlt-model-key": (U, "TAO .etlt models cannot run here: export the model to ONNX"),
        "custom-network-config": (U, "Darknet models cannot run here: export the model to ONNX"),
        "uff-input-blob-name": (U, "UFF models cannot run here"),
        "uff-input-order": (U, "UFF models cannot run here"),
    },
    "class-attrs": {
        "pre-cluster-threshold": (H, "infer threshold ([class-attrs-N]: class_thresholds)"),
        "threshold": (H, "infer threshold (the older name)"),
        "nms-iou-threshold": (H, "infer nms_iou"),
        "topk": (H, "infer topk"),
        "post-cluster-threshold": (A, "the pre-cluster threshold is the only one"),
        "eps": (A, "NMS instead of DBSCAN"),
        "minBoxes": (A, "NMS instead of DBSCAN"),
        "dbscan-min-score": (A, "NMS instead of DBSCAN"),
        "group-threshold": (A, "NMS instead of rectangle grouping"),
        "detected-min-w": (U, "not supported yet"),
        "detected-min-h": (U, "not supported yet"),
        "detected-max-w": (U, "not supported yet"),
        "detected-max-h": (U, "not supported yet"),
        "roi-top-offset": (U, "not supported yet"),
        "roi-bottom-offset": (U, "not supported yet"),
    },
}
KEYS["secondary-gie"] = {
    **KEYS["primary-gie"],
    "enable": (H, "an infer element in secondary mode"),
}

GROUPS: dict[str, tuple[Status, str]] = {
    "application": (H, "perf reports"),
    "tests": (H, "file-loop"),
    "streammux": (H, "mux"),
    "source": (H, "sources"),
    "sink": (H, "sinks"),
    "osd": (H, "osd"),
    "tiled-display": (H, "tiler"),
    "primary-gie": (H, "infer[0]"),
    "secondary-gie": (H, "infer elements in secondary mode"),
    "tracker": (H, "tracker"),
    "nvds-analytics": (H, "analytics (its config_nvdsanalytics.txt read as it is)"),
    "message-converter": (A, "its settings fill the keys a type=6 sink lacks"),
    "message-consumer": (U, "message consumers are not supported"),
    "pre-process": (U, "nvdspreprocess is not supported"),
    "img-save": (U, "use a snapshot sink"),
    "ds-example": (U, "dsexample is a sample plugin"),
    "dewarper": (U, "no dewarping"),
    "source-list": (U, "use [sourceN] groups"),
    "source-attr-all": (U, "use [sourceN] groups"),
}

# C parser names of NVIDIA's samples and the community's DeepStream-Yolo, all decoded by the
# built-in parser that the model's outputs call for (the same name has meant several layouts).
KNOWN_PARSERS = frozenset(
    {
        "NvDsInferParseYolo",
        "NvDsInferParseYoloCuda",
        "NvDsInferParseYoloE",
        "NvDsInferParseYoloECuda",
        "NvDsInferParseCustomYoloV7",
        "NvDsInferParseCustomYoloV7_cuda",
        "NvDsInferParseCustomYoloV5",
        "NvDsInferParseCustomYoloV8",
        "NvDsInferParseCustomYoloX",
        "NvDsInferParseCustomEfficientNMS",
        "NvDsInferParseCustomBatchedNMSTLT",
        "NvDsInferParseCustomYoloV4",
        "NvDsInferParseYoloV8",
        "NvDsInferParseYOLOX",
    }
)


@dataclass(frozen=True)
class Note:
    """What happens to one key or group that is not honoured as it is."""

    status: NoteStatus
    place: str
    """``app.txt:12 [sink0] type``."""
    text: str

    def __str__(self) -> str:
        return f"{self.place}: {self.status}: {self.text}"


@dataclass
class Translation:
    """A DeepStream configuration as a native config dict, with its notes."""

    config: dict[str, Any]
    base_dir: Path
    notes: list[Note] = field(default_factory=list)
    honoured: int = 0
    """Keys honoured as they are."""

    def report(self) -> str:
        counts = {
            status: sum(n.status == status for n in self.notes)
            for status in ("approximated", "unsupported", "unknown")
        }
        lines = [
            f"{self.honoured} keys honoured, {counts['approximated']} approximated, "
            f"{counts['unsupported']} not supported, {counts['unknown']} unknown"
        ]
        lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)


def key_table_markdown() -> str:
    """The table of every group and key and what panoptes does with it (docs/deepstream.md)."""
    lines = ["| group | key | panoptes | what is done |", "| --- | --- | --- | --- |"]
    for group, (status, text) in GROUPS.items():
        lines.append(f"| `[{group}]` | (group) | {status} | {text} |")
        for key, (key_status, key_text) in KEYS.get(group, {}).items():
            lines.append(f"| `[{group}]` | `{key}` | {key_status} | {key_text} |")
    for group in ("property", "class-attrs"):
        name = "class-attrs-all / class-attrs-N" if group == "class-attrs" else group
        for key, (key_status, key_text) in KEYS[group].items():
            lines.append(f"| nvinfer `[{name}]` | `{key}` | {key_status} | {key_text} |")
    return "\n".join(lines) + "\n"


def is_deepstream_config(path: Path) -> bool:
    """Whether ``path`` is a deepstream-app configuration rather than a native YAML file."""
    if path.suffix.lower() in (".txt", ".ini", ".cfg"):
        return True
    if path.suffix.lower() not in (".yml", ".yaml"):
        return False
    try:
        head = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return (
        re.search(r"^(primary-gie|streammux|application|tiled-display)\s*:", head, re.M) is not None
    )


def translate_app_config(path: str | Path) -> Translation:
    """Read a deepstream-app configuration (and the files it names) into the native schema."""
    return _Translator(Path(path)).run()


class _Translator:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.notes: list[Note] = []
        self.honoured = 0
        self.config: dict[str, Any] = {}
        self._osd: dict[str, Any] = {}
        """What other groups say about drawing ([primary-gie] colours, [tracker] ids)."""

    # -- bookkeeping ----------------------------------------------------------------------------

    def _note(
        self, status: Literal["approximated", "unsupported", "unknown"], place: str, text: str
    ) -> None:
        self.notes.append(Note(status, place, text))

    def _account(self, group: Group, table: str, *, skip: tuple[str, ...] = ()) -> None:
        """A note for each key of ``group`` that is not honoured; unknown keys by name."""
        known = KEYS[table]
        for key in group:
            if key in skip:
                continue
            family = re.sub(r"\d+$", "", key)
            status, text = known.get(key) or known.get(family) or (None, "")
            if status is None:
                self._note("unknown", group.place(key), "unknown key, not used")
            elif status == H:
                self.honoured += 1
            else:
                self._note("approximated" if status == A else "unsupported", group.place(key), text)

    # -- the whole file -------------------------------------------------------------------------

    def run(self) -> Translation:
        app = read_config_file(self.path)
        for group in app.values():
            if group.kind not in GROUPS:
                self._note("unknown", group.place(), "unknown group, not used")
                continue
            status, text = GROUPS[group.kind]
            if status == U and group.enabled:
                self._note("unsupported", group.place(), text)
        self._application(app)
        self._streammux(app)
        self._sources(app)
        self._gies(app)
        self._tracker(app)
        self._analytics(app)
        self._display(app)
        self._sinks(app)
        return Translation(self.config, self.path.resolve().parent, self.notes, self.honoured)

    def _application(self, app: KeyFile) -> None:
        group = app.get("application")
        if group is None:
            return
        self._account(group, "application")
        if group.get_integer("enable-perf-measurement", 0):
            interval = group.get_integer("perf-measurement-interval-sec", 5)
            self.config["perf"] = {"interval_s": max(0, interval)}
        else:
            self.config["perf"] = {"interval_s": 0}

    def _streammux(self, app: KeyFile) -> None:
        group = app.get("streammux")
        if group is None:
            return
        self._account(group, "streammux")
        mux: dict[str, Any] = {}
        if "batch-size" in group:
            mux["batch_size"] = group.get_integer("batch-size")
        if "batched-push-timeout" in group:
            timeout_us = group.get_integer("batched-push-timeout")
            if timeout_us > 0:
                mux["batched_push_timeout_ms"] = timeout_us / 1000
        if group.get_integer("width", 0) > 0 and group.get_integer("height", 0) > 0:
            mux["width"] = group.get_integer("width")
            mux["height"] = group.get_integer("height")
        if "enable-padding" in group:
            mux["keep_aspect"] = group.get_integer("enable-padding") != 0
        self.config["mux"] = mux

    def _sources(self, app: KeyFile) -> None:
        loop = bool(app["tests"].get_integer("file-loop", 0)) if "tests" in app else False
        if "tests" in app:
            self._account(app["tests"], "tests")
        sources: list[dict[str, Any]] = []
        for _, group in app.groups_matching("source", order="file"):
            if not group.enabled:
                continue
            self._account(group, "source")
            kind = group.get_integer("type")
            if kind in (1, 5):
                self._note(
                    "unsupported",
                    group.place("type"),
                    f"type={kind} (a {'V4L2' if kind == 1 else 'CSI'} camera) is not supported; "
                    "the source is left out",
                )
                continue
            if kind not in (2, 3, 4):
                raise group.error("type", f"unknown source type {kind}; known: 1 to 5")
            uri = group.get_path("uri")
            count = group.get_integer("num-sources", 1) if kind == 3 else 1
            if group.get_integer("smart-record", 0) > 0:
                self._smart_record(group, list(range(len(sources), len(sources) + count)))
            for index in range(max(1, count)):
                source: dict[str, Any] = {"uri": _local(_indexed(uri, index))}
                if "drop-frame-interval" in group and group.get_integer("drop-frame-interval") > 1:
                    source["drop_frame_interval"] = group.get_integer("drop-frame-interval")
                if loop and not _is_network(uri):
                    source["loop"] = True
                if "rtsp-reconnect-interval-sec" in group:
                    source["stall_timeout_s"] = group.get_integer("rtsp-reconnect-interval-sec")
                if "rtsp-reconnect-attempts" in group:
                    source["reconnect_attempts"] = group.get_integer("rtsp-reconnect-attempts")
                sources.append(source)
        if not sources:
            raise ConfigError("no enabled [sourceN] group that panoptes can read", app.name)
        self.config["sources"] = sources

    def _smart_record(self, group: Group, source_ids: list[int]) -> None:
        """The ``record`` section from a source's smart-rec-* keys (the first such source's
        settings; later sources add their ids)."""
        record = self.config.get("record")
        if record is not None:
            record["sources"].extend(source_ids)
            return
        record = {"sources": source_ids}
        if "smart-rec-dir-path" in group:
            record["dir"] = group.get_string("smart-rec-dir-path")
        if "smart-rec-file-prefix" in group:
            record["prefix"] = group.get_string("smart-rec-file-prefix")
        if "smart-rec-container" in group:
            container = group.get_integer("smart-rec-container")
            if container not in (0, 1):
                raise group.error(
                    "smart-rec-container", f"expected 0 (mp4) or 1 (mkv), not {container}"
                )
            record["container"] = "mkv" if container == 1 else "mp4"
        for key, setting in (
            ("smart-rec-cache", "cache_s"),
            ("smart-rec-default-duration", "default_duration_s"),
            ("smart-rec-duration", "after_s"),
            ("smart-rec-start-time", "before_s"),
            ("smart-rec-interval", "min_interval_s"),
        ):
            if key in group:
                record[setting] = max(0, group.get_integer(key))
        self.config["record"] = record

    # -- models ---------------------------------------------------------------------------------

    def _gies(self, app: KeyFile) -> None:
        infers: list[dict[str, Any]] = []
        primary = app.get("primary-gie")
        if primary is not None and primary.enabled:
            infer = self._gie(primary, "primary-gie", primary=True)
            if infer is not None:
                infers.append(infer)
            colors = {
                number: _rgb(primary.get_double_list(entry.key), primary, entry.key)
                for number, entry in primary.numbered_keys("bbox-border-color")
            }
            if colors:
                self._osd["class_colors"] = colors
        for _, group in app.groups_matching("secondary-gie", order="file"):
            if group.enabled:
                infer = self._gie(group, "secondary-gie", primary=False)
                if infer is not None:
                    infers.append(infer)
        if infers:
            self.config["infer"] = infers

    def _gie(self, group: Group, table: str, *, primary: bool) -> dict[str, Any] | None:
        self._account(group, table)
        model_file = group.get_path("config-file")
        model_config = read_config_file(_local(model_file))
        infer: dict[str, Any] = {}
        keep = self._nvinfer(model_config, infer)
        if not keep:
            return None
        # The app's keys override the model file's, as deepstream-app does.
        if "gie-unique-id" in group:
            infer["gie_id"] = group.get_integer("gie-unique-id")
        if "interval" in group:
            infer["interval"] = group.get_integer("interval")
        if "labelfile-path" in group:
            infer["labels"] = _local(group.get_path("labelfile-path"))
        if "operate-on-gie-id" in group:
            infer["operate_on_gie_id"] = group.get_integer("operate-on-gie-id")
        if "operate-on-class-ids" in group:
            infer["operate_on_class_ids"] = group.get_integer_list("operate-on-class-ids")
        # deepstream-app forces the primary's mode whatever the model file says.
        infer["process_mode"] = "primary" if primary else "secondary"
        name = group.name if not primary else "primary-gie"
        infer["name"] = name
        return infer

    def _nvinfer(self, config: KeyFile, infer: dict[str, Any]) -> bool:
        """Fill ``infer`` from an nvinfer file; False when the model cannot run here."""
        prop = config.require("property")
        self._account(prop, "property")
        for key in ("uff-file", "model-file", "tlt-encoded-model", "custom-network-config"):
            if key in prop and "onnx-file" not in prop:
                raise prop.error(
                    key,
                    f"{KEYS['property'][key][1]}; give its ONNX form as onnx-file "
                    "(DeepStream-Yolo and TAO both export ONNX)",
                )
        if "onnx-file" not in prop:
            engine = prop.get_value("model-engine-file", None)
            hint = f" (model-engine-file {engine} is a TensorRT engine)" if engine else ""
            raise prop.error(None, f"no onnx-file{hint}: panoptes runs ONNX models")
        infer["model"] = _local(prop.get_path("onnx-file"))
        if "labelfile-path" in prop:
            infer["labels"] = _local(prop.get_path("labelfile-path"))
        for key, target in (
            ("interval", "interval"),
            ("gie-unique-id", "gie_id"),
            ("operate-on-gie-id", "operate_on_gie_id"),
            ("input-object-min-width", "input_object_min_width"),
            ("input-object-min-height", "input_object_min_height"),
            ("input-object-max-width", "input_object_max_width"),
            ("input-object-max-height", "input_object_max_height"),
        ):
            if key in prop:
                infer[target] = prop.get_integer(key)
        if "operate-on-class-ids" in prop:
            infer["operate_on_class_ids"] = prop.get_integer_list("operate-on-class-ids")
        if "classifier-threshold" in prop:
            infer["classifier_threshold"] = prop.get_double("classifier-threshold")
        if "secondary-reinfer-interval" in prop:
            infer["reinfer_interval"] = prop.get_integer("secondary-reinfer-interval")
        if prop.get_integer("output-tensor-meta", 0):
            infer["output_tensor_meta"] = True
        network = prop.get_integer("network-type", 0)
        if network in (2, 3):
            self._note(
                "unsupported",
                prop.place("network-type"),
                f"network-type={network} (segmentation) is not supported; the model is left out",
            )
            return False
        infer["network_type"] = {0: "detector", 1: "classifier", 100: "other"}.get(network)
        if infer["network_type"] is None:
            raise prop.error("network-type", f"unknown network-type {network}; known: 0-3, 100")
        infer["preprocess"] = self._preprocess(prop)
        parser = prop.get_string("parse-bbox-func-name", None)
        if parser is not None and parser.startswith("python:"):
            infer["parser"] = parser
        elif parser is not None and parser not in KNOWN_PARSERS:
            self._note(
                "approximated",
                prop.place("parse-bbox-func-name"),
                f"{parser} is not a parser panoptes knows by name: the built-in parser for the "
                "model's outputs is used (name a Python one as python:module:function)",
            )
        cluster = prop.get_integer("cluster-mode", 0)
        if cluster == 4:
            infer["nms_iou"] = 1.0  # nothing overlaps by more than everything: NMS keeps all
        elif cluster in (0, 1, 3):
            self._note(
                "approximated",
                prop.place("cluster-mode") if "cluster-mode" in prop else prop.place(),
                f"cluster-mode={cluster} ({_CLUSTER_NAMES[cluster]}) is done with NMS",
            )
        self._class_attrs(config, infer)
        return True

    def _preprocess(self, prop: Group) -> dict[str, Any]:
        # nvinfer's defaults where the file is silent: scale 1, no offsets, RGB, stretch.
        scale = prop.get_double("net-scale-factor", 1.0)
        offsets = prop.get_double_list("offsets", [0.0, 0.0, 0.0])
        color = prop.get_integer("model-color-format", 0)
        if color == 2:
            raise prop.error("model-color-format", "grey (2) models are not supported")
        if len(offsets) == 1:
            offsets = offsets * 3
        if len(offsets) != 3:
            raise prop.error("offsets", f"expected 3 values, got {len(offsets)}")
        if scale <= 0:
            raise prop.error("net-scale-factor", f"must be positive, got {scale}")
        keep_ratio = prop.get_integer("maintain-aspect-ratio", 0) != 0
        return {
            "color_order": "rgb" if color == 0 else "bgr",
            "mean": offsets,
            "std": [1.0 / scale] * 3,
            "keep_ratio": keep_ratio,
            "pad_position": "center" if prop.get_integer("symmetric-padding", 0) else "top-left",
            "pad_value": 0.0,
        }

    def _class_attrs(self, config: KeyFile, infer: dict[str, Any]) -> None:
        everything = config.get("class-attrs-all")
        if everything is not None:
            self._account(everything, "class-attrs")
            threshold = everything.get_double(
                "pre-cluster-threshold", everything.get_double("threshold", None)
            )
            if threshold is not None:
                infer["threshold"] = threshold
            if "nms-iou-threshold" in everything and infer.get("nms_iou") != 1.0:
                infer["nms_iou"] = everything.get_double("nms-iou-threshold")
            if everything.get_integer("topk", 0) > 0:
                infer["topk"] = everything.get_integer("topk")
        thresholds: dict[int, float] = {}
        for number, group in config.groups_matching("class-attrs-"):
            self._account(group, "class-attrs")
            value = group.get_double("pre-cluster-threshold", group.get_double("threshold", None))
            if value is not None:
                thresholds[number] = value
        if thresholds:
            infer["class_thresholds"] = thresholds

    # -- tracking, display, sinks ---------------------------------------------------------------

    def _analytics(self, app: KeyFile) -> None:
        from panoptes.config.deepstream.nvdsanalytics import read_nvdsanalytics_config

        group = app.get("nvds-analytics")
        if group is None or not group.enabled:
            return
        self._account(group, "nvds-analytics")
        if "config-file" not in group:
            raise group.error("config-file", "nvdsanalytics needs its config-file")
        rules = read_nvdsanalytics_config(_local(group.get_path("config-file")), notes=self.notes)
        self.config["analytics"] = rules.model_dump(mode="json", exclude_defaults=True)

    def _tracker(self, app: KeyFile) -> None:
        group = app.get("tracker")
        if group is None or not group.enabled:
            return
        self._account(group, "tracker")
        tracker: dict[str, Any] = {"type": "bytetrack"}
        if "ll-config-file" in group:
            path = _local(group.get_path("ll-config-file"))
            document = read_yaml_document(path)
            data = document.data if isinstance(document.data, dict) else {}
            kind = _tracker_kind(Path(path).name, data)
            tracker["type"] = {"IOU": "iou", "NvSORT": "sort"}.get(kind, "bytetrack")
            if kind in ("NvDCF", "NvDeepSORT"):
                self._note(
                    "approximated",
                    group.place("ll-config-file"),
                    f"{kind} (visual features) is approximated by ByteTrack",
                )
            management = data.get("TargetManagement") or {}
            if "maxShadowTrackingAge" in management:
                tracker["max_lost_frames"] = int(management["maxShadowTrackingAge"])
            if "probationAge" in management:
                tracker["min_hits"] = max(1, int(management["probationAge"]))
        if "display-tracking-id" in group:
            self._osd["show_track_id"] = bool(group.get_integer("display-tracking-id"))
        self.config["tracker"] = tracker

    def _display(self, app: KeyFile) -> None:
        tiled = app.get("tiled-display")
        if tiled is not None and tiled.enabled:
            self._account(tiled, "tiled-display")
            tiler: dict[str, Any] = {}
            for key in ("rows", "columns", "width", "height"):
                if tiled.get_integer(key, 0) > 0:
                    tiler[key] = tiled.get_integer(key)
            self.config["tiler"] = tiler
        osd_group = app.get("osd")
        if osd_group is None or not osd_group.enabled:
            return
        self._account(osd_group, "osd")
        colors = self._osd.pop("class_colors", None)
        osd: dict[str, Any] = dict(self._osd)
        if "border-width" in osd_group:
            osd["border_width"] = osd_group.get_integer("border-width")
        if osd_group.get_integer("text-size", 0) > 0:
            osd["font_scale"] = round(osd_group.get_integer("text-size") / 30, 3)
        if "show-clock" in osd_group:
            osd["clock"] = osd_group.get_integer("show-clock") != 0
        if not osd_group.get_integer("display-text", 1):
            osd["show_label"] = osd["show_confidence"] = False
        if not osd_group.get_integer("display-bbox", 1):
            osd["border_width"] = 0
        if colors:
            osd["class_colors"] = colors
        self.config["osd"] = osd

    def _sinks(self, app: KeyFile) -> None:
        sinks: list[dict[str, Any]] = []
        for _, group in app.groups_matching("sink", order="file"):
            if not group.enabled:
                continue
            self._account(group, "sink")
            kind = group.get_integer("type")
            if kind == 1:
                sinks.append({"type": "fakesink", "name": group.name})
            elif kind in (2, 5):
                self._note(
                    "approximated",
                    group.place("type"),
                    f"type={kind} (a screen) becomes a fakesink: there is no display; use a file "
                    "sink (type=3) to see the output",
                )
                sinks.append({"type": "fakesink", "name": group.name})
            elif kind == 3:
                sinks.append(self._file_sink(group))
            elif kind == 4:
                sinks.append(self._rtsp_sink(group))
            elif kind == 6:
                sinks.append(self._broker_sink(group, app.get("message-converter")))
            elif kind == 7:
                what = "nv3dsink"
                self._note(
                    "unsupported", group.place("type"), f"type={kind} ({what}) is not supported yet"
                )
            else:
                raise group.error("type", f"unknown sink type {kind}; known: 1 to 7")
        self.config["sinks"] = sinks or [{"type": "fakesink"}]

    def _broker_sink(self, group: Group, converter: Group | None) -> dict[str, Any]:
        """A type=6 sink: nvmsgconv + nvmsgbroker become one broker sink."""
        from panoptes.events.deepstream import sink_from_deepstream

        def setting(key: str) -> Group | None:
            if key in group:
                return group
            if converter is not None and converter.enabled and key in converter:
                return converter
            return None

        def path(key: str) -> str | None:
            source = setting(key)
            return None if source is None else _local(source.get_path(key))

        def integer(key: str) -> int | None:
            source = setting(key)
            return None if source is None else source.get_integer(key)

        if "msg-broker-proto-lib" not in group:
            raise group.error("msg-broker-proto-lib", "a type=6 sink needs its broker adaptor")
        try:
            made = sink_from_deepstream(
                group.get_string("msg-broker-proto-lib"),
                group.get_string("msg-broker-conn-str") if "msg-broker-conn-str" in group else None,
                group.get_string("topic") if "topic" in group else None,
                integer("msg-conv-payload-type") or 0,
                broker_config=path("msg-broker-config"),
                conv_config=path("msg-conv-config"),
                frame_interval=integer("msg-conv-frame-interval"),
                name=group.name,
            )
        except ConfigError as error:
            key = error.place if error.place in group else "msg-broker-proto-lib"
            raise group.error(key, error.reason) from error
        for key, reason in made.ignored:
            self._note("approximated", group.place(key) if key in group else group.place(), reason)
        return made.properties

    def _rtsp_sink(self, group: Group) -> dict[str, Any]:
        sink: dict[str, Any] = {"type": "rtsp", "name": group.name, "path": "/ds-test"}
        sink["port"] = group.get_integer("rtsp-port", 8554)
        if group.get_integer("codec", 1) != 1:
            self._note("approximated", group.place("codec"), "RTSP output is H.264 (codec=1) only")
        bitrate = group.get_integer("bitrate", 0)
        if bitrate > 0:
            sink["bitrate_kbps"] = max(1, bitrate // 1000)
        if "iframeinterval" in group:
            sink["gop"] = max(1, group.get_integer("iframeinterval"))
        return sink

    def _file_sink(self, group: Group) -> dict[str, Any]:
        container = group.get_integer("container", 1)
        if container not in (1, 2):
            raise group.error("container", f"unknown container {container}; known: 1 mp4, 2 mkv")
        extension = ".mp4" if container == 1 else ".mkv"
        output = group.get_string("output-file", f"out{extension}")
        # deepstream-app opens output-file as given: relative to the working folder.
        path = Path(output).expanduser()
        path = path if path.is_absolute() else Path.cwd() / path
        if path.suffix.lower() not in (".mp4", ".mkv", ".mov"):
            self._note(
                "approximated",
                group.place("output-file"),
                f"{path.name} gets the container's extension: {path.name}{extension}",
            )
            path = path.with_name(path.name + extension)
        sink: dict[str, Any] = {"type": "file", "name": group.name, "path": str(path)}
        codec = group.get_integer("codec", 1)
        if codec not in (1, 2):
            self._note(
                "approximated", group.place("codec"), f"codec={codec} is written as H.264 (1)"
            )
        sink["codec"] = "h265" if codec == 2 else "h264"
        bitrate = group.get_integer("bitrate", 0)
        if bitrate > 0:
            sink["bitrate_kbps"] = max(1, bitrate // 1000)
        return sink


_CLUSTER_NAMES = {0: "group rectangles", 1: "DBSCAN", 3: "DBSCAN + NMS hybrid"}


def _tracker_kind(name: str, data: dict[str, Any]) -> str:
    """IOU, NvSORT, NvDCF or NvDeepSORT, from the low-level tracker file."""
    for kind in ("NvDeepSORT", "NvDCF", "NvSORT", "IOU"):
        if kind.lower() in name.lower():
            return kind
    if "ReID" in data:
        return "NvDeepSORT"
    if "VisualTracker" in data:
        return "NvDCF"
    if "StateEstimator" in data:
        return "NvSORT"
    return "IOU"


def _rgb(values: list[float], group: Group, key: str) -> list[int]:
    if len(values) != 4:
        raise group.error(key, f"expected 4 values (r;g;b;a from 0 to 1), got {len(values)}")
    return [max(0, min(255, round(v * 255))) for v in values[:3]]


def _indexed(uri: str, index: int) -> str:
    """A multi-URI source's URI for source ``index`` (a printf %d in it takes the index)."""
    return re.sub(
        r"%0?\d*d",
        lambda m: (m.group(0)[1:-1] and f"{index:0{m.group(0)[1:-1]}d}") or str(index),
        uri,
    )


def _local(uri: str) -> str:
    """A resolved ``file:///abs`` as the path ``/abs``; other URIs as they are."""
    return uri[len("file://") :] if uri.startswith("file:///") else uri


def _is_network(uri: str) -> bool:
    return uri.partition("://")[0].lower() in NETWORK_SCHEMES


__all__ = [
    "GROUPS",
    "KEYS",
    "Note",
    "Translation",
    "is_deepstream_config",
    "key_table_markdown",
    "translate_app_config",
]
