"""panoptes: real-time video analytics over many cameras.

Build a pipeline from a YAML file or a dict, attach probes, run::

    import panoptes

    pipeline = panoptes.Pipeline.from_config("pipeline.yaml")
    pipeline.add_probe("detector", lambda batch: print(len(batch)))
    summary = pipeline.run()
"""

from panoptes.core.bus import Bus, Message, MessageType
from panoptes.core.errors import (
    ConfigError,
    LinkError,
    ModelError,
    ModelNotFoundError,
    PanoptesError,
    PipelineError,
    SourceError,
)
from panoptes.core.frame import Batch, Frame, StreamEvent
from panoptes.core.geometry import Letterbox
from panoptes.core.meta import (
    COCO_SKELETON,
    AnalyticsEvent,
    DisplayMeta,
    FrameMeta,
    Objects,
    ObjectView,
    TensorMeta,
)
from panoptes.core.pipeline import Pipeline, RunSummary
from panoptes.tracking.results import FinishedTrack

__all__ = [
    "COCO_SKELETON",
    "AnalyticsEvent",
    "Batch",
    "Bus",
    "ConfigError",
    "DisplayMeta",
    "FinishedTrack",
    "Frame",
    "FrameMeta",
    "Letterbox",
    "LinkError",
    "Message",
    "MessageType",
    "ModelError",
    "ModelNotFoundError",
    "ObjectView",
    "Objects",
    "PanoptesError",
    "Pipeline",
    "PipelineError",
    "RunSummary",
    "SourceError",
    "StreamEvent",
    "TensorMeta",
]
