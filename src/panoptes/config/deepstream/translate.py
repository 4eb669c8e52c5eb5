"""deepstream-app configurations (INI or YAML, with their nvinfer and tracker files) translated
into panoptes' native schema, with a note for everything not honoured as it is.

Every key falls into one of three kinds (the table :data:`KEYS`, also the documentation page):
honoured (does what DeepStream does), approximated (something close is done, the note says what),
or not supported (a warning names it; nothing is silently dropped). Unknown groups and keys are
warned about by name and line, as deepstream-app does.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from panoptes.config.deepstream.keyfile import Group, KeyFile, resolve_path
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
        "reid-track-output-dir": (U, "not written"),
        "global-gpu-id": (A, "each group's own gpu-id places its work"),
    },
    "tests": {
        "file-loop": (H, "loop: true on file sources"),
        "pipeline-recreate-sec": (U, "the pipeline is not rebuilt periodically"),
    },
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
        "compute-hw": (A, "scaling runs where the frames are (CPU, or the GPU for NVDEC frames)"),
        "interpolation-method": (A, "bilinear scaling"),
        "attach-sys-ts": (A, "frames carry the wall-clock capture time"),
        "frame-num-reset-on-stream-reset": (A, "frame numbers count on over reconnections"),
        "frame-num-reset-on-eos": (A, "frame numbers count on over reconnections"),
        "frame-duration": (A, "timestamps come from the streams"),
        "max-latency": (A, "batched-push-timeout bounds the wait for a batch"),
        "async-process": (A, "frames are scaled in their sources' threads"),
        "num-surfaces-per-frame": (A, "one picture per frame"),
        "config-file": (U, "the new nvstreammux's config file is not read"),
        "drop-pipeline-eos": (
            H,
            "keep_alive: the pipeline runs on when every stream has ended (for streams added "
            "through the REST API)",
        ),
    },
    "source-list": {
        "list": (
            H,
            "a source per entry: file:// (relative to the config), rtsp://, usb:N "
            "(v4l2:///dev/videoN); csi:N is refused",
        ),
        "num-source-bins": (H, "checked against the lists' lengths"),
        "sensor-name-list": (H, "the sources' names"),
        "sensor-id-list": (
            A,
            "names the sources when sensor-name-list is absent; the REST API knows listed "
            "sources by their source id",
        ),
        "use-nvmultiurisrcbin": (
            H,
            "the http section: panoptes' HTTP server, with DeepStream's stream API "
            "(/api/v1/stream/add and /remove)",
        ),
        "http-ip": (H, "http.host"),
        "http-port": (H, "http.port"),
        "max-batch-size": (H, "mux.batch_size (in place of [streammux] batch-size)"),
        "sgie-batch-size": (A, "a secondary model takes the crops of each batch together"),
        "stream-name-display": (A, "the osd draws no stream names"),
        "low-latency-mode": (A, "decoders run with their default latency"),
        "extract-sei-type5-data": (U, "SEI data is not extracted"),
        "sei-uuid": (U, "SEI data is not extracted"),
    },
    "source": {
        "enable": (H, "a source per enabled group, in file order"),
        "type": (
            H,
            "1 V4L2 camera, 2 URI, 3 multi-URI, 4 RTSP; 5 (a Jetson's CSI camera) is refused",
        ),
        "uri": (H, "uri (relative to the config's folder)"),
        "num-sources": (H, "type 3 repeats the source (a %d in the uri is the index)"),
        "drop-frame-interval": (H, "drop_frame_interval"),
        "camera-id": (A, "sources are numbered in file order"),
        "gpu-id": (H, "with a CUDA GPU: decoder auto (NVDEC) and gpu_id; else CPU decoding"),
        "cudadec-memtype": (A, "NVDEC frames stay in GPU memory (0); else CPU decoding"),
        "nvbuf-memory-type": (A, "decoding runs on the CPU here"),
        "num-extra-surfaces": (A, "queues are sized by queue_size"),
        "num-decode-surfaces": (A, "queues are sized by queue_size"),
        "low-latency-decode": (A, "decoders run with their default latency"),
        "dec-skip-frames": (A, "every frame is decoded; drop-frame-interval keeps some"),
        "udp-buffer-size": (A, "FFmpeg's own socket buffers"),
        "video-format": (A, "frames are BGR (CPU) or RGB (GPU) for the models"),
        "live-source": (A, "liveness comes from the source's URI"),
        "source-id": (A, "sources are numbered in file order"),
        "smart-rec-video-cache": (H, "record.cache_s (the older name of smart-rec-cache)"),
        "file-loop": (H, "loop: true (as [tests] file-loop)"),
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
        "camera-width": (H, "type 1: the camera's width (v4l2:///dev/videoN?width=)"),
        "camera-height": (H, "type 1: the camera's height (?height=)"),
        "camera-fps-n": (H, "type 1: the camera's frame rate (?fps=N/D)"),
        "camera-fps-d": (H, "type 1: the camera's frame rate (?fps=N/D)"),
        "camera-v4l2-dev-node": (H, "type 1: N of /dev/videoN, read through FFmpeg's v4l2 device"),
        "camera-csi-sensor-id": (U, "type 5 (a Jetson's CSI camera) is refused"),
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
        "enc-type": (H, "0 (hardware): encoder auto, NVENC where there is one; 1: encoder cpu"),
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
        "plane-id": (U, "no screen output"),
        "conn-id": (U, "no screen output"),
        "set-mode": (U, "no screen output"),
        "sw-preset": (A, "the encoder's default preset"),
        "output-io-mode": (A, "software encoding (libx264/libx265)"),
        "copy-meta": (A, "metadata stays with the frames"),
        "nvdslogger": (A, "per-stream frame rates are in the perf reports and /metrics"),
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
        "model-engine-file": (A, "see [property] model-engine-file (overrides it)"),
        "batch-size": (H, "see [property] batch-size (overrides it)"),
        "bbox-border-color": (H, "osd.class_colors per class (bbox-border-colorN)"),
        "bbox-bg-color": (A, "labels have a filled background in the class colour"),
        "operate-on-gie-id": (H, "infer operate_on_gie_id"),
        "operate-on-class-ids": (H, "infer operate_on_class_ids"),
        "gpu-id": (H, "see [property] gpu-id (overrides it)"),
        "nvbuf-memory-type": (A, "GPU memory is not configured by hand"),
        "plugin-type": (
            H,
            "0 nvinfer; 1 nvinferserver: its config read, the model served by Triton "
            "(docs/triton.md)",
        ),
        "input-tensor-meta": (U, "no pre-process element"),
        "infer-raw-output-dir": (U, "raw outputs are not dumped; use output_tensor_meta"),
        "filter-out-class-ids": (H, "infer excluded_classes (overrides the model file's)"),
        "audio-framesize": (U, "audio models are not run"),
        "audio-hopsize": (U, "audio models are not run"),
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
        "tensor-meta-gie-id": (U, "no pre-process element"),
    },
    "property": {
        "onnx-file": (H, "infer model"),
        "model-engine-file": (
            A,
            "a cache path: onnxruntime saves its optimised model there and loads it when it "
            "matches; backend torch keeps its own in the cache folder; a TensorRT engine is "
            "left as it is (see above)",
        ),
        "labelfile-path": (H, "infer labels"),
        "batch-size": (H, "with a CUDA GPU: infer batch_size; else the mux's batches"),
        "network-mode": (
            H,
            "with a CUDA GPU: infer precision (0 fp32, 2 fp16, 1 INT8 → fp16); else the "
            "model's own precision",
        ),
        "int8-calib-file": (A, "not used: INT8 models are quantized in their ONNX file"),
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
        "is-classifier": (H, "the older network-type=1, read when network-type is absent"),
        "classifier-type": (A, "classifications are told apart by the model's gie_id"),
        "secondary-reinfer-interval": (H, "infer reinfer_interval"),
        "input-object-min-width": (H, "infer input_object_min_width"),
        "input-object-min-height": (H, "infer input_object_min_height"),
        "input-object-max-width": (H, "infer input_object_max_width"),
        "input-object-max-height": (H, "infer input_object_max_height"),
        "output-blob-names": (A, "every output is read"),
        "gpu-id": (H, "with a CUDA GPU: infer gpu_id (backend torch on cuda); else the CPU"),
        "workspace-size": (A, "no engines are built"),
        "force-implicit-batch-dim": (A, "no engines are built"),
        "scaling-filter": (A, "bilinear scaling"),
        "scaling-compute-hw": (A, "scaling runs on the CPU"),
        "filter-out-class-ids": (H, "infer excluded_classes"),
        "uff-file": (U, "UFF models cannot run here: export the model to ONNX"),
        "model-file": (U, "Caffe or Darknet models cannot run here: export the model to ONNX"),
        "proto-file": (U, "Caffe models cannot run here: export the model to ONNX"),
        "tlt-encoded-model": (U, "TAO .etlt models cannot run here: export the model to ONNX"),
        "tlt-model-key": (U, "TAO .etlt models cannot run here: export the model to ONNX"),
        "custom-network-config": (U, "Darknet models cannot run here: export the model to ONNX"),
        "uff-input-blob-name": (A, "a UFF model's input name; an ONNX model names its own"),
        "uff-input-order": (U, "UFF models cannot run here"),
    },
    "class-attrs": {
        "pre-cluster-threshold": (H, "infer threshold ([class-attrs-N]: class_thresholds)"),
        "threshold": (H, "infer threshold (the older name)"),
        "nms-iou-threshold": (H, "infer nms_iou ([class-attrs-N]: the all-classes value is used)"),
        "topk": (H, "infer topk ([class-attrs-N]: the all-classes value is used)"),
        "post-cluster-threshold": (A, "the pre-cluster threshold is the only one"),
        "eps": (A, "NMS instead of DBSCAN"),
        "minBoxes": (A, "NMS instead of DBSCAN"),
        "dbscan-min-score": (A, "NMS instead of DBSCAN"),
        "group-threshold": (A, "NMS instead of rectangle grouping"),
        "detected-min-w": (H, "infer box_limits.min_width ([class-attrs-N]: class_box_limits)"),
        "detected-min-h": (H, "infer box_limits.min_height (mux-frame pixels)"),
        "detected-max-w": (H, "infer box_limits.max_width (0: no limit)"),
        "detected-max-h": (H, "infer box_limits.max_height (0: no limit)"),
        "roi-top-offset": (H, "infer box_limits.top_margin (from the frame's top)"),
        "roi-bottom-offset": (H, "infer box_limits.bottom_margin (from the frame's bottom)"),
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
    "source-list": (H, "sources from a list (nvmultiurisrcbin), and its REST server"),
    "source-attr-all": (H, "the [source] keys every listed source takes; [sourceN] changes N's"),
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
        self._honoured: set[str] = set()
        """The places of the keys honoured as they are (a key shared by several sources, as
        [source-attr-all]'s, counts once)."""
        self.config: dict[str, Any] = {}
        self._osd: dict[str, Any] = {}
        """What other groups say about drawing ([primary-gie] colours, [tracker] ids)."""
        self._on_gpu = gpu_available()
        """Whether the GPU path runs here: a DeepStream configuration expects it."""

    # -- bookkeeping ----------------------------------------------------------------------------

    def _note(
        self, status: Literal["approximated", "unsupported", "unknown"], place: str, text: str
    ) -> None:
        note = Note(status, place, text)
        if note not in self.notes:  # a key shared by several sources is said once
            self.notes.append(note)

    def _honour(self, place: str) -> None:
        self._honoured.add(place)

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
                self._honour(group.place(key))
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
        return Translation(self.config, self.path.resolve().parent, self.notes, len(self._honoured))

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
        if group.get_boolean("drop-pipeline-eos", False):
            self.config["keep_alive"] = True
        self.config["mux"] = mux

    def _sources(self, app: KeyFile) -> None:
        loop = bool(app["tests"].get_integer("file-loop", 0)) if "tests" in app else False
        if "tests" in app:
            self._account(app["tests"], "tests")
        sources: list[dict[str, Any]] = []
        if "source-list" in app:
            for group, item in self._source_list(app):
                sources += self._source(group, len(sources), loop, item)
        else:
            for _, group in app.groups_matching("source", order="file"):
                if group.enabled:
                    sources += self._source(group, len(sources), loop)
        if not sources:
            raise ConfigError("no enabled [sourceN] group that panoptes can read", app.name)
        self.config["sources"] = sources

    def _source(
        self, group: Group, first_id: int, loop: bool, item: _ListItem | None = None
    ) -> list[dict[str, Any]]:
        """The sources of one ``[sourceN]`` group (``item``: of one entry of a source list)."""
        listed = ("type", "num-sources", "uri") if item is not None else ()
        self._account(group, "source", skip=(*_SOURCE_MACHINE_KEYS, *listed))
        kind = item.kind if item is not None else group.get_integer("type")
        if kind == 5:
            sensor = (
                item.device if item is not None else group.get_value("camera-csi-sensor-id", "0")
            )
            where = group.place("type") if item is None else item.place
            raise ConfigError(
                f"type=5 (the CSI camera {sensor} of a Jetson) cannot be read here: switch the "
                "group off (enable=0), or stream the camera over RTSP and read it as type=4",
                where,
            )
        if kind not in (1, 2, 3, 4):
            raise group.error("type", f"unknown source type {kind}; known: 1 to 5")
        if kind == 1:
            uris = [_camera_uri(group, None if item is None else item.device)]
        else:
            uri = item.uri if item is not None else group.get_path("uri")
            count = group.get_integer("num-sources", 1) if kind == 3 and item is None else 1
            uris = [_local(_indexed(uri, index)) for index in range(max(1, count))]
        if group.get_integer("smart-record", 0) > 0:
            self._smart_record(group, list(range(first_id, first_id + len(uris))))
        gpu = self._decoding(group, camera=kind == 1)
        loops = kind != 1 and (loop or group.get_integer("file-loop", 0) != 0)
        made = []
        for uri in uris:
            source: dict[str, Any] = {"uri": uri}
            if item is not None and item.name is not None:
                source["name"] = item.name
            if "drop-frame-interval" in group and group.get_integer("drop-frame-interval") > 1:
                source["drop_frame_interval"] = group.get_integer("drop-frame-interval")
            if loops and not _is_network(uri):
                source["loop"] = True
            if "rtsp-reconnect-interval-sec" in group:
                source["stall_timeout_s"] = group.get_integer("rtsp-reconnect-interval-sec")
            if "rtsp-reconnect-attempts" in group:
                source["reconnect_attempts"] = group.get_integer("rtsp-reconnect-attempts")
            made.append({**source, **gpu})
        return made

    def _decoding(self, group: Group, *, camera: bool) -> dict[str, Any]:
        """``gpu-id`` and ``cudadec-memtype``: NVDEC with a CUDA GPU, else the CPU's decoder."""
        present = [key for key in _SOURCE_MACHINE_KEYS if key in group]
        if camera or not self._on_gpu:
            reason = (
                "a camera's raw frames need no decoder"
                if camera
                else "there is no CUDA GPU with PyTorch here: decoding runs on the CPU"
            )
            for key in present:
                self._note("approximated", group.place(key), reason)
            return {}
        settings: dict[str, Any] = {"decoder": "auto"}
        if group.get_integer("gpu-id", 0):
            settings["gpu_id"] = group.get_integer("gpu-id")
        if "gpu-id" in group:
            self._honour(group.place("gpu-id"))
        if group.get_integer("cudadec-memtype", 0) != 0:
            self._note(
                "approximated",
                group.place("cudadec-memtype"),
                "NVDEC's frames stay in GPU (device) memory",
            )
        elif "cudadec-memtype" in group:
            self._honour(group.place("cudadec-memtype"))
        return settings

    def _source_list(self, app: KeyFile) -> list[tuple[Group, _ListItem]]:
        """``[source-list]`` and ``[source-attr-all]`` (nvmultiurisrcbin's form, DeepStream
        6.2+): one source per ``list`` entry, with ``[source-attr-all]``'s keys, which a
        ``[sourceN]`` group changes for source N."""
        listing = app["source-list"]
        self._account(listing, "source-list")
        attrs = app.get("source-attr-all")
        if attrs is None:
            raise listing.error(None, "needs a [source-attr-all] group: add one (enable=1 ...)")
        uris = listing.get_string_list("list", [])
        ids = listing.get_string_list("sensor-id-list", None)
        names = listing.get_string_list("sensor-name-list", None)
        count = listing.get_integer("num-source-bins", len(uris))
        for key, values in (("list", uris), ("sensor-id-list", ids), ("sensor-name-list", names)):
            if "num-source-bins" in listing and values is not None and len(values) != count:
                raise listing.error(
                    key, f"has {len(values)} entries, and num-source-bins is {count}"
                )
        if not uris:
            raise listing.error(
                "list",
                "no sources listed: panoptes starts with at least one (sources can then be "
                "added through the REST API); list them as uri1;uri2",
            )
        use_bin = listing.get_boolean("use-nvmultiurisrcbin", False)
        self._account(attrs, "source", skip=("type", "num-sources", "uri", *_SOURCE_MACHINE_KEYS))
        for key in ("type", "num-sources", "uri"):
            if key in attrs:
                self._note(
                    "approximated", attrs.place(key), "each source's kind comes from its list entry"
                )
        overrides = dict(app.groups_matching("source"))
        for number, group in overrides.items():
            if number >= len(uris):
                raise group.error(
                    None,
                    f"there are {len(uris)} listed sources: [source0] to [source{len(uris) - 1}]",
                )
            if "type" in group and group.get_integer("type") == 3:
                raise group.error("type", "a multi-URI source (type=3) cannot be in a source list")
        pairs = []
        for index, text in enumerate(uris):
            own = overrides.get(index)
            group = _Layered(own, attrs) if own is not None else attrs
            name = names[index] if names else ids[index] if ids else None
            pairs.append((group, _list_item(text, index, listing, name or None)))
        if use_bin:
            self._rest_server(listing, len(uris))
        else:
            for key in ("http-ip", "http-port", "max-batch-size"):
                if key in listing:
                    self._note(
                        "approximated",
                        listing.place(key),
                        "used with use-nvmultiurisrcbin=1 only, as deepstream-app does",
                    )
        return pairs

    def _rest_server(self, listing: Group, count: int) -> None:
        """nvmultiurisrcbin's REST server: panoptes' HTTP server (DeepStream's stream API)."""
        port_text = listing.get_string("http-port", "9000")
        try:
            port = int(port_text)
        except ValueError:
            raise listing.error("http-port", f"expected a port number, got {port_text!r}") from None
        if not 0 <= port <= 65535:
            raise listing.error("http-port", f"expected a port from 0 to 65535, got {port}")
        self.config["http"] = {"host": listing.get_string("http-ip", "localhost"), "port": port}
        if "max-batch-size" in listing:
            self.config.setdefault("mux", {})["batch_size"] = listing.get_integer("max-batch-size")

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
            ("smart-rec-video-cache", "cache_s"),  # the older name; the newer wins below
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
        model_file = group.get_path("config-file")
        if group.get_integer("plugin-type", 0) == 1:
            return self._nvinferserver(group, _local(model_file), primary=primary)
        self._account(group, table, skip=_PLACEMENT_KEYS)
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
        if "filter-out-class-ids" in group:
            infer["excluded_classes"] = group.get_integer_list("filter-out-class-ids")
        # deepstream-app forces the primary's mode whatever the model file says.
        infer["process_mode"] = "primary" if primary else "secondary"
        name = group.name if not primary else "primary-gie"
        infer["name"] = name
        self._placement(infer, model_config.require("property"), group)
        return infer

    def _placement(self, infer: dict[str, Any], prop: Group, app_group: Group) -> None:
        """Where and how the model runs, from the keys that assume TensorRT on a GPU:
        ``gpu-id``, ``batch-size``, ``network-mode``, ``int8-calib-file`` and
        ``model-engine-file`` (the app's group overriding the model file's).

        With a CUDA GPU and PyTorch, a detector takes the GPU path (backend torch on cuda, in the
        precision network-mode asks for); elsewhere, and for classifiers, onnxruntime runs the
        model on the CPU and these keys are approximated.
        """

        def setting(key: str) -> Group | None:
            return app_group if key in app_group else prop if key in prop else None

        mode = prop.get_integer("network-mode", 0)
        if mode not in _NETWORK_MODES:
            raise prop.error(
                "network-mode", f"unknown network-mode {mode}; known: 0 FP32, 1 INT8, 2 FP16"
            )
        on_gpu = self._on_gpu and infer.get("network_type") == "detector"
        why_cpu = (
            "classifiers run with onnxruntime on the CPU"
            if self._on_gpu
            else "there is no CUDA GPU with PyTorch here: onnxruntime runs the model on the CPU"
        )
        calibration = prop.place("int8-calib-file") if "int8-calib-file" in prop else None
        if on_gpu:
            infer.update(backend="torch", device="cuda", precision="fp32" if mode == 0 else "fp16")
            if mode == 1:
                self._note(
                    "approximated",
                    prop.place("network-mode"),
                    "INT8 (network-mode=1) runs in FP16, the nearest precision of backend torch",
                )
            elif "network-mode" in prop:
                self._honour(prop.place("network-mode"))
            if calibration is not None:
                self._note(
                    "approximated",
                    calibration,
                    "TensorRT's INT8 calibration table is not used by backend torch: the model "
                    f"runs in {'FP16' if mode else 'FP32'}",
                )
        else:
            if mode != 0:
                self._note(
                    "approximated",
                    prop.place("network-mode"),
                    f"{_NETWORK_MODES[mode]} (network-mode={mode}): {why_cpu}, in the model's "
                    "own precision (FP32, or INT8 where the ONNX file is quantized)",
                )
            elif "network-mode" in prop:
                self._honour(prop.place("network-mode"))
            if calibration is not None:
                self._note(
                    "approximated",
                    calibration,
                    "TensorRT's INT8 calibration table is not used by onnxruntime: the model "
                    "runs in its own precision (FP32, or INT8 where the ONNX file is quantized)",
                )
        for key, target in (("gpu-id", "gpu_id"), ("batch-size", "batch_size")):
            source = setting(key)
            if source is None:
                continue
            if on_gpu:
                infer[target] = source.get_integer(key)
                self._honour(source.place(key))
            elif key == "gpu-id":
                self._note("approximated", source.place(key), why_cpu)
            else:
                self._note(
                    "approximated",
                    source.place(key),
                    "batches come from the mux; onnxruntime runs the model's own batch size",
                )
        source = setting("model-engine-file")
        if source is not None:
            self._engine_file(infer, source, on_gpu)

    def _engine_file(self, infer: dict[str, Any], group: Group, on_gpu: bool) -> None:
        """``model-engine-file``: a cache path. panoptes' own saved model is used when it
        matches; a path that does not exist yet is where onnxruntime saves the model it builds;
        any other file (a TensorRT engine) is left as it is and the model built from onnx-file.
        """
        from panoptes.models.backends.onnxruntime import saved_model_key
        from panoptes.models.gpu.cache import cache_root

        path = Path(_local(group.get_path("model-engine-file")))
        place = group.place("model-engine-file")
        foreign = path.exists() and saved_model_key(path) is None
        left = (
            f"{path.name} is not a model panoptes saved (a TensorRT engine?): it is left as it is"
        )
        if on_gpu:
            self._note(
                "approximated",
                place,
                (f"{left}; " if foreign else "")
                + "backend torch keeps the model it builds from onnx-file in the panoptes cache "
                f"folder ({cache_root() / 'torch'}), keyed by the model's content, precision, "
                "batch size and GPU",
            )
        elif infer.get("network_type") != "detector":
            self._note(
                "approximated",
                place,
                (f"{left}; " if foreign else "")
                + "a classifier is built from onnx-file at each start",
            )
        elif foreign:
            self._note("approximated", place, f"{left}, and the model is built from onnx-file")
        else:
            infer["engine_file"] = str(path)
            if path.exists():
                self._honour(place)
            else:
                self._note(
                    "approximated",
                    place,
                    f"onnxruntime saves the model it builds from onnx-file at {path} (an "
                    "optimised ONNX model, not a TensorRT engine), and loads it from there on "
                    "the next start",
                )

    def _nvinferserver(self, group: Group, path: str, *, primary: bool) -> dict[str, Any] | None:
        """A gie group with ``plugin-type=1``: its nvinferserver file, the model on Triton."""
        from panoptes.config.deepstream.nvinferserver import read_nvinferserver_config

        self._account(group, "primary-gie" if primary else "secondary-gie", skip=_PLACEMENT_KEYS)
        for key in _PLACEMENT_KEYS:
            if key in group:
                self._note("approximated", group.place(key), "the Triton server runs the model")
        infer = read_nvinferserver_config(path, notes=self.notes)
        if infer is None:
            return None
        # The app's keys override the model file's, as deepstream-app does.
        for key, target in (
            ("gie-unique-id", "gie_id"),
            ("interval", "interval"),
            ("operate-on-gie-id", "operate_on_gie_id"),
        ):
            if key in group:
                infer[target] = group.get_integer(key)
        if "labelfile-path" in group:
            infer["labels"] = _local(group.get_path("labelfile-path"))
        if "operate-on-class-ids" in group:
            infer["operate_on_class_ids"] = group.get_integer_list("operate-on-class-ids")
        infer["process_mode"] = "primary" if primary else "secondary"
        infer["name"] = "primary-gie" if primary else group.name
        return infer

    def _nvinfer(self, config: KeyFile, infer: dict[str, Any]) -> bool:
        """Fill ``infer`` from an nvinfer file; False when the model cannot run here."""
        prop = config.require("property")
        self._account(prop, "property", skip=(*_PLACEMENT_KEYS, "network-mode", "int8-calib-file"))
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
        if "filter-out-class-ids" in prop:
            infer["excluded_classes"] = prop.get_integer_list("filter-out-class-ids")
        if "classifier-threshold" in prop:
            infer["classifier_threshold"] = prop.get_double("classifier-threshold")
        if "secondary-reinfer-interval" in prop:
            infer["reinfer_interval"] = prop.get_integer("secondary-reinfer-interval")
        # nvinfer reads its switches as GLib booleans: 1, 0, true or false.
        if prop.get_boolean("output-tensor-meta", False):
            infer["output_tensor_meta"] = True
        network = prop.get_integer("network-type", 0)
        if "network-type" not in prop and prop.get_boolean("is-classifier", False):
            network = 1  # the older key, read by nvinfer when network-type is absent
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
        elif cluster in (0, 1, 3) and infer["network_type"] == "detector":
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
        keep_ratio = prop.get_boolean("maintain-aspect-ratio", False)
        return {
            "color_order": "rgb" if color == 0 else "bgr",
            "mean": offsets,
            "std": [1.0 / scale] * 3,
            "keep_ratio": keep_ratio,
            "pad_position": "center"
            if prop.get_boolean("symmetric-padding", False)
            else "top-left",
            "pad_value": 0.0,
        }

    def _class_attrs(self, config: KeyFile, infer: dict[str, Any]) -> None:
        """``[class-attrs-all]`` and ``[class-attrs-N]``: a class's group starts from the
        all-classes values and changes the keys it names, as nvinfer reads them."""
        everything = config.get("class-attrs-all")
        limits: dict[str, int] = {}
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
            limits = _box_limits(everything)
            if limits:
                infer["box_limits"] = limits
        thresholds: dict[int, float] = {}
        class_limits: dict[int, dict[str, int]] = {}
        for number, group in config.groups_matching("class-attrs-"):
            per_class_only = ("nms-iou-threshold", "topk")
            self._account(group, "class-attrs", skip=per_class_only)
            for key in per_class_only:
                if key in group:
                    self._note(
                        "approximated",
                        group.place(key),
                        f"a class's own {key} is not kept apart: every class takes the "
                        "[class-attrs-all] value",
                    )
            value = group.get_double("pre-cluster-threshold", group.get_double("threshold", None))
            if value is not None:
                thresholds[number] = value
            own = _box_limits(group)
            if own:
                class_limits[number] = {**limits, **own}
        if thresholds:
            infer["class_thresholds"] = thresholds
        if class_limits:
            infer["class_box_limits"] = class_limits

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
        if group.get_integer("enc-type", 1) == 0:  # hardware: NVENC where there is one
            sink["encoder"] = "auto"
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
        if group.get_integer("enc-type", 1) == 0:  # hardware: NVENC where there is one
            sink["encoder"] = "auto"
        return sink


@dataclass(frozen=True)
class _ListItem:
    """One entry of a ``[source-list]`` ``list``: the kind of source it is (1 V4L2 camera,
    2 URI, 4 RTSP, 5 CSI camera), its URI (cameras: their device number), its name."""

    kind: int
    uri: str
    device: int | None
    name: str | None
    place: str


def _list_item(text: str, index: int, listing: Group, name: str | None) -> _ListItem:
    """``file://...`` (relative to the config's folder), ``rtsp://...``, ``usb:N`` (the V4L2
    camera /dev/videoN) or ``csi:N``, as deepstream-app reads a source list's entries."""
    place = f"{listing.place('list')} (entry {index + 1})"
    if text.startswith("file:"):
        uri = _local(resolve_path(text, relative_to_file=listing.config_path or Path.cwd()))
        return _ListItem(2, uri, None, name, place)
    if _is_network(text):
        return _ListItem(4, text, None, name, place)
    camera = re.fullmatch(r"(usb|csi):([0-9]+)", text)
    if camera is None:
        raise ConfigError(
            f"{text!r} is not a source deepstream-app lists: expected file://..., rtsp://..., "
            "usb:N (the camera /dev/videoN) or csi:N",
            place,
        )
    kind = 1 if camera.group(1) == "usb" else 5
    return _ListItem(kind, text, int(camera.group(2)), name, place)


class _Layered(Group):
    """A ``[sourceN]`` group of a source list: its own keys over ``[source-attr-all]``'s, each
    placed where it is written."""

    def __init__(self, own: Group, base: Group) -> None:
        super().__init__(
            own.name,
            {**base, **own},
            file=own.file,
            line=own.line,
            config_path=own.config_path,
            dialect=own.dialect,
        )
        self._own, self._base = own, base

    def place(self, key: str | None = None) -> str:
        if key is not None and key not in self._own and key in self._base:
            return self._base.place(key)
        return self._own.place(key)


def _camera_uri(group: Group, device: int | None = None) -> str:
    """A type=1 source's camera as ``v4l2:///dev/videoN?width=&height=&fps=N/D``."""
    node = device if device is not None else group.get_integer("camera-v4l2-dev-node", 0)
    query: list[str] = []
    width, height = group.get_integer("camera-width", 0), group.get_integer("camera-height", 0)
    if width > 0 and height > 0:
        query += [f"width={width}", f"height={height}"]
    fps_n, fps_d = group.get_integer("camera-fps-n", 0), group.get_integer("camera-fps-d", 1)
    if fps_n > 0:
        query.append(f"fps={fps_n}/{max(1, fps_d)}")
    return f"v4l2:///dev/video{node}" + ("?" + "&".join(query) if query else "")


_CLUSTER_NAMES = {0: "group rectangles", 1: "DBSCAN", 3: "DBSCAN + NMS hybrid"}
# A source's keys whose meaning depends on the machine having a CUDA GPU.
_SOURCE_MACHINE_KEYS = ("gpu-id", "cudadec-memtype")
_NETWORK_MODES = {0: "FP32", 1: "INT8", 2: "FP16"}
# Keys of [primary-gie], [secondary-gieN] and [property] that say where and how a model runs.
_PLACEMENT_KEYS = ("gpu-id", "batch-size", "model-engine-file")


@functools.cache
def gpu_available() -> bool:
    """Whether the GPU path can run here: a CUDA GPU that a CUDA build of PyTorch sees, and
    onnx2torch to convert models for it. Answered once per process."""
    if sys.platform == "linux" and not Path("/proc/driver/nvidia").exists():
        return False  # no NVIDIA driver: no need to import torch to know
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("onnx2torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


# nvinfer's detection filter keys and the infer box_limits fields they fill.
_BOX_LIMIT_KEYS = {
    "detected-min-w": "min_width",
    "detected-min-h": "min_height",
    "detected-max-w": "max_width",
    "detected-max-h": "max_height",
    "roi-top-offset": "top_margin",
    "roi-bottom-offset": "bottom_margin",
}


def _box_limits(group: Group) -> dict[str, int]:
    """The detection filter keys ``group`` names, as infer box_limits fields."""
    limits: dict[str, int] = {}
    for key, field_name in _BOX_LIMIT_KEYS.items():
        if key in group:
            value = group.get_integer(key)
            if value < 0:
                raise group.error(key, f"must not be negative, got {value}")
            limits[field_name] = value
    return limits


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
