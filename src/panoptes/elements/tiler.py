"""``tiler``: composes the frames of every stream into one picture, as nvmultistreamtiler does."""

from __future__ import annotations

from pydantic import Field

from panoptes.core.element import ElementProperties


class TilerProperties(ElementProperties):
    name: str | None = Field(None, description="Element name.")
    rows: int = Field(0, ge=0, description="Tile rows; 0 = chosen from the number of streams.")
    columns: int = Field(
        0, ge=0, description="Tile columns; 0 = chosen from the number of streams."
    )
    width: int = Field(1280, ge=16, description="Output width in pixels.")
    height: int = Field(720, ge=16, description="Output height in pixels.")
    keep_aspect: bool = Field(True, description="Keep each stream's aspect ratio in its tile.")
    background: int = Field(0, ge=0, le=255, description="Grey level of empty space.")
    no_signal_s: float = Field(
        2.0,
        gt=0,
        description="A stream with no frame for this long shows its last frame dimmed, "
        "labelled 'no signal'.",
    )
    show_names: bool = Field(True, description="Write each stream's name in its tile.")
