"""Decoding, thresholds, NMS and top-k in torch against the numpy parsers, on real outputs.

The raw outputs come from onnxruntime on frames of the shared clips, so both sides decode the
very same numbers; they must keep the same boxes, in the same order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch_gpu_helpers import DEVICES, device_or_skip

from panoptes.models.detector import Detector
from panoptes.models.gpu.decode import DEVICE_DECODERS
from panoptes.models.gpu.nms import FixedSelection, select_detections
from panoptes.models.parsers import Candidates
from panoptes.models.postprocess import filter_candidates

OPTIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "low-threshold": {"threshold": 0.05},
    "class-thresholds": {"class_thresholds": {0: 0.6, 2: 0.1}},
    "topk": {"topk": 3, "threshold": 0.1},
    "agnostic": {"class_agnostic": True, "threshold": 0.1},
    "tight-nms": {"nms_iou": 0.2, "threshold": 0.1},
}
DEFAULTS: dict[str, Any] = {
    "threshold": 0.25,
    "class_thresholds": {},
    "nms_iou": 0.45,
    "topk": 300,
    "class_agnostic": False,
}

# model file, frames used (every clip's, or the first clip's only for the slow int8 pose model)
MODELS = {
    "yolox": ("yolox_nano.onnx", None),
    "ultralytics": ("yolov8n_int8.onnx", None),
    "ultralytics-pose": ("yolo11n-pose_int8.tailfix.onnx", 3),
}


@dataclasses.dataclass
class RawOutputs:
    detector: Detector
    outputs: dict[str, np.ndarray]


@pytest.fixture(scope="module", params=sorted(MODELS))
def raw(
    request: pytest.FixtureRequest, shared_models: Path, all_frames: list[np.ndarray]
) -> RawOutputs:
    """onnxruntime's raw outputs for the frames, image by image (the models take batches of 1)."""
    filename, count = MODELS[request.param]
    detector = Detector(shared_models / filename, threads=1)
    parts = []
    for frame in all_frames[:count]:
        batch, _ = detector._preprocessor([frame])
        parts.append(detector.run_tensors(batch))
    outputs = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    return RawOutputs(detector, outputs)


def _numpy_path(raw: RawOutputs, options: Mapping[str, Any]) -> list[Candidates]:
    context = dataclasses.replace(
        raw.detector._context,
        min_confidence=min([options["threshold"], *options["class_thresholds"].values()]),
    )
    candidates = raw.detector._parser(raw.outputs, context)
    return [filter_candidates(image, **options) for image in candidates]


def _torch_path(
    raw: RawOutputs, options: Mapping[str, Any], device: torch.device, selection: str = "eager"
) -> list[Candidates]:
    """The torch decoder, then :func:`select_detections` (``eager``) or
    :class:`FixedSelection` (``fixed``; None where its shapes were too small)."""
    outputs = {name: torch.from_numpy(array).to(device) for name, array in raw.outputs.items()}
    decoder = DEVICE_DECODERS[raw.detector.parser_name]
    dense = decoder(outputs, raw.detector._context)
    if selection == "eager":
        return select_detections(dense, **options)
    fixed = FixedSelection(**options)
    kept = fixed.unpack(fixed(dense).cpu().numpy(), len(dense.confidence))
    assert kept is not None, fixed  # the default shapes hold these clips' candidates
    return kept


def assert_same_candidates(ours: list[Candidates], theirs: list[Candidates]) -> None:
    assert len(ours) == len(theirs)
    for image, (mine, reference) in enumerate(zip(ours, theirs, strict=True)):
        assert mine.class_id.tolist() == reference.class_id.tolist(), image
        np.testing.assert_allclose(mine.confidence, reference.confidence, rtol=1e-6)
        np.testing.assert_allclose(mine.xyxy, reference.xyxy, rtol=1e-5, atol=1e-3)
        if mine.keypoints is None or reference.keypoints is None:
            assert mine.keypoints is None and reference.keypoints is None
        else:
            np.testing.assert_allclose(mine.keypoints, reference.keypoints, rtol=1e-5, atol=1e-3)
        assert mine.xyxy.dtype == np.float32 and mine.class_id.dtype == np.int32


@pytest.mark.parametrize("device_name", DEVICES)
@pytest.mark.parametrize("selection", ["eager", "fixed"])
@pytest.mark.parametrize("option_name", sorted(OPTIONS))
def test_same_detections_as_the_numpy_parsers(
    raw: RawOutputs, option_name: str, selection: str, device_name: str
) -> None:
    options = {**DEFAULTS, **OPTIONS[option_name]}
    theirs = _numpy_path(raw, options)
    ours = _torch_path(raw, options, device_or_skip(device_name), selection)
    assert sum(map(len, theirs)) > 0
    assert_same_candidates(ours, theirs)


def test_fp16_outputs_decode_in_float32(raw: RawOutputs) -> None:
    """A half-precision model's outputs: decoded as float32, close to the float32 result."""
    options = dict(DEFAULTS)
    halves = RawOutputs(
        raw.detector,
        {name: array.astype(np.float16) for name, array in raw.outputs.items()},
    )
    ours = _torch_path(halves, options, torch.device("cpu"))
    theirs = _numpy_path(raw, options)
    for mine, reference in zip(ours, theirs, strict=True):
        strong = reference.confidence > 0.35  # away from the threshold
        assert set(reference.class_id[strong].tolist()) <= set(mine.class_id.tolist())
