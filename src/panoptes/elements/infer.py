"""``infer``: runs a detector on the batch and adds its objects to each frame (nvinfer)."""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from panoptes.core.element import Element, ElementProperties
from panoptes.core.frame import Batch, Frame
from panoptes.core.meta import TensorMeta


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


class InferProperties(ElementProperties):
    name: str | None = Field(
        None, description="Element name (probes attach by it); default infer<N>."
    )
    model: str = Field(
        "yolox-nano",
        description="A model-zoo name (see `panoptes models list`) or a path to an .onnx file.",
    )
    backend: Literal["onnxruntime"] = Field("onnxruntime", description="Inference backend.")
    device: Literal["cpu", "cuda", "tensorrt"] = Field(
        "cpu", description="onnxruntime execution provider; cuda and tensorrt need onnxruntime-gpu."
    )
    instances: int | None = Field(
        None,
        ge=1,
        description="Copies of the model sharing each batch, one thread each by default; "
        "default min(4, cores).",
    )
    threads: int | None = Field(
        None, ge=1, description="CPU threads per instance; default cores / instances."
    )
    parser: str | None = Field(
        None,
        description="Output parser: yolox, yolov5, ultralytics, end2end, nanodet, fastestdet, "
        "none (no objects: decode the tensor meta in a probe), or module:function for your own; "
        "default: recognised from the model's outputs.",
    )
    labels: str | list[str] | None = Field(
        None,
        description="Labels file (one per line) or list; default: model metadata, else COCO-80.",
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
        description="Id stamped on this model's objects (gie-unique-id); default its position.",
    )
    classes: list[int] | None = Field(None, description="Keep only these class ids.")
    preprocess: PreprocessOverrides = Field(
        default_factory=PreprocessOverrides, description="Pre-processing overrides."
    )
    output_tensor_meta: bool = Field(
        False, description="Attach the raw output tensors to each frame for probes (tensor meta)."
    )

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


class Infer(Element):
    """Detects objects in every frame (or every ``interval + 1``-th frame of each stream)."""

    kind = "infer"
    Properties = InferProperties

    props: InferProperties

    def __init__(
        self, props: ElementProperties, *, name: str, context: Any, gie_id: int = 1
    ) -> None:
        super().__init__(props, name=name, context=context)
        self.gie_id = self.props.gie_id or gie_id
        self._frames_seen: defaultdict[int, int] = defaultdict(int)
        self._pending: tuple[Batch, list[Frame], Any] | None = None
        self.detector: Any = None

    def build(self) -> None:
        from panoptes.models.pool import DetectorPool

        props = self.props
        overrides = props.preprocess.model_dump(exclude_none=True)
        labels: Any = props.labels
        if isinstance(labels, str):
            labels = self.context.base_dir / labels
        providers = {"cpu": None, "cuda": ["cuda"], "tensorrt": ["tensorrt"]}[props.device]
        instances = props.instances or default_instances()
        threads = props.threads or max(1, (os.cpu_count() or 1) // instances)
        self.detector = DetectorPool(
            props.model,
            instances=instances,
            base_dir=self.context.base_dir,
            backend=props.backend,
            providers=providers,
            threads=threads,
            parser=props.parser,
            preprocess=overrides or None,
            labels=labels,
            threshold=props.threshold,
            class_thresholds=props.class_thresholds,
            nms_iou=props.nms_iou,
            topk=props.topk,
            class_agnostic_nms=props.class_agnostic_nms,
        )

    @property
    def preferred_batch(self) -> int:
        """One frame per model instance at least, so that every instance has work."""
        return int(self.detector.instances) if self.detector is not None else 1

    def _due(self, frame: Frame) -> bool:
        seen = self._frames_seen[frame.source_id]
        self._frames_seen[frame.source_id] = seen + 1
        return seen % (self.props.interval + 1) == 0

    # Two batches in flight: while the model instances finish one batch, the next is already
    # queued to them, so no instance waits for the slowest frame of a batch. The pipeline asks
    # for the held batch back (``flush``) as soon as no further batch is waiting, so a live
    # stream gains no latency.

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def process(self, batch: Batch) -> Batch | None:
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
        for event in batch.events:
            if event.kind in ("ended", "removed"):
                self._frames_seen.pop(event.source_id, None)
        if not frames:
            return batch, frames, None
        images = [frame.image for frame in frames]
        return (
            batch,
            frames,
            self.detector.submit(images, keep_tensors=self.props.output_tensor_meta),
        )

    def _finish(self, batch: Batch, frames: list[Frame], results_of: Any) -> Batch:
        if results_of is None:
            return batch
        try:
            results = results_of()
        except Exception as error:
            # The frames go on without this model's objects; the failure is counted and said.
            self.report_failure(batch, error)
            return batch
        keep_tensors = self.props.output_tensor_meta
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

    def close(self) -> None:
        if self.detector is not None:
            self.detector.close()
