"""``file``: encodes frames into H.264 (or H.265) video files with PyAV: one tiled file, or one
file per stream."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from panoptes.core.element import ElementProperties


class FileSinkProperties(ElementProperties):
    type: Literal["file"] = Field("file", description="Element kind.")
    name: str | None = Field(None, description="Element name.")
    path: str = Field(
        description="Output file (.mp4 or .mkv), relative to the config's folder. Tiled output "
        "goes to this path; one file per stream when there is no tiler: the path may name "
        "{source_id} or {name}, else the stream's id is added (out/video_0.mp4)."
    )
    codec: Literal["h264", "h265"] = Field("h264", description="Video codec (libx264/libx265).")
    crf: int | None = Field(
        23, ge=0, le=51, description="Constant quality (lower = better); unused with bitrate."
    )
    bitrate_kbps: int | None = Field(
        None, gt=0, description="Target bitrate in kbit/s; when set, replaces crf."
    )
    preset: str = Field("veryfast", description="Encoder speed preset (ultrafast ... veryslow).")
    fps: float | None = Field(
        None, gt=0, description="Frame rate of the file; default the stream's own (30 if unknown)."
    )
