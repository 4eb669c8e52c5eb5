"""``tiler``: composes the frames of every stream into one picture, as nvmultistreamtiler does."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import cv2
import numpy as np
from pydantic import Field

from panoptes.core.element import Element, ElementProperties
from panoptes.core.frame import TILED_SOURCE_ID, Batch, Frame
from panoptes.core.geometry import Letterbox
from panoptes.core.meta import DisplayMeta, FrameMeta, Objects
from panoptes.render import FONT, draw_text


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


_DIM = 0.4
"""Brightness kept by the tile of a stream that ended or lost its signal."""


def grid_shape(tiles: int, rows: int = 0, columns: int = 0) -> tuple[int, int]:
    """(rows, columns) of a grid holding ``tiles`` tiles; a nonzero ``rows`` or ``columns`` is
    kept, and the other is chosen to fit (both zero: as square as possible, wider than tall)."""
    if rows and columns:
        return rows, columns
    count = max(1, tiles)
    if rows:
        return rows, math.ceil(count / rows)
    if columns:
        return math.ceil(count / columns), columns
    columns = math.ceil(math.sqrt(count))
    return math.ceil(count / columns), columns


def grid_cells(
    size_wh: tuple[int, int], rows: int, columns: int
) -> list[tuple[int, int, int, int]]:
    """The xyxy pixel box of each cell of the grid, row by row; cells share the leftover pixels
    so that the grid covers the whole picture."""
    width, height = size_wh
    xs = [column * width // columns for column in range(columns + 1)]
    ys = [row * height // rows for row in range(rows + 1)]
    return [(xs[c], ys[r], xs[c + 1], ys[r + 1]) for r in range(rows) for c in range(columns)]


@dataclass
class _Tile:
    """What the tiler knows of one stream."""

    source_id: int
    name: str
    seen_s: float
    """Monotonic time of the stream's latest frame (or of its arrival, before its first)."""
    frame: Frame | None = None
    """The latest frame; its image and metadata are read, never changed."""
    ended: bool = False
    new_frame: bool = False
    drawn_state: str | None = None
    """The state (``live``, ``no signal``, ``ended``) the canvas shows; None: to be drawn."""

    def state(self, now_s: float, no_signal_s: float) -> str:
        # A stream's last frame usually comes with its "ended" event: show it once, undimmed.
        if self.ended and not self.new_frame:
            return "ended"
        if now_s - self.seen_s > no_signal_s:
            return "no signal"
        return "live"


class Tiler(Element):
    """Composes each batch into one frame (``source_id`` :data:`TILED_SOURCE_ID`) showing the
    latest frame of every stream, with their metadata mapped into the picture.

    Streams take tiles in ``source_id`` order when they first appear (an ``added`` event or a
    frame); a ``removed`` stream frees its tile and the grid re-flows. An ``ended`` stream keeps
    its tile, dimmed and labelled, so that a file ending before the others does not rearrange
    the picture. A stream without a frame for ``no_signal_s`` is dimmed and labelled likewise.

    The output frame's objects and display metadata are those of each live tile's latest frame
    (dimmed tiles' are left out), mapped into the picture; its user metadata is
    ``{"streams": {source_id: user_meta}}`` for the streams with a frame in the batch. A batch of
    events alone gives a batch with no frame, carrying the events on.
    """

    kind = "tiler"
    Properties = TilerProperties

    props: TilerProperties

    def build(self) -> None:
        self._tiles: dict[int, _Tile] = {}
        self._layout: tuple[tuple[int, ...], int, int] | None = None
        """(source ids shown, rows, columns) that the canvas is laid out for."""
        self._canvas = np.empty((0, 0, 3), np.uint8)
        self._cells: dict[int, tuple[int, int, int, int]] = {}
        self.frames_out = 0
        self._warned_hidden = False
        self._fps: float | None = None
        self._fps_decided = False
        self._first_output_s: float | None = None

    @property
    def size_wh(self) -> tuple[int, int]:
        return (self.props.width, self.props.height)

    def process(self, batch: Batch) -> Batch:
        now_s = time.monotonic()
        for frame in batch.frames:
            tile = self._tiles.get(frame.source_id)
            if tile is None:
                tile = self._tiles[frame.source_id] = _Tile(
                    frame.source_id, frame.source_name, now_s
                )
            tile.frame, tile.seen_s, tile.ended, tile.new_frame = frame, now_s, False, True
        for event in batch.events:
            if event.kind == "added" and event.source_id not in self._tiles:
                self._tiles[event.source_id] = _Tile(event.source_id, event.source_name, now_s)
            elif event.kind == "ended" and event.source_id in self._tiles:
                self._tiles[event.source_id].ended = True
            elif event.kind == "removed":
                self._tiles.pop(event.source_id, None)
        self._lay_out()
        if not batch.frames:
            # Nothing new to show; the events still go on, so later elements free their state.
            return replace(batch, frames=[])
        shown = self._draw_tiles(now_s)
        tiled = self._tiled_frame(batch, shown)
        self.frames_out += 1
        return replace(batch, frames=[tiled])

    def _lay_out(self) -> None:
        """Choose the grid for the streams now tiled; a new layout starts from a blank canvas."""
        ids = sorted(self._tiles)
        rows, columns = grid_shape(len(ids), self.props.rows, self.props.columns)
        if len(ids) > rows * columns:
            if not self._warned_hidden:
                self.bus.warning(
                    self.name,
                    f"{len(ids)} streams but {rows}x{columns} tiles: streams after the first "
                    f"{rows * columns} are not shown (set rows and columns to 0 to fit them all)",
                )
                self._warned_hidden = True
            ids = ids[: rows * columns]
        layout = (tuple(ids), rows, columns)
        if layout == self._layout:
            return
        self._layout = layout
        cells = grid_cells(self.size_wh, rows, columns)
        self._cells = dict(zip(ids, cells, strict=False))
        self._canvas = np.full(
            (self.props.height, self.props.width, 3), self.props.background, np.uint8
        )
        for tile in self._tiles.values():
            tile.drawn_state = None

    def _tile_transform(
        self, frame: Frame, cell: tuple[int, int, int, int], *, in_canvas: bool = True
    ) -> Letterbox:
        """Maps ``frame``'s original pixels into the canvas (or into the cell alone)."""
        x1, y1, x2, y2 = cell
        fit = Letterbox.fit(frame.size_wh, (x2 - x1, y2 - y1), keep_ratio=self.props.keep_aspect)
        if not in_canvas:
            return fit
        return Letterbox(fit.scale_xy, (fit.pad_xy[0] + x1, fit.pad_xy[1] + y1))

    def _draw_tiles(self, now_s: float) -> dict[int, str]:
        """Redraw the cells whose picture changed; returns each shown stream's state."""
        shown: dict[int, str] = {}
        for source_id, cell in self._cells.items():
            tile = self._tiles[source_id]
            state = tile.state(now_s, self.props.no_signal_s)
            shown[source_id] = state
            if state == tile.drawn_state and not (state == "live" and tile.new_frame):
                continue
            self._draw_tile(tile, cell, state)
            tile.drawn_state = state
            tile.new_frame = False
        return shown

    def _draw_tile(self, tile: _Tile, cell: tuple[int, int, int, int], state: str) -> None:
        x1, y1, x2, y2 = cell
        region = self._canvas[y1:y2, x1:x2]
        if tile.frame is None:
            region[...] = self.props.background
        else:
            to_cell = self._tile_transform(tile.frame, cell, in_canvas=False)
            _warp_content(tile.frame, to_cell, region, pad_value=self.props.background)
        font_scale = min(1.0, max(0.4, (y2 - y1) / 480))
        if state != "live":
            np.multiply(region, _DIM, out=region, casting="unsafe")
            (text_w, text_h), _ = cv2.getTextSize(state, FONT, font_scale, 2)
            centered = ((x2 - x1 - text_w) / 2, (y2 - y1 - text_h) / 2)
            draw_text(region, state, centered, font_scale=font_scale)
        if self.props.show_names:
            # Bottom left (draw_text keeps it inside the cell): the osd's clock takes the top
            # left of the picture.
            draw_text(region, tile.name, (0, y2 - y1), font_scale=font_scale * 0.8)

    def _output_fps(self, shown: dict[int, str], fps_values: list[float]) -> float | None:
        """The rate of the tiled pictures: the highest of the streams' rates, fixed once every
        tiled stream has given a frame (or after ``no_signal_s``), so that a video sink opened
        on the first picture does not take the rate of whichever stream started first; None
        until then."""
        if self._fps_decided:
            return self._fps
        now_s = time.monotonic()
        if self._first_output_s is None:
            self._first_output_s = now_s
        everyone = all(self._tiles[source_id].frame is not None for source_id in shown)
        if everyone or now_s - self._first_output_s > self.props.no_signal_s:
            self._fps = max(fps_values) if fps_values else None
            self._fps_decided = True
        return self._fps

    def _tiled_frame(self, batch: Batch, shown: dict[int, str]) -> Frame:
        parts: list[Objects] = []
        display_meta = DisplayMeta()
        fps_values: list[float] = []
        for source_id, state in shown.items():
            frame = self._tiles[source_id].frame
            if frame is None:
                continue
            if frame.fps:
                fps_values.append(frame.fps)
            if state != "live":
                continue
            transform = self._tile_transform(frame, self._cells[source_id])
            parts.append(frame.meta.objects.transformed(transform))
            display_meta.extend(frame.meta.display_meta.transformed(transform))
        meta = FrameMeta(
            objects=Objects.concatenate(parts),
            display_meta=display_meta,
            user_meta={"streams": {f.source_id: f.meta.user_meta for f in batch.frames}},
            snapshot_requested=any(f.meta.snapshot_requested for f in batch.frames),
        )
        fps = self._output_fps(shown, fps_values)
        return Frame(
            source_id=TILED_SOURCE_ID,
            source_name="tiled",
            frame_num=self.frames_out,
            pts_s=self.frames_out / fps if fps else None,
            capture_time_s=max(f.capture_time_s for f in batch.frames),
            size_wh=self.size_wh,
            # A copy: the next element may still hold the previous output while this canvas
            # takes the next batch's tiles.
            image=self._canvas.copy(),
            transform=Letterbox(),
            meta=meta,
            fps=fps,
        )


def _warp_content(frame: Frame, to_cell: Letterbox, out: np.ndarray, *, pad_value: float) -> None:
    """Resize the picture of ``frame`` into ``out`` (a cell of the canvas) as ``to_cell`` maps
    its original pixels, leaving out any padding the mux added, so a tile shows the stream's
    own aspect whatever the mux's resolution."""
    image = frame.image
    height, width = image.shape[:2]
    (scale_x, scale_y), (pad_x, pad_y) = frame.transform.scale_xy, frame.transform.pad_xy
    x1, y1 = max(0, round(pad_x)), max(0, round(pad_y))
    x2 = min(width, round(pad_x + frame.size_wh[0] * scale_x))
    y2 = min(height, round(pad_y + frame.size_wh[1] * scale_y))
    content = image[y1:y2, x1:x2] if x2 > x1 and y2 > y1 else image
    content_h, content_w = content.shape[:2]
    cell_h, cell_w = out.shape[:2]
    new_w = round(frame.size_wh[0] * to_cell.scale_xy[0])
    new_h = round(frame.size_wh[1] * to_cell.scale_xy[1])
    warp = Letterbox((new_w / content_w, new_h / content_h), to_cell.pad_xy)
    warp.warp(content, (cell_w, cell_h), pad_value=pad_value, out=out)
