"""Detection heads: turning a model's raw output tensors into candidate boxes.

A parser is a function ``(outputs, ctx) -> list[Candidates]``: ``outputs`` maps each output name to
its batched array (batch first), ``ctx`` is a :class:`ParserContext`; it returns one
:class:`Candidates` per image, in **network-input pixels** (the letterboxed frame the model saw).
Thresholds per class, NMS and top-k come after, in :mod:`panoptes.models.postprocess`.

Built-in parsers (:data:`PARSERS`) cover the common export layouts; :func:`detect_head` picks one
from the output names and shapes, and :func:`resolve_parser` also loads a user's
``"module:function"``.
"""

from __future__ import annotations

import ast
import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from panoptes.core.errors import ModelError
from panoptes.core.imports import load_function
from panoptes.models.preprocess import PreprocessSpec

__all__ = [
    "PARSERS",
    "Candidates",
    "Parser",
    "ParserContext",
    "TensorShape",
    "default_preprocess",
    "detect_head",
    "grid_cells",
    "num_classes_for",
    "parse_end2end",
    "parse_fastestdet",
    "parse_nanodet",
    "parse_ultralytics",
    "parse_yolov5",
    "parse_yolox",
    "resolve_parser",
]

#: A tensor shape as a model declares it: None for a dynamic dimension.
TensorShape = tuple[int | None, ...]

#: The strides of the three-level feature pyramids (P3-P5) of the YOLO families and NanoDet.
PYRAMID_STRIDES = (8, 16, 32)

_ULTRALYTICS_TASKS = ("detect", "pose", "segment")


@dataclass
class Candidates:
    """Candidate detections of one image, in network-input pixels.

    ``xyxy`` float32 [N, 4] (x1, y1, x2, y2); ``confidence`` float32 [N]; ``class_id`` int32 [N];
    ``keypoints`` float32 [N, K, 3] (x, y, visibility 0..1) or None. ``nms_done`` is True when the
    model's graph already suppressed overlapping boxes.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    keypoints: np.ndarray | None = None
    nms_done: bool = False

    def __len__(self) -> int:
        return len(self.confidence)

    @classmethod
    def empty(cls, *, num_keypoints: int | None = None, nms_done: bool = False) -> Candidates:
        """No candidates (with an empty [0, K, 3] keypoints array when ``num_keypoints``)."""
        keypoints = None if num_keypoints is None else np.zeros((0, num_keypoints, 3), np.float32)
        return cls(
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros(0, np.int32),
            keypoints,
            nms_done,
        )

    def take(self, index: np.ndarray) -> Candidates:
        """The candidates at ``index`` (integer indices or a boolean mask), in that order."""
        return Candidates(
            self.xyxy[index],
            self.confidence[index],
            self.class_id[index],
            None if self.keypoints is None else self.keypoints[index],
            self.nms_done,
        )


@dataclass(frozen=True)
class ParserContext:
    """What a parser knows about the model besides its outputs.

    ``input_size_wh`` is the network input (width, height) in pixels; ``num_classes`` is None when
    the head does not tell; ``min_confidence`` is the lowest threshold in use, so that parsers can
    drop weaker rows before decoding them; ``output_names`` are in the model's order; ``metadata``
    is the model's custom metadata (Ultralytics' ``kpt_shape``, ``names``...).
    """

    input_size_wh: tuple[int, int]
    num_classes: int | None = None
    min_confidence: float = 0.0
    output_names: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)


Parser = Callable[[Mapping[str, np.ndarray], ParserContext], list[Candidates]]


# --- helpers ---------------------------------------------------------------------------------


def _first_output(outputs: Mapping[str, np.ndarray], ctx: ParserContext) -> np.ndarray:
    name = ctx.output_names[0] if ctx.output_names else next(iter(outputs))
    return outputs[name]


def _expect_ndim(array: np.ndarray, ndim: int, parser: str, layout: str) -> None:
    if array.ndim != ndim:
        raise ModelError(f"{parser} parser expects an output {layout}, got shape {array.shape}")


@functools.lru_cache(maxsize=16)
def _grid(
    input_size_wh: tuple[int, int], strides: tuple[int, ...], round_up: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Cell (gx, gy) float32 [N, 2] and stride float32 [N] of each cell, level after level.

    Cells are numbered row by row (gy * width + gx) within each stride, as the heads flatten them.
    """
    cells, cell_strides = [], []
    for stride in strides:
        if round_up:
            width, height = (math.ceil(size / stride) for size in input_size_wh)
        else:
            width, height = (size // stride for size in input_size_wh)
        grid_y, grid_x = np.mgrid[0:height, 0:width]
        cells.append(np.stack([grid_x.ravel(), grid_y.ravel()], axis=1))
        cell_strides.append(np.full(height * width, stride))
    cell_xy = np.concatenate(cells).astype(np.float32)
    stride_of_cell = np.concatenate(cell_strides).astype(np.float32)
    cell_xy.setflags(write=False)  # shared through the cache
    stride_of_cell.setflags(write=False)
    return cell_xy, stride_of_cell


def grid_cells(input_size_wh: tuple[int, int], strides: Sequence[int] = PYRAMID_STRIDES) -> int:
    """How many cells the grids of ``strides`` have for an input of ``input_size_wh``."""
    return sum((input_size_wh[0] // s) * (input_size_wh[1] // s) for s in strides)


def _cxcywh_to_xyxy(cxcy: np.ndarray, wh: np.ndarray) -> np.ndarray:
    half = wh * 0.5
    return np.concatenate([cxcy - half, cxcy + half], axis=1).astype(np.float32, copy=False)


def _best_class(
    class_scores: np.ndarray, objectness: np.ndarray | None, min_confidence: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows whose best score reaches ``min_confidence``: (row index, class id, score).

    ``class_scores`` [N, C]; the score is objectness × best class score when ``objectness`` [N] is
    given. Rows are filtered on objectness first since no class score can lift a weak one.
    """
    if objectness is not None:
        rows = np.flatnonzero(objectness >= min_confidence)
        scores = class_scores[rows]
    else:
        rows = np.arange(len(class_scores))
        scores = class_scores
    class_id = scores.argmax(axis=1)
    confidence = scores[np.arange(len(rows)), class_id]
    if objectness is not None:
        confidence = confidence * objectness[rows]
    keep = confidence >= min_confidence
    return rows[keep], class_id[keep].astype(np.int32), confidence[keep].astype(np.float32)


# --- built-in parsers ------------------------------------------------------------------------


def parse_yolox(outputs: Mapping[str, np.ndarray], ctx: ParserContext) -> list[Candidates]:
    """YOLOX raw grid head: [B, N, 5 + C] rows (dx, dy, log w, log h, objectness, class scores).

    N covers the stride 8, 16 and 32 grids in that order. For cell (gx, gy) at stride s the centre
    is ((dx + gx)·s, (dy + gy)·s) and the size (exp(log w)·s, exp(log h)·s); objectness and class
    scores are already sigmoids and the score is objectness × class score.
    """
    output = _first_output(outputs, ctx)
    _expect_ndim(output, 3, "yolox", "[B, N, 5 + classes]")
    cell_xy, stride_of_cell = _grid(ctx.input_size_wh, PYRAMID_STRIDES)
    if output.shape[1] != len(cell_xy):
        width, height = ctx.input_size_wh
        raise ModelError(
            f"yolox parser: a {width}×{height} input has {len(cell_xy)} cells at strides 8, 16, 32 "
            f"but the output has {output.shape[1]} rows (shape {output.shape})"
        )
    results = []
    for rows in output:
        index, class_id, confidence = _best_class(rows[:, 5:], rows[:, 4], ctx.min_confidence)
        kept, stride = rows[index], stride_of_cell[index, None]
        cxcy = (kept[:, 0:2] + cell_xy[index]) * stride
        with np.errstate(over="ignore"):  # a wild log-size gives inf, not a warning
            wh = np.exp(kept[:, 2:4]) * stride
        results.append(Candidates(_cxcywh_to_xyxy(cxcy, wh), confidence, class_id))
    return results


def parse_yolov5(outputs: Mapping[str, np.ndarray], ctx: ParserContext) -> list[Candidates]:
    """YOLOv5 / YOLOv7 decoded rows: [B, N, 5 + C] (cx, cy, w, h, objectness, class scores).

    Boxes are centre and size in network-input pixels, scores are sigmoids; score = obj × class.
    N is usually 3 anchors × the cells of the stride 8, 16, 32 grids (25200 at 640×640).
    """
    output = _first_output(outputs, ctx)
    _expect_ndim(output, 3, "yolov5", "[B, N, 5 + classes]")
    results = []
    for rows in output:
        index, class_id, confidence = _best_class(rows[:, 5:], rows[:, 4], ctx.min_confidence)
        kept = rows[index]
        results.append(
            Candidates(_cxcywh_to_xyxy(kept[:, 0:2], kept[:, 2:4]), confidence, class_id)
        )
    return results


@functools.lru_cache(maxsize=16)
def _parse_kpt_shape(text: str) -> tuple[int, int]:
    try:
        value = ast.literal_eval(text)
        count, dims = (int(v) for v in value)
    except (ValueError, SyntaxError, TypeError) as exc:
        raise ModelError(f"metadata kpt_shape should be [count, 2 or 3], got {text!r}") from exc
    if dims not in (2, 3) or count <= 0:
        raise ModelError(f"metadata kpt_shape should be [count, 2 or 3], got {text!r}")
    return count, dims


def _ultralytics_layout(
    channels: int, metadata: Mapping[str, str], num_classes: int | None
) -> tuple[int, tuple[int, int] | None]:
    """(class count, keypoint shape or None) of an Ultralytics [B, 4 + C + extra, N] output."""
    keypoint_shape = None
    if "kpt_shape" in metadata and metadata.get("task", "pose") == "pose":
        keypoint_shape = _parse_kpt_shape(metadata["kpt_shape"])
    if num_classes is None:
        extra = keypoint_shape[0] * keypoint_shape[1] if keypoint_shape else 0
        num_classes = channels - 4 - extra
    needed = 4 + num_classes + (keypoint_shape[0] * keypoint_shape[1] if keypoint_shape else 0)
    if num_classes <= 0 or needed > channels:
        raise ModelError(
            f"ultralytics parser: an output of {channels} channels cannot hold 4 box values, "
            f"{num_classes} classes and keypoints {keypoint_shape}"
        )
    return num_classes, keypoint_shape


def parse_ultralytics(outputs: Mapping[str, np.ndarray], ctx: ParserContext) -> list[Candidates]:
    """Ultralytics YOLOv8 / YOLO11: [B, 4 + C (+ K·D), N] columns of (cx, cy, w, h, class scores).

    No objectness; class scores are final. Pose models (metadata ``task: pose``, ``kpt_shape:
    [K, D]``) append K keypoints (x, y in network pixels, visibility after a sigmoid when D = 3).
    Segmentation models append mask coefficients, which are ignored here.
    """
    output = _first_output(outputs, ctx)
    _expect_ndim(output, 3, "ultralytics", "[B, 4 + classes, N]")
    num_classes, keypoint_shape = _ultralytics_layout(
        output.shape[1], ctx.metadata, ctx.num_classes
    )
    results = []
    for columns in output:  # [channels, N]
        class_scores = columns[4 : 4 + num_classes]
        best = class_scores.max(axis=0)
        index = np.flatnonzero(best >= ctx.min_confidence)
        class_id = class_scores[:, index].argmax(axis=0).astype(np.int32)
        boxes = columns[0:4, index].T
        keypoints = None
        if keypoint_shape is not None:
            count, dims = keypoint_shape
            start = 4 + num_classes
            keypoints = columns[start : start + count * dims, index].T.reshape(-1, count, dims)
            if dims == 2:
                visible = np.ones((*keypoints.shape[:2], 1), np.float32)
                keypoints = np.concatenate([keypoints, visible], axis=2)
            keypoints = keypoints.astype(np.float32)
        results.append(
            Candidates(
                _cxcywh_to_xyxy(boxes[:, 0:2], boxes[:, 2:4]),
                best[index].astype(np.float32),
                class_id,
                keypoints,
            )
        )
    return results


def _end2end_roles(outputs: Sequence[tuple[str, TensorShape]]) -> dict[str, str] | None:
    """Names of the num_dets / boxes / scores / classes outputs of an EfficientNMS-style graph."""
    if len(outputs) != 4:
        return None
    roles: dict[str, str] = {}
    unnamed = []
    for name, shape in outputs:
        lowered = name.lower()
        if len(shape) == 3 and shape[2] == 4:
            roles.setdefault("boxes", name)
        elif "num" in lowered or (len(shape) == 2 and shape[1] == 1) or len(shape) == 1:
            roles.setdefault("num_dets", name)
        elif len(shape) != 2:
            return None
        elif "score" in lowered or "conf" in lowered:
            roles.setdefault("scores", name)
        elif "class" in lowered or "label" in lowered:
            roles.setdefault("classes", name)
        else:
            unnamed.append(name)
    # Unnamed [B, K] outputs take the remaining roles in the plugin's order: scores, then classes.
    for role in ("scores", "classes"):
        if role not in roles and unnamed:
            roles[role] = unnamed.pop(0)
    return roles if len(roles) == 4 else None


def parse_end2end(outputs: Mapping[str, np.ndarray], ctx: ParserContext) -> list[Candidates]:
    """Models whose graph ends in NMS (or, like YOLOv10, needs none).

    Either the four EfficientNMS outputs ``num_dets`` [B, 1], ``boxes`` [B, K, 4] (x1, y1, x2, y2),
    ``scores`` [B, K] and ``classes`` [B, K]; or one [B, K, 6] output of rows (x1, y1, x2, y2,
    score, class). Boxes are in network-input pixels.
    """
    roles = _end2end_roles([(name, array.shape) for name, array in outputs.items()])
    results = []
    if roles is not None:
        num_dets, boxes = outputs[roles["num_dets"]], outputs[roles["boxes"]]
        scores, classes = outputs[roles["scores"]], outputs[roles["classes"]]
        for image in range(len(boxes)):
            count = int(np.asarray(num_dets[image]).reshape(-1)[0])
            confidence = scores[image, :count].astype(np.float32)
            keep = np.flatnonzero(confidence >= ctx.min_confidence)
            results.append(
                Candidates(
                    boxes[image, :count][keep].astype(np.float32),
                    confidence[keep],
                    classes[image, :count][keep].astype(np.int32),
                    nms_done=True,
                )
            )
        return results
    output = _first_output(outputs, ctx)
    if output.ndim != 3 or output.shape[2] < 6:
        shapes = ", ".join(f"{name} {list(array.shape)}" for name, array in outputs.items())
        raise ModelError(
            "end2end parser expects num_dets/boxes/scores/classes outputs or one [B, K, 6] "
            f"output, got {shapes}"
        )
    # A row per grid cell (DeepStream-Yolo's export) means nothing was suppressed yet; a short
    # top-K list comes from an NMS or a one-to-one head.
    cells = grid_cells(ctx.input_size_wh)
    nms_done = output.shape[1] not in (cells, 3 * cells)
    for rows in output:
        keep = np.flatnonzero(rows[:, 4] >= ctx.min_confidence)
        kept = rows[keep]
        results.append(
            Candidates(
                kept[:, 0:4].astype(np.float32),
                kept[:, 4].astype(np.float32),
                kept[:, 5].astype(np.int32),
                nms_done=nms_done,
            )
        )
    return results


_NANODET_OUTPUT = re.compile(r"(cls|dis)_pred_stride_(\d+)")


def _nanodet_levels(names: Sequence[str]) -> list[tuple[int, str, str]]:
    """(stride, class output, distance output) of each level, finest first."""
    found: dict[tuple[str, int], str] = {}
    for name in names:
        match = _NANODET_OUTPUT.fullmatch(name)
        if match:
            found[match.group(1), int(match.group(2))] = name
    strides = sorted({stride for _, stride in found})
    return [
        (stride, found["cls", stride], found["dis", stride])
        for stride in strides
        if ("cls", stride) in found and ("dis", stride) in found
    ]


def parse_nanodet(outputs: Mapping[str, np.ndarray], ctx: ParserContext) -> list[Candidates]:
    """NanoDet (GFL head): per stride s, ``cls_pred_stride_s`` [B, HW, C] (sigmoids) and
    ``dis_pred_stride_s`` [B, HW, 4·R] (R bins per side: left, top, right, bottom).

    Each side's distance is the expectation of a softmax over its R bins (bin i = i strides),
    measured from the cell's centre ((gx + 0.5)·s, (gy + 0.5)·s) as in NanoDet 0.x, whose exports
    name their outputs this way. (NanoDet-Plus measures from (gx·s, gy·s); on these models that
    shifts every box up and left by half a stride.)
    """
    levels = _nanodet_levels(list(outputs))
    if not levels:
        raise ModelError(
            f"nanodet parser expects cls_pred_stride_* and dis_pred_stride_* outputs, "
            f"got {', '.join(outputs)}"
        )
    batch = len(outputs[levels[0][1]])
    per_image: list[list[tuple[np.ndarray, ...]]] = [[] for _ in range(batch)]
    for stride, cls_name, dis_name in levels:
        class_scores, distances = outputs[cls_name], outputs[dis_name]
        cell_xy, _ = _grid(ctx.input_size_wh, (stride,), round_up=True)
        if class_scores.shape[1] != len(cell_xy) or distances.shape[1] != len(cell_xy):
            raise ModelError(
                f"nanodet parser: stride {stride} of a {ctx.input_size_wh[0]}×"
                f"{ctx.input_size_wh[1]} input has {len(cell_xy)} cells, outputs have "
                f"{class_scores.shape} and {distances.shape}"
            )
        bins = distances.shape[2] // 4
        bin_values = np.arange(bins, dtype=np.float32)
        for image in range(batch):
            index, class_id, confidence = _best_class(class_scores[image], None, ctx.min_confidence)
            logits = distances[image, index].reshape(-1, 4, bins)
            weights = np.exp(logits - logits.max(axis=2, keepdims=True))
            weights /= weights.sum(axis=2, keepdims=True)
            ltrb = (weights @ bin_values) * stride  # [M, 4]
            centre = (cell_xy[index] + 0.5) * stride
            xyxy = np.concatenate([centre - ltrb[:, 0:2], centre + ltrb[:, 2:4]], axis=1)
            per_image[image].append((xyxy.astype(np.float32), confidence, class_id))
    results = []
    for found in per_image:
        xyxy, confidence, class_id = (np.concatenate(parts) for parts in zip(*found, strict=True))
        results.append(Candidates(xyxy, confidence, class_id))
    return results


def parse_fastestdet(outputs: Mapping[str, np.ndarray], ctx: ParserContext) -> list[Candidates]:
    """FastestDet single grid: [B, 5 + C, H, W].

    Channel 0 objectness (sigmoid done), 1-2 cell offsets (tanh), 3-4 width and height relative to
    the input (sigmoid), 5.. class probabilities (softmax done); score = obj^0.6 · class^0.4.
    """
    output = _first_output(outputs, ctx)
    _expect_ndim(output, 4, "fastestdet", "[B, 5 + classes, H, W]")
    input_w, input_h = ctx.input_size_wh
    grid_h, grid_w = output.shape[2:]
    results = []
    for grid in output:
        flat = grid.reshape(grid.shape[0], -1)  # [5 + C, H·W]
        class_scores = np.clip(flat[5:], 0.0, 1.0)
        class_id = class_scores.argmax(axis=0)
        best = class_scores[class_id, np.arange(flat.shape[1])]
        score = np.clip(flat[0], 0.0, 1.0) ** 0.6 * best**0.4
        index = np.flatnonzero(score >= ctx.min_confidence)
        cell_y, cell_x = np.divmod(index, grid_w)
        cx = (cell_x + np.tanh(flat[1, index])) / grid_w * input_w
        cy = (cell_y + np.tanh(flat[2, index])) / grid_h * input_h
        wh = 1.0 / (1.0 + np.exp(-flat[3:5, index].T)) * np.array([input_w, input_h], np.float32)
        results.append(
            Candidates(
                _cxcywh_to_xyxy(np.stack([cx, cy], axis=1), wh),
                score[index].astype(np.float32),
                class_id[index].astype(np.int32),
            )
        )
    return results


def parse_none(outputs: Mapping[str, np.ndarray], ctx: ParserContext) -> list[Candidates]:
    """No objects: the model's raw tensors go to probes as tensor meta (nvinfer's
    ``network-type=100`` with ``output-tensor-meta=1``), which decode them in Python."""
    first = _first_output(outputs, ctx)
    return [Candidates.empty() for _ in range(first.shape[0])]


#: Built-in parsers by name.
PARSERS: dict[str, Parser] = {
    "none": parse_none,
    "yolox": parse_yolox,
    "yolov5": parse_yolov5,
    "ultralytics": parse_ultralytics,
    "end2end": parse_end2end,
    "nanodet": parse_nanodet,
    "fastestdet": parse_fastestdet,
}

_RGB_UNIT = {"color_order": "rgb", "std": (255.0, 255.0, 255.0)}
_PREPROCESS_DEFAULTS: dict[str, dict[str, Any]] = {
    "yolox": {"pad_position": "top-left", "pad_value": 114.0, "color_order": "bgr"},
    "yolov5": _RGB_UNIT,
    "ultralytics": _RGB_UNIT,
    "end2end": _RGB_UNIT,
    "nanodet": {
        "pad_value": 0.0,
        "mean": (103.53, 116.28, 123.675),
        "std": (57.375, 57.12, 58.395),
    },
    "fastestdet": {"keep_ratio": False, "std": (255.0, 255.0, 255.0)},
}


def default_preprocess(parser_name: str, input_size_wh: tuple[int, int]) -> PreprocessSpec:
    """The pre-processing the models of a built-in parser's family were trained with.

    yolox: BGR 0..255, top-left pad 114; ultralytics, yolov5, end2end: RGB / 255, centred pad 114;
    nanodet: BGR, ImageNet mean/std, centred pad 0; fastestdet: stretch, BGR / 255. Other parsers
    get BGR 0..255 with a centred pad of 114.
    """
    return PreprocessSpec(input_size_wh, **_PREPROCESS_DEFAULTS.get(parser_name, {}))


def num_classes_for(
    parser_name: str, outputs: Sequence[tuple[str, TensorShape]], metadata: Mapping[str, str]
) -> int | None:
    """How many classes a built-in head's outputs hold, or None when their shapes do not say."""
    first = outputs[0][1] if outputs else ()
    names = metadata.get("names")
    if parser_name in ("yolox", "yolov5") and len(first) == 3 and first[2] is not None:
        return first[2] - 5
    if parser_name == "fastestdet" and len(first) == 4 and first[1] is not None:
        return first[1] - 5
    if parser_name == "nanodet":
        levels = _nanodet_levels([name for name, _ in outputs])
        shapes = dict(outputs)
        return shapes[levels[0][1]][-1] if levels else None
    if parser_name == "ultralytics" and len(first) == 3 and first[1] is not None:
        from panoptes.models.labels import labels_from_metadata

        labels = labels_from_metadata(metadata) if names else None
        return _ultralytics_layout(first[1], metadata, len(labels) if labels else None)[0]
    if names:
        from panoptes.models.labels import labels_from_metadata

        labels = labels_from_metadata(metadata)
        return len(labels) if labels else None
    return None


def _format_outputs(outputs: Sequence[tuple[str, TensorShape]]) -> str:
    return ", ".join(
        f"{name!r} [{', '.join('?' if dim is None else str(dim) for dim in shape)}]"
        for name, shape in outputs
    )


def detect_head(
    outputs: Sequence[tuple[str, TensorShape]],
    metadata: Mapping[str, str],
    input_size_wh: tuple[int, int],
    *,
    model: str = "the model",
) -> str:
    """The name of the built-in parser for a model with these outputs (name, shape) in order.

    Uses the Ultralytics metadata (``task``, ``end2end``) when present, else the shapes: rows equal
    to the grid cells at strides 8/16/32 as [B, N, 5 + C] -> yolox; 3 × cells -> yolov5;
    [B, 4 + C, N] with N = cells -> ultralytics; ``cls_pred_stride_*``/``dis_pred_stride_*`` ->
    nanodet; one [B, 5 + C, H, W] -> fastestdet; num_dets/boxes/scores/classes, or [B, K, 6] with
    K not a cell count -> end2end. Raises :class:`ModelError` when nothing matches.
    """
    outputs = [(name, tuple(shape)) for name, shape in outputs]
    cells = grid_cells(input_size_wh)
    if _nanodet_levels([name for name, _ in outputs]):
        return "nanodet"
    if _end2end_roles(outputs) is not None:
        return "end2end"
    if outputs:
        shape = outputs[0][1]
        ultralytics = metadata.get("task") in _ULTRALYTICS_TASKS
        if ultralytics and metadata.get("end2end", "").lower() == "true":
            return "end2end"  # YOLOv10 / YOLO26 exports: [B, 300, 6]
        if len(shape) == 3:
            rows, columns = shape[1], shape[2]
            if ultralytics and (columns is None or columns == cells):
                return "ultralytics"
            if columns == cells and rows is not None and rows < columns:
                return "ultralytics"
            if rows == cells and columns is not None and columns >= 6:
                return "yolox"
            if rows == 3 * cells and columns is not None and columns >= 6:
                return "yolov5"
            if columns == 6 and rows not in (cells, 3 * cells):
                return "end2end"
        if len(outputs) == 1 and len(shape) == 4 and shape[1] is not None and shape[1] >= 6:
            return "fastestdet"
    width, height = input_size_wh
    raise ModelError(
        f"{model}: cannot tell which detection head its outputs come from. Outputs: "
        f"{_format_outputs(outputs) or 'none'} (input {width}×{height}, metadata keys: "
        f"{', '.join(sorted(metadata)) or 'none'}). Known parsers: {', '.join(sorted(PARSERS))}. "
        "Name one in the model's config (parser: yolox), or give a Python function "
        "(parser: 'my_package.my_module:parse', called as parse(outputs, ctx) -> "
        "list[Candidates])."
    )


def resolve_parser(name_or_ref: str, base_dir: Path | None = None) -> Parser:
    """A built-in parser by name, or a user's function from ``"module:function"``.

    ``"python:module:function"`` is accepted too, and the module may be a ``.py`` file path
    (relative to ``base_dir``). Raises :class:`ModelError` for an unknown name or a function that
    cannot be imported.
    """
    if name_or_ref in PARSERS:
        return PARSERS[name_or_ref]
    ref = name_or_ref.removeprefix("python:")
    if ":" not in ref:
        raise ModelError(
            f"unknown parser {name_or_ref!r}; known: {', '.join(sorted(PARSERS))}, "
            "or a Python function as 'module:function'"
        )
    try:
        parser: Parser = load_function(ref, base_dir)
    except ImportError as error:
        raise ModelError(f"parser {name_or_ref!r}: {error}") from error
    return parser
