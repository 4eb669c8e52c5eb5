"""``snapshot``: saves frames as JPEG or PNG images, every N frames or when a probe asks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from panoptes.core.element import ElementProperties


class SnapshotSinkProperties(ElementProperties):
    type: Literal["snapshot"] = Field("snapshot", description="Element kind.")
    name: str | None = Field(None, description="Element name.")
    path: str = Field(
        "snapshots", description="Folder for the images, relative to the config's folder."
    )
    format: Literal["jpg", "png"] = Field("jpg", description="Image format.")
    every_n_frames: int = Field(
        0, ge=0, description="Save every Nth frame of each stream; 0 = only when a probe asks."
    )
    draw: bool = Field(
        True, description="Draw boxes and labels (with the osd's settings) or save plain frames."
    )
    jpeg_quality: int = Field(90, ge=1, le=100, description="JPEG quality.")
