"""The detector: pre-processing, the model, its head's parser and post-processing in one object.

Everything about the model is worked out once, when the :class:`Detector` is built (input size,
batch size, head, classes, labels), and checked there with errors that name the model file; each
call to :meth:`Detector.detect` then only runs the four stages.
"""

from __future__ import annotations

import ast
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from panoptes.core.errors import ConfigError, ModelError
from panoptes.core.geometry import Letterbox
from panoptes.media.yuv import YuvImage
from panoptes.models.backends import REMOTE_BACKENDS, Backend, load_backend
from panoptes.models.image_input import check_image_input, image_input_size
from panoptes.models.labels import COCO_LABELS, labels_from_metadata, load_labels
from panoptes.models.parsers import (
    Candidates,
    Parser,
    ParserContext,
    default_preprocess,
    detect_head,
    num_classes_for,
    resolve_parser,
)
from panoptes.models.postprocess import BoxLimits, boxes_within_limits, filter_candidates
from panoptes.models.preprocess import Preprocessor, PreprocessSpec
from panoptes.models.zoo import ZOO, ResolvedModel, resolve_model

if TYPE_CHECKING:
    from panoptes.models.gpu.preprocess import ImageLayout

__all__ = ["Detections", "Detector", "DetectorResult", "ModelWarning"]


class ModelWarning(UserWarning):
    """A model loads and runs, but something about it is likely not what was meant."""


@dataclass
class Detections:
    """The detections of one image, in pixels of that image.

    ``xyxy`` float32 [N, 4] (x1, y1, x2, y2, clipped to the image); ``confidence`` float32 [N];
    ``class_id`` int32 [N]; ``keypoints`` float32 [N, K, 3] (x, y, visibility 0..1) or None.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    keypoints: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.confidence)


@dataclass
class DetectorResult:
    """What :meth:`Detector.detect` gives for one image.

    ``letterbox`` maps the image's pixels to network-input pixels. ``tensors`` holds this image's
    slice of each raw output (without the batch dimension) when asked for with ``keep_tensors``.
    """

    detections: Detections
    letterbox: Letterbox
    tensors: dict[str, np.ndarray] | None = None


def _metadata_size(metadata: Mapping[str, str]) -> tuple[int, int] | None:
    """Ultralytics' ``imgsz`` ("[640, 640]", height first) as (width, height)."""
    try:
        height, width = (int(v) for v in ast.literal_eval(metadata["imgsz"]))
    except (KeyError, ValueError, SyntaxError, TypeError):
        return None
    return width, height


class Detector:
    """An object detector over BGR frames.

    ``model`` is a path (relative to ``base_dir``) or a zoo name. ``parser`` names the head's
    parser, a ``"module:function"``, or a function; when None it comes from the zoo entry or is
    recognised from the outputs. ``preprocess`` overrides fields of the parser's default
    :class:`PreprocessSpec`. ``labels`` are names, or a labels file; when None they come from the
    model's metadata, else COCO-80 for an 80-class model. ``threshold`` is the minimum confidence,
    ``class_thresholds`` overrides it per class id; ``nms_iou`` and ``topk`` bound what is kept.
    Then ``box_limits`` (``class_box_limits`` per class id) drop boxes by size and position in
    the pixels of the image given, and objects of ``excluded_classes`` are dropped (nvinfer's
    detection filters and ``filter-out-class-ids``). ``backend_options`` go to the backend
    besides ``providers`` and ``threads`` (backend torch: ``device``, ``precision``,
    ``batch_size``, ``cuda_graphs``, ``compile``, ``gpu_id``...). A backend that runs on a device
    (backend torch) gets the four stages run there, and only the kept boxes come back to the
    host (see :class:`~panoptes.models.gpu.pipeline.DevicePipeline`).

    Not thread-safe: its buffers are reused from call to call.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        base_dir: Path | None = None,
        backend: str = "onnxruntime",
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        parser: str | Parser | None = None,
        preprocess: Mapping[str, object] | None = None,
        labels: Sequence[str] | str | Path | None = None,
        threshold: float = 0.25,
        class_thresholds: Mapping[int, float] | None = None,
        nms_iou: float = 0.45,
        topk: int = 300,
        class_agnostic_nms: bool = False,
        backend_options: Mapping[str, Any] | None = None,
        box_limits: BoxLimits | None = None,
        class_box_limits: Mapping[int, BoxLimits] | None = None,
        excluded_classes: Sequence[int] = (),
    ) -> None:
        class_thresholds = dict(class_thresholds or {})
        for place, value in [("threshold", threshold), ("nms_iou", nms_iou)] + [
            (f"class_thresholds[{key}]", value) for key, value in class_thresholds.items()
        ]:
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"must be between 0 and 1, got {value}", place)
        if topk < 1:
            raise ConfigError(f"must be at least 1, got {topk}", "topk")

        self._filter_options: dict[str, Any] = {
            "threshold": threshold,
            "class_thresholds": class_thresholds,
            "nms_iou": nms_iou,
            "topk": topk,
            "class_agnostic": class_agnostic_nms,
        }
        self._box_limits = box_limits or BoxLimits()
        self._class_box_limits = dict(class_box_limits or {})
        self._excluded_classes = list(excluded_classes)
        # A served model (backend triton) lives on its server: its name is all there is here.
        resolved = (
            ResolvedModel(Path(str(model)), ZOO.get(str(model)))
            if backend in REMOTE_BACKENDS
            else resolve_model(str(model), base_dir=base_dir)
        )
        self.model_path: Path = resolved.path
        self._backend: Backend = load_backend(
            backend,
            self.model_path,
            providers=providers,
            threads=threads,
            **dict(backend_options or {}),
        )
        try:
            self._build(
                resolved.entry.parser if parser is None and resolved.entry else parser,
                dict(preprocess or {}),
                labels,
                base_dir,
                min([threshold, *class_thresholds.values()]),
            )
        except BaseException:
            self._backend.close()
            raise

    def _build(
        self,
        parser: str | Parser | None,
        preprocess: dict[str, object],
        labels: Sequence[str] | str | Path | None,
        base_dir: Path | None,
        min_confidence: float,
    ) -> None:
        model = str(self.model_path)
        image_input = check_image_input(self._backend.inputs, model, "detector")
        metadata = self._backend.metadata
        output_shapes = [(info.name, info.shape) for info in self._backend.outputs]

        self.batch_size: int | None = image_input.shape[0]
        input_size_wh = image_input_size(
            image_input,
            preprocess.get("input_size_wh"),
            model,
            fallback=_metadata_size(metadata),
        )

        if parser is None:
            self.parser_name: str = detect_head(output_shapes, metadata, input_size_wh, model=model)
            self._parser: Parser = resolve_parser(self.parser_name, base_dir)
        elif isinstance(parser, str):
            self.parser_name = parser
            self._parser = resolve_parser(parser, base_dir)
        else:
            self.parser_name = f"{parser.__module__}:{getattr(parser, '__qualname__', parser)}"
            self._parser = parser

        spec = default_preprocess(self.parser_name, input_size_wh)
        self.preprocess: PreprocessSpec = spec.replace(**preprocess)
        self.input_size_wh: tuple[int, int] = self.preprocess.input_size_wh
        self._preprocessor = Preprocessor(self.preprocess)

        num_classes = num_classes_for(self.parser_name, output_shapes, metadata)
        self.labels: list[str] = self._labels(labels, base_dir, num_classes)
        if num_classes is not None and len(self.labels) < num_classes:
            warnings.warn(
                f"model {model} has {num_classes} classes but only {len(self.labels)} labels; "
                "the others are named class_<id>",
                ModelWarning,
                stacklevel=3,
            )
        self.num_classes: int | None = num_classes
        self._context = ParserContext(
            input_size_wh=self.input_size_wh,
            num_classes=num_classes if num_classes is not None else (len(self.labels) or None),
            min_confidence=min_confidence,
            output_names=tuple(name for name, _ in output_shapes),
            metadata=dict(metadata),
        )
        self._device_path: Any = None
        if hasattr(self._backend, "run_device"):
            from panoptes.models.gpu.pipeline import DevicePipeline

            self._device_path = DevicePipeline(
                self._backend,  # type: ignore[arg-type]
                self.preprocess,
                self.parser_name,
                self._parser,
                self._context,
                self._filter_options,
            )

    def _labels(
        self,
        labels: Sequence[str] | str | Path | None,
        base_dir: Path | None,
        num_classes: int | None,
    ) -> list[str]:
        if isinstance(labels, str | Path):
            path = Path(labels).expanduser()
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            return load_labels(path)
        if labels is not None:
            return [str(label) for label in labels]
        from_metadata = labels_from_metadata(self._backend.metadata, model=str(self.model_path))
        if from_metadata:
            return from_metadata
        if num_classes == len(COCO_LABELS):
            return list(COCO_LABELS)
        return [f"class_{index}" for index in range(num_classes or 0)]

    def label(self, class_id: int) -> str:
        """The name of ``class_id`` (``class_<id>`` beyond the labels)."""
        return self.labels[class_id] if 0 <= class_id < len(self.labels) else f"class_{class_id}"

    @property
    def takes_tensors(self) -> bool:
        """True when the model runs on a device backend, which also takes torch tensors."""
        return self._device_path is not None

    def detect(
        self,
        images: Sequence[Any],
        *,
        keep_tensors: bool = False,
        layout: ImageLayout = "hwc-bgr",
    ) -> list[DetectorResult]:
        """Detect objects in BGR HWC uint8 ``images``: one result per image, in the same order.
        On the host an image may also be a decoder's :class:`YuvImage` (letterboxed in its
        planes).

        A model with a dynamic batch dimension runs all the images in one call; a fixed batch
        runs them in chunks of that size (the last one padded with blank frames). On a device
        backend (:attr:`takes_tensors`) the images may also be uint8 tensors (on that device or
        not): [H, W, 3] BGR, or [3, H, W] RGB with ``layout`` ``chw-rgb``, the mux's form on
        the GPU. Only the kept boxes come back to the host.
        """
        if layout != "hwc-bgr" and self._device_path is None:
            raise ModelError(
                f"layout {layout}: this model runs on the host and takes BGR [H, W, 3] arrays; "
                "use a device backend (backend torch) for tensors"
            )
        results: list[DetectorResult] = []
        step = self.batch_size or max(1, len(images))
        for start in range(0, len(images), step):
            chunk = images[start : start + step]
            if self._device_path is not None:
                kept, letterboxes, outputs = self._device_path(
                    chunk, layout=layout, keep_tensors=keep_tensors
                )
                rows = len(chunk)
            else:
                kept, letterboxes, outputs, rows = self._detect_on_host(chunk)
            for index, (image, letterbox) in enumerate(zip(chunk, letterboxes, strict=True)):
                tensors = None
                if keep_tensors and outputs is not None:
                    tensors = {
                        name: array[index] if array.ndim and len(array) == rows else array
                        for name, array in outputs.items()
                    }
                if isinstance(image, YuvImage):
                    height_width = image.size_wh[::-1]
                else:
                    shape = tuple(image.shape)
                    height_width = shape[1:3] if layout == "chw-rgb" else shape[:2]
                detections = self._within_limits(
                    _to_image(kept[index], letterbox, height_width), height_width[0]
                )
                results.append(DetectorResult(detections, letterbox, tensors))
        return results

    def _within_limits(self, detections: Detections, image_height: int) -> Detections:
        """The detections inside their class's box limits and not of an excluded class."""
        limited = self._class_box_limits or not self._box_limits.limits_nothing
        if not limited and not self._excluded_classes:
            return detections
        keep = boxes_within_limits(
            detections.xyxy,
            detections.class_id,
            image_height,
            limits=self._box_limits,
            class_limits=self._class_box_limits,
            excluded_classes=self._excluded_classes,
        )
        if keep.all():
            return detections
        return Detections(
            detections.xyxy[keep],
            detections.confidence[keep],
            detections.class_id[keep],
            None if detections.keypoints is None else detections.keypoints[keep],
        )

    def _detect_on_host(
        self, chunk: Sequence[np.ndarray | YuvImage]
    ) -> tuple[list[Candidates], list[Letterbox], dict[str, np.ndarray], int]:
        """The four stages on the CPU: kept candidates and letterbox per image, the raw outputs,
        and the rows the model ran (the chunk, padded to a fixed batch)."""
        batch, letterboxes = self._preprocessor(chunk)
        if self.batch_size is not None and len(chunk) < self.batch_size:
            blank = np.zeros((self.batch_size - len(chunk), *batch.shape[1:]), np.float32)
            batch = np.concatenate([batch, blank])
        outputs = self._backend.run(batch)
        candidates = self._parser(outputs, self._context)
        if len(candidates) < len(chunk):
            raise ModelError(
                f"parser {self.parser_name} returned {len(candidates)} results for a batch "
                f"of {len(chunk)} images"
            )
        kept = [filter_candidates(candidates[i], **self._filter_options) for i in range(len(chunk))]
        return kept, letterboxes, outputs, len(batch)

    def run_tensors(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run the model alone on an NCHW float32 ``batch``: its raw outputs by name."""
        return self._backend.run(batch)

    def close(self) -> None:
        """Release the model."""
        if self._device_path is not None:
            self._device_path.close()
        self._backend.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        width, height = self.input_size_wh
        return (
            f"Detector({str(self.model_path)!r}, parser={self.parser_name!r}, "
            f"input={width}×{height}, batch={self.batch_size or 'dynamic'})"
        )


def _to_image(kept: Candidates, letterbox: Letterbox, height_width: tuple[int, ...]) -> Detections:
    """Candidates in network pixels -> detections in the pixels of an image ``height_width``."""
    height, width = height_width
    xyxy = letterbox.to_source(kept.xyxy)
    np.clip(xyxy[:, 0::2], 0.0, width, out=xyxy[:, 0::2])
    np.clip(xyxy[:, 1::2], 0.0, height, out=xyxy[:, 1::2])
    keypoints = None
    if kept.keypoints is not None:
        keypoints = np.array(kept.keypoints, dtype=np.float32)
        keypoints[..., 0] = (keypoints[..., 0] - letterbox.pad_xy[0]) / letterbox.scale_xy[0]
        keypoints[..., 1] = (keypoints[..., 1] - letterbox.pad_xy[1]) / letterbox.scale_xy[1]
    return Detections(
        xyxy,
        np.asarray(kept.confidence, dtype=np.float32),
        np.asarray(kept.class_id, dtype=np.int32),
        keypoints,
    )
