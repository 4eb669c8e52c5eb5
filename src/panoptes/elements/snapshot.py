"""``snapshot``: saves frames as JPEG or PNG images, every N frames or when a probe asks."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import cv2
from pydantic import Field

from panoptes.core.element import Element, ElementProperties
from panoptes.core.errors import ConfigError
from panoptes.core.frame import Batch, Frame
from panoptes.elements.osd import OsdProperties
from panoptes.render import draw_frame


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


def snapshot_name(frame: Frame, image_format: str) -> str:
    """``{source_name}_{source_id}_{frame_num:06d}.{format}``, the name made safe for a file
    name (``rtsp://cam/1`` → ``rtsp_cam_1``)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", frame.source_name).strip("._") or "stream"
    return f"{safe}_{frame.source_id}_{frame.frame_num:06d}.{image_format}"


class SnapshotSink(Element):
    """Writes each stream's frames as images into the ``path`` folder: the first and then every
    ``every_n_frames``-th frame the sink receives of each stream, and every frame a probe marked
    with ``frame.request_snapshot()``.

    A metadata-branch sink: it sees each stream's own frames and draws them itself (with the
    pipeline's ``osd`` settings, or the defaults when there is no osd), so it needs no tiler,
    osd or video sink.
    """

    kind = "snapshot"
    Properties = SnapshotSinkProperties
    is_sink = True

    props: SnapshotSinkProperties

    def build(self) -> None:
        path = Path(self.props.path)
        if not path.is_absolute():
            path = self.context.base_dir / path
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(
                f"cannot create the folder {path}: {error.strerror or error}",
                f"{self.context.place}.path",
            ) from error
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(f"cannot write into {path}", f"{self.context.place}.path")
        self.path = path
        osd = getattr(self.context.config, "osd", None)
        self.osd_props: OsdProperties = osd if isinstance(osd, OsdProperties) else OsdProperties()
        self._params = (
            [cv2.IMWRITE_JPEG_QUALITY, self.props.jpeg_quality]
            if self.props.format == "jpg"
            else []
        )
        self._frames_seen: dict[int, int] = {}
        self.saved = 0
        """Images written so far."""

    def process(self, batch: Batch) -> None:
        every = self.props.every_n_frames
        for frame in batch.frames:
            seen = self._frames_seen.get(frame.source_id, 0)
            self._frames_seen[frame.source_id] = seen + 1
            if frame.meta.snapshot_requested or (every and seen % every == 0):
                self._save(batch, frame)
        for event in batch.events:
            if event.kind in ("ended", "removed"):
                self._frames_seen.pop(event.source_id, None)
        return None

    def _save(self, batch: Batch, frame: Frame) -> None:
        image = draw_frame(frame, self.osd_props) if self.props.draw else frame.image
        target = self.path / snapshot_name(frame, self.props.format)
        try:
            if not cv2.imwrite(str(target), image, self._params):
                raise OSError(f"cannot write {target}")
        except (OSError, cv2.error) as error:
            # A full disk or a folder removed under us: say so (throttled) and keep the run going.
            self.report_failure(batch, error)
            return
        self.saved += 1
