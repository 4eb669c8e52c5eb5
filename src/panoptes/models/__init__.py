"""Models: inference backends, pre-processing, detection-head parsers, labels and the model zoo.

:class:`Detector` ties them together for the infer element: BGR frames in, :class:`Detections` in
frame pixels out.
"""

from __future__ import annotations

from panoptes.models.backends import BACKENDS, Backend, TensorInfo, load_backend
from panoptes.models.detector import Detections, Detector, DetectorResult, ModelWarning
from panoptes.models.labels import COCO_LABELS, labels_from_metadata, load_labels
from panoptes.models.parsers import (
    PARSERS,
    Candidates,
    Parser,
    ParserContext,
    default_preprocess,
    detect_head,
    resolve_parser,
)
from panoptes.models.postprocess import filter_candidates
from panoptes.models.preprocess import Preprocessor, PreprocessSpec, preprocess_batch
from panoptes.models.zoo import ZOO, ModelEntry, ResolvedModel, list_models, pull, resolve_model

__all__ = [
    "BACKENDS",
    "COCO_LABELS",
    "PARSERS",
    "ZOO",
    "Backend",
    "Candidates",
    "Detections",
    "Detector",
    "DetectorResult",
    "ModelEntry",
    "ModelWarning",
    "Parser",
    "ParserContext",
    "PreprocessSpec",
    "Preprocessor",
    "ResolvedModel",
    "TensorInfo",
    "default_preprocess",
    "detect_head",
    "filter_candidates",
    "labels_from_metadata",
    "list_models",
    "load_backend",
    "load_labels",
    "preprocess_batch",
    "pull",
    "resolve_model",
    "resolve_parser",
]
