"""``infer``: runs a model on the batch (nvinfer).

A primary model runs on whole frames and adds its objects to each frame. A secondary model
(``process_mode: secondary``) runs on the crops of the objects another model made, after the
tracker: a classifier attaches its results to those objects' ``classifications``, a detector adds
the objects it finds in a crop as children of the cropped object.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from panoptes.core.element import Element, ElementProperties
from panoptes.core.errors import ConfigError
from panoptes.core.frame import Batch, Frame
from panoptes.core.geometry import Letterbox
from panoptes.core.meta import NO_ID, TensorMeta
from panoptes.core.negotiation import BGR_OR_CUDA, BGR_OR_YUV, CPU_ONLY, CUDA


class PreprocessOverrides(ElementProperties):
    """Changes to the pre-processing the model's head implies; unset fields keep the default."""

    input_size_wh: tuple[int, int] | None = Field(
        None, description="Network input (width, height); only for models with dynamic input size."
    )
    keep_ratio: bool | None = Field(None, description="Letterbox (true) or stretch (false).")
    pad_position: Literal["top-left", "center"] | None = Field(
        None, description="Where the image sits."
    )
    pad_value: float | None = Field(None, description="Value of the padding pixels.")
    color_order: Literal["bgr", "rgb"] | None = Field(
        None, description="Channel order the model takes."
    )
    mean: tuple[float, float, float] | None = Field(
        None, description="Subtracted per channel (offsets)."
    )
    std: tuple[float, float, float] | None = Field(
        None, description="Divided per channel after the mean (1 / net-scale-factor)."
    )


class BoxLimitProperties(ElementProperties):
    """Limits on a detector's boxes, in pixels of the picture the model is given: the mux's
    output frame (a secondary detector: the object's crop). nvinfer's ``[class-attrs-*]``
    detection filters."""

    min_width: int = Field(0, ge=0, description="Narrower boxes are dropped (detected-min-w).")
    min_height: int = Field(0, ge=0, description="Lower boxes are dropped (detected-min-h).")
    max_width: int = Field(
        0, ge=0, description="Wider boxes are dropped; 0: no limit (detected-max-w)."
    )
    max_height: int = Field(
        0, ge=0, description="Higher boxes are dropped; 0: no limit (detected-max-h)."
    )
    top_margin: int = Field(
        0,
        ge=0,
        description="Boxes whose top edge is less than this far below the picture's top are "
        "dropped (roi-top-offset).",
    )
    bottom_margin: int = Field(
        0,
        ge=0,
        description="Boxes whose bottom edge is less than this far above the picture's bottom "
        "are dropped (roi-bottom-offset).",
    )


#: Properties of backend triton, passed to it as they are. With another backend they are
#: ignored (with a warning), so that switching a model to Triton and back changes one line.
TRITON_ONLY = (
    "url",
    "protocol",
    "model_name",
    "model_version",
    "timeout_s",
    "retries",
    "shared_memory",
)


class InferProperties(ElementProperties):
    name: str | None = Field(
        None, description="Element name (probes attach by it); default infer<N>."
    )
    model: str = Field(
        "yolox-nano",
        description="A model-zoo name (see `panoptes models list`) or a path to an .onnx file; "
        "backend triton: the model on the server (see model_name), nothing needed here.",
    )
    backend: Literal["onnxruntime", "torch", "triton"] = Field(
        "onnxruntime",
        description="Inference backend: onnxruntime, or torch (the ONNX model converted for "
        "PyTorch with onnx2torch, cached in the panoptes cache folder; pre-processing, decoding "
        "and NMS run where the model runs; pip install 'panoptes[gpu]'), or triton (a Triton "
        "Inference Server at url runs the model; pre-processing and parsing stay here; pip "
        "install 'panoptes[triton]').",
    )
    device: Literal["cpu", "cuda", "tensorrt"] = Field(
        "cpu",
        description="Where the model runs: cpu; cuda (backend torch, or onnxruntime's CUDA "
        "provider, which needs onnxruntime-gpu); tensorrt (onnxruntime's TensorRT provider, "
        "engines cached in the panoptes cache folder).",
    )
    precision: Literal["fp32", "fp16"] = Field(
        "fp32",
        description="Arithmetic precision; fp16 with backend torch on cuda, or with device "
        "tensorrt.",
    )
    batch_size: int | None = Field(
        None,
        ge=1,
        description="backend torch: the fixed batch the model runs, smaller batches padded "
        "(nvinfer batch-size); default the mux's batch_size, else the number of sources.",
    )
    cuda_graphs: bool | None = Field(
        None,
        description="backend torch on cuda: replay the model from a CUDA graph captured after "
        "warm-up, one launch per batch; default on (off, with a warning, if capture fails).",
    )
    compile: bool = Field(
        False,
        description="backend torch: run the model through torch.compile (slow first start; the "
        "compiled kernels are cached).",
    )
    gpu_id: int = Field(0, ge=0, description="The GPU to run on (device cuda or tensorrt).")
    url: str | None = Field(
        None,
        description="backend triton: the server's host:port; default localhost:8001 (grpc) or "
        "localhost:8000 (http).",
    )
    protocol: Literal["grpc", "http"] = Field(
        "grpc", description="backend triton: how requests reach the server."
    )
    model_name: str | None = Field(
        None,
        description="backend triton: the model's name on the server; default the model's file "
        "name without extension (yolox-nano: yolox_nano).",
    )
    model_version: int | None = Field(
        None, ge=1, description="backend triton: the version to run; default the server's latest."
    )
    timeout_s: float = Field(
        10.0,
        gt=0,
        description="backend triton: the longest wait for one request, and for connecting.",
    )
    retries: int = Field(
        2,
        ge=0,
        description="backend triton: further attempts of a request the server did not answer. "
        "Then the batch goes on without this model's objects (an error on the bus); while the "
        "server stays away one request a second is tried, and inference resumes when it answers.",
    )
    shared_memory: Literal["auto", "system", "off"] = Field(
        "auto",
        description="backend triton: system sends tensors through system shared memory (client "
        "and server on one host); off over the connection; auto: system for a loopback url, "
        "when the server accepts it.",
    )
    engine_file: str | None = Field(
        None,
        description="backend onnxruntime, detectors: a file (relative to the config's folder) "
        "where the model, optimised by onnxruntime, is saved and loaded from on the next start "
        "when it was saved from the same model by the same onnxruntime (DeepStream's "
        "model-engine-file). A file panoptes did not write, such as a TensorRT engine, is left "
        "as it is. backend torch keeps its built model in the panoptes cache folder instead.",
    )
    instances: int | None = Field(
        None,
        ge=1,
        description="Copies of the model sharing each batch, one thread each by default; "
        "default min(4, cores), backend torch 1. A classifier runs one copy.",
    )
    threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads per instance; default cores / instances (a classifier: cores).",
    )
    parser: str | None = Field(
        None,
        description="Output parser: yolox, yolov5, ultralytics, end2end, nanodet, fastestdet, "
        "none (no objects: decode the tensor meta in a probe), or module:function for your own; "
        "default: recognised from the model's outputs.",
    )
    labels: str | list[str] | None = Field(
        None,
        description="Labels file (one per line) or list; default: model metadata, else COCO-80 "
        "(a classifier: class_<id>). A classifier with several outputs takes one line (or item) "
        "per output, its labels separated by ';', as DeepStream's classifier label files.",
    )
    threshold: float = Field(
        0.25, ge=0, le=1, description="Minimum confidence (pre-cluster-threshold)."
    )
    class_thresholds: dict[int, float] = Field(
        default_factory=dict, description="Per-class minimum confidence, by class id."
    )
    nms_iou: float = Field(
        0.45, ge=0, le=1, description="IoU above which NMS removes the weaker box."
    )
    class_agnostic_nms: bool = Field(False, description="NMS across classes instead of per class.")
    topk: int = Field(300, ge=1, description="Keep at most this many objects per frame.")
    interval: int = Field(
        0, ge=0, description="Frames skipped between inferences, per stream (nvinfer interval)."
    )
    gie_id: int | None = Field(
        None,
        ge=1,
        description="Id stamped on this model's objects and classifications (gie-unique-id); "
        "default its position.",
    )
    classes: list[int] | None = Field(None, description="Keep only these class ids (detectors).")
    excluded_classes: list[int] = Field(
        default_factory=list,
        description="Drop the objects of these class ids (detectors; filter-out-class-ids).",
    )
    box_limits: BoxLimitProperties = Field(
        default_factory=BoxLimitProperties,
        description="Size and position limits on the boxes of every class ([class-attrs-all]).",
    )
    class_box_limits: dict[int, BoxLimitProperties] = Field(
        default_factory=dict,
        description="Per class id, limits in place of box_limits ([class-attrs-N]).",
    )
    preprocess: PreprocessOverrides = Field(
        default_factory=PreprocessOverrides, description="Pre-processing overrides."
    )
    output_tensor_meta: bool = Field(
        False,
        description="Attach the raw output tensors for probes (tensor meta): per frame, or per "
        "object crop in secondary mode.",
    )
    process_mode: Literal["primary", "secondary"] = Field(
        "primary",
        description="primary: on whole frames; secondary: on the crops of objects another model "
        "made (operate_on_gie_id, operate_on_class_ids), after the tracker (nvinfer process-mode "
        "1 and 2).",
    )
    network_type: Literal["detector", "classifier", "other"] = Field(
        "detector",
        description="detector: objects (in secondary mode, children of the cropped object; "
        "crops letterboxed as its parser's family expects); classifier (secondary only): the "
        "best class of each output [batch, classes], added to the cropped object's "
        "classifications (crops stretched); other: no parsing, the raw output tensors as tensor "
        "meta for a probe (crops stretched). preprocess overrides the fitting.",
    )
    operate_on_gie_id: int | None = Field(
        None,
        ge=1,
        description="Secondary: the model whose objects are cropped (a primary model, or a "
        "secondary detector listed before this one); default the first primary model.",
    )
    operate_on_class_ids: list[int] | None = Field(
        None, description="Secondary: crop only the objects of these class ids; default all."
    )
    input_object_min_width: int = Field(
        0,
        ge=0,
        description="Secondary: objects narrower than this (original-frame pixels) are skipped.",
    )
    input_object_min_height: int = Field(
        0,
        ge=0,
        description="Secondary: objects lower than this (original-frame pixels) are skipped.",
    )
    input_object_max_width: int = Field(
        0, ge=0, description="Secondary: objects wider than this are skipped; 0: no limit."
    )
    input_object_max_height: int = Field(
        0, ge=0, description="Secondary: objects higher than this are skipped; 0: no limit."
    )
    classifier_threshold: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Classifier: results less confident than this are not attached "
        "(classifier-threshold). Scores that are not probabilities (any outside [0, 1]) go "
        "through a softmax first.",
    )
    reinfer_interval: int | None = Field(
        None,
        ge=0,
        description="Classifier on tracked objects: a track is classified again only once more "
        "than this many frames of its stream have passed, or its box has grown by more than a "
        "fifth; in between its last results are attached (secondary-reinfer-interval). Default: "
        "every object on every frame.",
    )

    @field_validator("device")
    @classmethod
    def _device_of_backend(cls, value: str, info: ValidationInfo) -> str:
        if value == "tensorrt" and info.data.get("backend") == "torch":
            raise ValueError(
                "tensorrt is onnxruntime's TensorRT provider; backend torch runs on cpu or cuda"
            )
        if value != "cpu" and info.data.get("backend") == "triton":
            raise ValueError(
                "backend triton: the server's model configuration decides where the model runs; "
                "leave device out"
            )
        return value

    @field_validator("precision")
    @classmethod
    def _precision_on_device(cls, value: str, info: ValidationInfo) -> str:
        backend, device = info.data.get("backend"), info.data.get("device")
        if value == "fp16" and device == "cpu":
            raise ValueError(
                "fp16 runs on a GPU only: set device cuda (backend torch) or tensorrt, or "
                "precision fp32"
            )
        if value == "fp16" and backend == "onnxruntime" and device == "cuda":
            raise ValueError(
                "onnxruntime's CUDA provider runs a model in its own precision: for fp16 use "
                "device tensorrt or backend torch"
            )
        return value

    @field_validator("batch_size")
    @classmethod
    def _batch_size_for_torch(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("backend") == "triton":
            raise ValueError(
                "backend triton sends the whole batch, in requests of at most the server model's "
                "max_batch_size: leave batch_size out"
            )
        if value is not None and info.data.get("backend") != "torch":
            raise ValueError(
                "onnxruntime runs the model's own batch size (a dynamic one takes the whole "
                "batch): leave batch_size out, or use backend torch"
            )
        return value

    @field_validator("cuda_graphs")
    @classmethod
    def _cuda_graphs_on_cuda(cls, value: bool | None, info: ValidationInfo) -> bool | None:
        if value and (info.data.get("backend") != "torch" or info.data.get("device") != "cuda"):
            raise ValueError("CUDA graphs are for backend torch on device cuda")
        return value

    @field_validator("engine_file")
    @classmethod
    def _engine_file_for_onnxruntime(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("backend") == "torch":
            raise ValueError(
                "backend torch keeps the model it builds in the panoptes cache folder: leave "
                "engine_file out"
            )
        return value

    @field_validator("compile")
    @classmethod
    def _compile_for_torch(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("backend") != "torch":
            raise ValueError("compile is for backend torch (torch.compile)")
        return value

    @field_validator("gpu_id")
    @classmethod
    def _gpu_id_on_gpu(cls, value: int, info: ValidationInfo) -> int:
        if value and info.data.get("device") == "cpu":
            raise ValueError("gpu_id is for device cuda or tensorrt; this model runs on the cpu")
        return value

    @field_validator("class_thresholds")
    @classmethod
    def _thresholds_in_range(cls, value: dict[int, float]) -> dict[int, float]:
        for class_id, threshold in value.items():
            if not 0 <= threshold <= 1:
                raise ValueError(f"threshold of class {class_id} is {threshold}, not in [0, 1]")
        return value


def default_instances() -> int:
    """Up to four model instances, one per core: on small detectors, single-threaded sessions
    side by side beat one session's intra-op threads by far (see panoptes.models.pool)."""
    return max(1, min(4, os.cpu_count() or 1))


#: A classified track whose box has grown by more than this fraction of its area since is
#: classified again: a larger view of the object is worth a new look.
REINFER_AREA_GROWTH = 0.2

#: Properties that only a secondary model uses.
_SECONDARY_ONLY = (
    "operate_on_gie_id",
    "operate_on_class_ids",
    "input_object_min_width",
    "input_object_min_height",
    "input_object_max_width",
    "input_object_max_height",
    "reinfer_interval",
)


@dataclass
class ObjectTensorMeta(TensorMeta):
    """Raw output tensors of a secondary model for one object's crop (``output_tensor_meta``).

    ``row`` is the object's row in ``frame.objects`` as this element passed the frame on (an
    element that removes objects afterwards renumbers the rows); ``letterbox`` maps
    original-frame pixels to the network input's pixels through the crop.
    """

    row: int = NO_ID


@dataclass
class _TrackResult:
    """What a classifier attached to a track, and when (for ``reinfer_interval``)."""

    frame_num: int
    area: float
    results: list[tuple[int, str, float]]


@dataclass
class _FrameCrops:
    """The objects of one frame a secondary model runs on: rows, crops, crops' top-left
    corners in ``frame.image`` pixels (int64 [N, 2])."""

    frame: Frame
    rows: list[int]
    crops: list[np.ndarray]
    origins_xy: np.ndarray


class Infer(Element):
    """Runs a model on every frame (or every ``interval + 1``-th frame of each stream).

    Primary (``process_mode: primary``): a detector on whole frames; its objects are added with
    ``component_id`` = ``gie_id``. Secondary: the model runs on the crops of the objects of
    ``operate_on_gie_id`` (of the classes ``operate_on_class_ids``, within the size limits),
    all crops of a batch together. A classifier appends ``(gie_id, label, confidence)`` to each
    cropped object's ``classifications`` for every output whose best class reaches
    ``classifier_threshold``; a detector adds what it finds in a crop as objects whose
    ``parent`` is the cropped object's row. ``inferred_by`` gets ``gie_id`` on the frames the
    model ran on.
    """

    kind = "infer"
    Properties = InferProperties

    props: InferProperties

    def __init__(
        self, props: ElementProperties, *, name: str, context: Any, gie_id: int | None = None
    ) -> None:
        super().__init__(props, name=name, context=context)
        self.gie_id = self.props.gie_id or gie_id or self._position() + 1
        self._frames_seen: defaultdict[int, int] = defaultdict(int)
        self._pending: tuple[Batch, list[Frame], Any] | None = None
        self.detector: Any = None
        self.classifier: Any = None
        self.operate_on_gie_id: int | None = None
        """Secondary: the ``component_id`` of the objects this model crops."""
        self._track_results: defaultdict[int, dict[int, _TrackResult]] = defaultdict(dict)
        """Per stream, per track id, the classifier's last results (``reinfer_interval``)."""
        self.frames_failed = 0
        """Frames that went on without this model's results because it failed on them."""
        self._failed_in_a_row = 0

    def _position(self) -> int:
        """This element's index in the config's ``infer`` list (0 when it is in none)."""
        config = getattr(self.context, "config", None)
        for index, props in enumerate(getattr(config, "infer", None) or []):
            if props is self.props:
                return index
        return 0

    @property
    def _place(self) -> str:
        return str(getattr(self.context, "place", "") or self.name)

    def build(self) -> None:
        props = self.props
        place = self._place
        if props.network_type == "other" and props.parser not in (None, "none"):
            raise ConfigError(
                "network_type other runs no parser: leave parser out, or use network_type detector",
                f"{place}.parser",
            )
        if props.reinfer_interval is not None and props.network_type != "classifier":
            raise ConfigError(
                "only a classifier keeps results per track: leave it out, or use network_type "
                "classifier",
                f"{place}.reinfer_interval",
            )
        if props.engine_file is not None and props.network_type == "classifier":
            self.bus.warning(
                self.name, f"{place}.engine_file is ignored: only detectors save their model"
            )
        if props.backend != "triton":
            defaults = InferProperties()
            for key in TRITON_ONLY:
                if getattr(props, key) != getattr(defaults, key):
                    self.bus.warning(
                        self.name,
                        f"{place}.{key} is ignored: it is for backend triton, and this model "
                        f"runs on {props.backend}",
                    )
        if props.process_mode == "primary":
            self._build_primary(place)
            return
        self.operate_on_gie_id = self._operated_model(place)
        try:
            if props.network_type == "classifier":
                self._build_classifier()
            else:
                self._build_detector()
        except ConfigError as error:
            where = f"{place}.{error.place}" if error.place else place
            raise ConfigError(error.reason, where) from error

    def _build_primary(self, place: str) -> None:
        props = self.props
        if props.network_type == "classifier":
            raise ConfigError(
                "a classifier runs on the crops of objects: set process_mode: secondary (and "
                "operate_on_gie_id); whole-frame classification is not supported",
                f"{place}.network_type",
            )
        defaults = InferProperties()
        for key in _SECONDARY_ONLY:
            if getattr(props, key) != getattr(defaults, key):
                self.bus.warning(
                    self.name,
                    f"{place}.{key} is ignored: it is for process_mode: secondary, and this "
                    "model is primary",
                )
        self._build_detector()

    def _build_detector(self) -> None:
        from panoptes.models.pool import DetectorPool
        from panoptes.models.postprocess import BoxLimits

        props = self.props
        overrides = props.preprocess.model_dump(exclude_none=True)
        if props.network_type == "other" and props.process_mode == "secondary":
            # Crops are stretched, as for classifiers; no detector family says otherwise.
            overrides.setdefault("keep_ratio", False)
        # One torch model takes the whole batch: on a GPU, copies side by side only compete.
        # One Triton request carries the whole batch; set instances for several in flight.
        single = props.backend in ("torch", "triton")
        instances = props.instances or (1 if single else default_instances())
        threads = props.threads or max(1, (os.cpu_count() or 1) // instances)
        self.detector = DetectorPool(
            props.model,
            instances=instances,
            base_dir=self.context.base_dir,
            backend=props.backend,
            providers=self._providers(),
            backend_options=self._backend_options(),
            threads=threads,
            parser="none" if props.network_type == "other" else props.parser,
            preprocess=overrides or None,
            labels=self._labels(),
            threshold=props.threshold,
            class_thresholds=props.class_thresholds,
            nms_iou=props.nms_iou,
            topk=props.topk,
            class_agnostic_nms=props.class_agnostic_nms,
            box_limits=BoxLimits(**props.box_limits.model_dump()),
            class_box_limits={
                class_id: BoxLimits(**limits.model_dump())
                for class_id, limits in props.class_box_limits.items()
            },
            excluded_classes=props.excluded_classes,
        )

    def _build_classifier(self) -> None:
        from panoptes.models.classifier import Classifier

        props = self.props
        if props.backend != "onnxruntime":
            raise ConfigError(
                f"backend {props.backend} runs detectors; classifiers run on onnxruntime",
                "backend",
            )
        overrides = props.preprocess.model_dump(exclude_none=True)
        # One session: the crops of a whole batch make a large enough batch for its threads.
        self.classifier = Classifier(
            props.model,
            base_dir=self.context.base_dir,
            backend=props.backend,
            providers=self._providers(),
            threads=props.threads or os.cpu_count() or 1,
            preprocess=overrides or None,
            labels=self._labels(),
        )

    def _providers(self) -> list[str] | None:
        if self.props.backend != "onnxruntime":
            return None
        return {"cpu": None, "cuda": ["cuda"], "tensorrt": ["tensorrt"]}[self.props.device]

    def _backend_options(self) -> dict[str, Any]:
        props = self.props
        if props.backend == "triton":
            return {key: getattr(props, key) for key in TRITON_ONLY}
        if props.backend == "torch":
            return {
                "device": props.device,
                "precision": props.precision,
                "batch_size": self._torch_batch_size(),
                "cuda_graphs": props.cuda_graphs,
                "compile": props.compile,
                "gpu_id": props.gpu_id,
                "input_size_wh": props.preprocess.input_size_wh,
            }
        saved = {} if props.engine_file is None else {"saved_model": self._engine_path()}
        if props.device == "cpu":
            return saved
        return {"gpu_id": props.gpu_id, "precision": props.precision, **saved}

    def _engine_path(self) -> Path:
        path = Path(self.props.engine_file or "").expanduser()
        return path if path.is_absolute() else self.context.base_dir / path

    def _torch_batch_size(self) -> int:
        """The fixed batch of a torch model: its own setting, else the mux's batch size, else
        one frame per source (the mux's default)."""
        if self.props.batch_size is not None:
            return self.props.batch_size
        config = getattr(self.context, "config", None)
        mux_batch = getattr(getattr(config, "mux", None), "batch_size", 0)
        return int(mux_batch or len(getattr(config, "sources", None) or []) or 1)

    def _labels(self) -> Any:
        labels: Any = self.props.labels
        if isinstance(labels, str):
            labels = self.context.base_dir / labels
        return labels

    def _operated_model(self, place: str) -> int:
        """The gie_id whose objects this secondary model crops, checked against the config."""
        props = self.props
        config = getattr(self.context, "config", None)
        infers = list(getattr(config, "infer", None) or [])
        own = self._position() if any(p is props for p in infers) else len(infers)
        ids = [p.gie_id or index + 1 for index, p in enumerate(infers)]
        primaries = [i for i, p in zip(ids, infers, strict=True) if p.process_mode == "primary"]
        # Secondary models run in the order they are listed, after every primary one.
        detectors = [
            i
            for index, (i, p) in enumerate(zip(ids, infers, strict=True))
            if index < own and p.process_mode == "secondary" and p.network_type == "detector"
        ]
        target = props.operate_on_gie_id or (primaries[0] if primaries else 1)
        if config is None or target in primaries + detectors:
            return target
        if props.operate_on_gie_id is None:
            reason = (
                "a secondary model crops the objects of a primary model, and there is no "
                "primary infer element: add one (process_mode: primary) to the infer list"
            )
        else:
            known = ", ".join(map(str, primaries + detectors)) or "none"
            reason = (
                f"no primary model (or secondary detector listed before this one) has gie_id "
                f"{target}; the models whose objects can be cropped: {known}"
            )
        raise ConfigError(reason, f"{place}.operate_on_gie_id")

    def input_memory(self) -> frozenset[str]:
        """A primary detector on backend torch takes device tensors as they are (on its device or
        any: ``device: cpu`` runs the same tensor path on torch's CPU device) besides numpy
        arrays; a primary detector on the host takes a CPU decoder's YUV planes besides numpy
        arrays (it letterboxes the planes); a secondary model crops numpy arrays."""
        props = self.props
        if props.process_mode != "primary":
            return CPU_ONLY
        return BGR_OR_CUDA if props.backend == "torch" else BGR_OR_YUV

    @property
    def preferred_batch(self) -> int:
        """One frame per model instance at least, so that every instance has work, and a torch
        model's whole fixed batch (a secondary model's batch is the crops, whatever the
        frames)."""
        if self.props.process_mode == "secondary" or self.detector is None:
            return 1
        if self.props.backend == "torch":
            return int(self.detector.batch_size or 1)
        return int(self.detector.instances)

    def _due(self, frame: Frame) -> bool:
        seen = self._frames_seen[frame.source_id]
        self._frames_seen[frame.source_id] = seen + 1
        return seen % (self.props.interval + 1) == 0

    # Two batches in flight: while the model instances finish one batch, the next is already
    # queued to them, so no instance waits for the slowest frame of a batch. The pipeline asks
    # for the held batch back (``flush``) as soon as no further batch is waiting, so a live
    # stream gains no latency. A secondary model works batch by batch: it runs after the
    # tracker, which needs the primary's results first, so its own thread is all the overlap.

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def process(self, batch: Batch) -> Batch | None:
        if self.props.process_mode == "secondary":
            self._process_crops(batch)
            self._forget(batch)
            return batch
        submitted = self._submit(batch)
        previous, self._pending = self._pending, submitted
        return None if previous is None else self._finish(*previous)

    def flush(self) -> list[Batch]:
        pending, self._pending = self._pending, None
        return [] if pending is None else [self._finish(*pending)]

    def drain(self) -> list[Batch]:
        return self.flush()

    def _submit(self, batch: Batch) -> tuple[Batch, list[Frame], Any]:
        frames = [frame for frame in batch.frames if self._due(frame)]
        # A stream's end arrives with (or after) its last frame: forget it only once that is done.
        self._forget(batch)
        if not frames:
            return batch, frames, None
        keep_tensors = self.props.output_tensor_meta or self.props.network_type == "other"
        on_host = [frame for frame in frames if frame.memory != CUDA]
        if len(on_host) == len(frames):
            images = [frame.image for frame in frames]
            return batch, frames, self._submitted(images, keep_tensors=keep_tensors)
        # Device frames (the GPU mux's RGB [3, H, W] views of one batch tensor) go to the model
        # as they are: pixels never come to the host, only the kept boxes do. Frames of a CPU
        # source in the same batch go as numpy, in a call of their own.
        on_device = [frame for frame in frames if frame.memory == CUDA]
        results_of = [
            self._submitted(
                [frame.tensor for frame in on_device], keep_tensors=keep_tensors, layout="chw-rgb"
            )
        ]
        if on_host:
            images = [frame.image for frame in on_host]
            results_of.append(self._submitted(images, keep_tensors=keep_tensors))

        def in_frame_order() -> list[Any]:
            by_frame = {
                id(frame): result
                for group, results in zip((on_device, on_host), results_of, strict=False)
                for frame, result in zip(group, results(), strict=True)
            }
            return [by_frame[id(frame)] for frame in frames]

        return batch, frames, in_frame_order

    def _submitted(self, images: list[Any], **options: Any) -> Any:
        """The function that gives the detector's results on ``images``. A single instance runs
        them at once, in this thread: its failure is raised in the batch's turn, by ``_finish``,
        so that the batch held before still goes first."""
        try:
            return self.detector.submit(images, **options)
        except Exception as error:
            failure = error

            def fail() -> list[Any]:
                raise failure

            return fail

    def _forget(self, batch: Batch) -> None:
        """Free the state of streams that ended and of tracks the tracker ended."""
        for event in batch.events:
            if event.kind in ("ended", "removed"):
                self._frames_seen.pop(event.source_id, None)
                self._track_results.pop(event.source_id, None)
        for track in batch.terminated_tracks:
            if track.source_id is not None and track.source_id in self._track_results:
                self._track_results[track.source_id].pop(track.track_id, None)

    def _fail(self, batch: Batch, error: Exception, frames: int) -> None:
        """The model failed on ``batch``, whose ``frames`` due frames go on without its
        results: counted, and said on the bus (a Triton server that went away, say)."""
        self.frames_failed += frames
        self._failed_in_a_row += 1
        self.report_failure(batch, error)

    def _resume(self) -> None:
        """The model ran again after failing: said once, with what the failures cost."""
        if self._failed_in_a_row:
            self.bus.warning(
                self.name,
                f"inference resumed after {self._failed_in_a_row} failed batches; "
                f"{self.frames_failed} frames went without this model's results so far",
                failed_batches=self._failed_in_a_row,
                frames_failed=self.frames_failed,
            )
            self._failed_in_a_row = 0

    def _finish(self, batch: Batch, frames: list[Frame], results_of: Any) -> Batch:
        if results_of is None:
            return batch
        try:
            results = results_of()
        except Exception as error:
            # The frames go on without this model's objects; the failure is counted and said.
            self._fail(batch, error, len(frames))
            return batch
        self._resume()
        keep_tensors = self.props.output_tensor_meta or self.props.network_type == "other"
        wanted = self.props.classes
        for frame, result in zip(frames, results, strict=True):
            found = result.detections
            # The detector speaks in pixels of the image it was given; the frame's transform takes
            # them back to the original frame.
            xyxy = frame.transform.to_source(found.xyxy)
            width, height = frame.size_wh
            # Boxes may reach into the mux's padding: clip them to the original frame.
            np.clip(xyxy[:, 0::2], 0, width, out=xyxy[:, 0::2])
            np.clip(xyxy[:, 1::2], 0, height, out=xyxy[:, 1::2])
            keypoints = found.keypoints
            if keypoints is not None:
                keypoints = keypoints.copy()
                keypoints[..., :2] = frame.transform.points_to_source(keypoints[..., :2])
            class_id = found.class_id
            keep = slice(None) if wanted is None else np.isin(class_id, wanted)
            frame.meta.objects.add(
                xyxy[keep],
                found.confidence[keep],
                class_id[keep],
                [self.detector.label(int(c)) for c in class_id[keep]],
                component_id=self.gie_id,
                keypoints=None if keypoints is None else keypoints[keep],
            )
            frame.meta.inferred_by.add(self.gie_id)
            if keep_tensors and result.tensors is not None:
                frame.meta.tensor_meta.append(
                    TensorMeta(
                        component_id=self.gie_id,
                        model=str(self.detector.model_path),
                        tensors=result.tensors,
                        letterbox=frame.transform.then(result.letterbox),
                        input_size_wh=tuple(self.detector.input_size_wh),
                    )
                )
        return batch

    # -- secondary: the crops of objects ---------------------------------------------------------

    def _chosen_rows(self, frame: Frame) -> np.ndarray:
        """Rows of the objects this model runs on: made by the operated model, of the chosen
        classes, within the size limits (original-frame pixels)."""
        props = self.props
        objects = frame.objects
        chosen = objects.component_id == self.operate_on_gie_id
        if props.operate_on_class_ids is not None:
            chosen &= np.isin(objects.class_id, props.operate_on_class_ids)
        width = objects.xyxy[:, 2] - objects.xyxy[:, 0]
        height = objects.xyxy[:, 3] - objects.xyxy[:, 1]
        chosen &= (width >= props.input_object_min_width) & (
            height >= props.input_object_min_height
        )
        if props.input_object_max_width:
            chosen &= width <= props.input_object_max_width
        if props.input_object_max_height:
            chosen &= height <= props.input_object_max_height
        return np.flatnonzero(chosen)

    def _reuse_track_results(self, frame: Frame, rows: np.ndarray, due: bool) -> list[int]:
        """Attach the cached results of tracks that need no new look; the rows left to run."""
        if self.props.reinfer_interval is None:
            return [int(row) for row in rows]
        cache = self._track_results[frame.source_id]
        objects = frame.objects
        left: list[int] = []
        for row in rows.tolist():
            cached = cache.get(int(objects.track_id[row]))
            if cached is not None and (not due or self._still_fresh(cached, frame, row)):
                objects.classifications[row].extend(cached.results)
            else:
                left.append(row)
        return left

    def _still_fresh(self, cached: _TrackResult, frame: Frame, row: int) -> bool:
        interval = self.props.reinfer_interval or 0
        return frame.frame_num - cached.frame_num <= interval and _area(
            frame.objects.xyxy[row]
        ) <= cached.area * (1 + REINFER_AREA_GROWTH)

    def _process_crops(self, batch: Batch) -> None:
        from panoptes.models.crops import crop_boxes

        jobs: list[_FrameCrops] = []
        due_frames: list[Frame] = []
        for frame in batch.frames:
            due = self._due(frame)
            rows = self._reuse_track_results(frame, self._chosen_rows(frame), due)
            if not due:
                continue
            due_frames.append(frame)
            if rows:
                # Boxes are in original-frame pixels; the pixels travel at the mux's size.
                boxes = frame.transform.to_destination(frame.objects.xyxy[rows])
                crops, origins_xy = crop_boxes(frame.image, boxes)
                jobs.append(_FrameCrops(frame, rows, crops, origins_xy))
        images = [crop for job in jobs for crop in job.crops]
        keep_tensors = self.props.output_tensor_meta or self.props.network_type == "other"
        if images:
            try:
                if self.classifier is not None:
                    results = self.classifier.classify(images, keep_tensors=keep_tensors)
                else:
                    results = self.detector.detect(images, keep_tensors=keep_tensors)
            except Exception as error:
                # The frames go on without this model's results; the failure is counted and said.
                self._fail(batch, error, len(due_frames))
                return
            self._resume()
            if self.classifier is not None:
                self._attach_classifications(jobs, results)
            else:
                self._add_children(jobs, results)
            if keep_tensors:
                self._attach_tensors(jobs, results)
        for frame in due_frames:
            frame.meta.inferred_by.add(self.gie_id)

    def _attach_classifications(self, jobs: list[_FrameCrops], results: Any) -> None:
        threshold = self.props.classifier_threshold
        caching = self.props.reinfer_interval is not None
        index = 0
        for job in jobs:
            objects = job.frame.objects
            for row in job.rows:
                attached = [
                    (self.gie_id, label, float(confidence))
                    for label, confidence in zip(
                        results.labels[index], results.confidence[index].tolist(), strict=True
                    )
                    if confidence >= threshold
                ]
                objects.classifications[row].extend(attached)
                track = int(objects.track_id[row])
                if caching and track != NO_ID:
                    self._track_results[job.frame.source_id][track] = _TrackResult(
                        job.frame.frame_num, _area(objects.xyxy[row]), attached
                    )
                index += 1

    def _add_children(self, jobs: list[_FrameCrops], results: Any) -> None:
        wanted = self.props.classes
        index = 0
        for job in jobs:
            frame = job.frame
            width, height = frame.size_wh
            for row, origin_xy in zip(job.rows, job.origins_xy.tolist(), strict=True):
                found = results[index].detections
                index += 1
                keep = (
                    np.ones(len(found), bool) if wanted is None else np.isin(found.class_id, wanted)
                )
                if not keep.any():
                    continue
                # Crop pixels -> frame.image pixels -> original-frame pixels.
                offset = np.asarray(origin_xy * 2, np.float32)
                xyxy = frame.transform.to_source(found.xyxy[keep] + offset)
                np.clip(xyxy[:, 0::2], 0, width, out=xyxy[:, 0::2])
                np.clip(xyxy[:, 1::2], 0, height, out=xyxy[:, 1::2])
                keypoints = None
                if found.keypoints is not None:
                    keypoints = found.keypoints[keep].copy()
                    keypoints[..., :2] = frame.transform.points_to_source(
                        keypoints[..., :2] + offset[:2]
                    )
                class_id = found.class_id[keep]
                frame.objects.add(
                    xyxy,
                    found.confidence[keep],
                    class_id,
                    [self.detector.label(int(c)) for c in class_id],
                    component_id=self.gie_id,
                    parent=np.full(len(class_id), row, np.int32),
                    keypoints=keypoints,
                )

    def _attach_tensors(self, jobs: list[_FrameCrops], results: Any) -> None:
        runner = self.classifier if self.classifier is not None else self.detector
        index = 0
        for job in jobs:
            for row, (left, top) in zip(job.rows, job.origins_xy.tolist(), strict=True):
                if self.classifier is not None:
                    tensors = {name: array[index] for name, array in results.tensors.items()}
                    to_input = results.letterboxes[index]
                else:
                    tensors, to_input = results[index].tensors, results[index].letterbox
                index += 1
                if tensors is None:
                    continue
                # Original frame -> frame.image -> the crop -> the network input.
                to_crop = Letterbox((1.0, 1.0), (-float(left), -float(top)))
                job.frame.meta.tensor_meta.append(
                    ObjectTensorMeta(
                        component_id=self.gie_id,
                        model=str(runner.model_path),
                        tensors=tensors,
                        letterbox=job.frame.transform.then(to_crop).then(to_input),
                        input_size_wh=tuple(runner.input_size_wh),
                        row=row,
                    )
                )

    def close(self) -> None:
        if self.detector is not None:
            self.detector.close()
        if self.classifier is not None:
            self.classifier.close()


def _area(xyxy: np.ndarray) -> float:
    return float(max(0.0, xyxy[2] - xyxy[0]) * max(0.0, xyxy[3] - xyxy[1]))
