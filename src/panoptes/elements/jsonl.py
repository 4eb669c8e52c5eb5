"""``jsonl``: writes each frame's metadata as one JSON object per line.

``{"source_id": 0, "source": "cam1", "frame_num": 12, "pts_s": 1.2, "objects": [{"class_id": 0,
"label": "person", "confidence": 0.93, "bbox": [x1, y1, x2, y2], "track_id": null}]}``, with bbox in
original-frame pixels; ``analytics`` (counts by rule name) and ``events`` are added on frames that
have them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import Field

from panoptes.core.element import Element, ElementProperties
from panoptes.core.errors import ConfigError
from panoptes.core.frame import Batch, Frame
from panoptes.core.negotiation import ANY_MEMORY


class JsonlSinkProperties(ElementProperties):
    type: Literal["jsonl"] = Field("jsonl", description="Element kind.")
    name: str | None = Field(None, description="Element name.")
    path: str = Field(
        description="Output file, relative to the config's folder; '-' writes to standard output."
    )
    user_meta: bool = Field(
        True, description="Also write each frame's user metadata (values JSON can hold)."
    )


def frame_record(frame: Frame, *, user_meta: bool = True) -> dict[str, Any]:
    """The JSON-ready record of one frame."""
    record: dict[str, Any] = {
        "source_id": frame.source_id,
        "source": frame.source_name,
        "frame_num": frame.frame_num,
        "pts_s": None if frame.pts_s is None else round(frame.pts_s, 6),
        "objects": frame.meta.objects.to_dicts(),
    }
    if user_meta and frame.meta.user_meta:
        record["user_meta"] = frame.meta.user_meta
    if frame.meta.analytics:
        record["analytics"] = frame.meta.analytics
    if frame.meta.events:
        record["events"] = [event.to_dict() for event in frame.meta.events]
    return record


class JsonlSink(Element):
    kind = "jsonl"
    Properties = JsonlSinkProperties
    is_sink = True
    memory = ANY_MEMORY  # metadata only: frames may stay on the GPU
    build_truncates = True
    """Building opens (truncates) the output: ``panoptes validate`` checks the path instead."""

    props: JsonlSinkProperties

    def build(self) -> None:
        self._file: IO[str]
        if self.props.path == "-":
            import sys

            self._file = sys.stdout
            self._owned = False
            return
        path = Path(self.props.path)
        if not path.is_absolute():
            path = self.context.base_dir / path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("w", encoding="utf-8")
        except OSError as error:
            raise ConfigError(
                f"cannot write {path}: {error.strerror}", f"{self.context.place}.path"
            ) from error
        self._owned = True
        self.path = path

    def process(self, batch: Batch) -> None:
        lines = [
            json.dumps(frame_record(frame, user_meta=self.props.user_meta), default=_json_default)
            for frame in batch.frames
        ]
        if lines:
            self._file.write("\n".join(lines) + "\n")
        return None

    def close(self) -> None:
        file = getattr(self, "_file", None)
        if file is None:
            return
        if self._owned:
            file.close()
        else:
            file.flush()


def _json_default(value: Any) -> Any:
    """numpy values and other objects in user metadata: numbers and lists, else their repr."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return repr(value)
