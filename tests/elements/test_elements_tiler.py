"""The tiler: grid layout, tiles that follow streams coming and going, metadata mapped into it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from panoptes.core.bus import Bus
from panoptes.core.element import BuildContext
from panoptes.core.frame import TILED_SOURCE_ID, Batch, Frame, StreamEvent
from panoptes.core.geometry import Letterbox
from panoptes.elements import tiler as tiler_module
from panoptes.elements.tiler import Tiler, TilerProperties, grid_cells, grid_shape

# A distinct grey level per stream, so a canvas pixel tells which stream it shows.
LEVELS = [40, 70, 100, 130, 160, 190, 220, 250, 20]


def make_tiler(**options: Any) -> Tiler:
    options.setdefault("show_names", False)
    tiler = Tiler(TilerProperties(**options), name="tiler", context=BuildContext(bus=Bus()))
    tiler.build()
    return tiler


def make_frame(
    source_id: int,
    frame_num: int = 0,
    size_wh: tuple[int, int] = (320, 180),
    *,
    transform: Letterbox | None = None,
    fps: float | None = 25.0,
) -> Frame:
    transform = transform or Letterbox()
    image_wh = (
        round(size_wh[0] * transform.scale_xy[0] + 2 * transform.pad_xy[0]),
        round(size_wh[1] * transform.scale_xy[1] + 2 * transform.pad_xy[1]),
    )
    image = np.full((image_wh[1], image_wh[0], 3), LEVELS[source_id], np.uint8)
    return Frame(
        source_id,
        f"cam{source_id}",
        frame_num,
        frame_num / 25,
        1000.0 + frame_num + source_id,
        size_wh,
        image,
        transform,
        fps=fps,
    )


def only(batch: Batch | None) -> Frame:
    assert batch is not None and len(batch.frames) == 1
    return batch.frames[0]


def level_at(frame: Frame, xy: tuple[float, float]) -> int:
    return int(frame.image[round(xy[1]), round(xy[0]), 0])


@pytest.mark.parametrize(
    ("tiles", "expected"),
    [(1, (1, 1)), (2, (1, 2)), (3, (2, 2)), (4, (2, 2)), (5, (2, 3)), (6, (2, 3)),
     (7, (3, 3)), (8, (3, 3)), (9, (3, 3)), (0, (1, 1))],
)  # fmt: skip
def test_grid_shape_from_the_number_of_tiles(tiles: int, expected: tuple[int, int]) -> None:
    assert grid_shape(tiles) == expected


def test_grid_shape_keeps_what_is_set() -> None:
    assert grid_shape(5, rows=1) == (1, 5)
    assert grid_shape(5, columns=2) == (3, 2)
    assert grid_shape(5, rows=2, columns=2) == (2, 2)


def test_grid_cells_cover_the_picture() -> None:
    cells = grid_cells((100, 50), 2, 3)
    assert cells[0] == (0, 0, 33, 25) and cells[-1] == (66, 25, 100, 50)
    area = sum((x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in cells)
    assert area == 100 * 50


@pytest.mark.parametrize("streams", range(1, 10))
def test_each_stream_shows_in_its_cell(streams: int) -> None:
    tiler = make_tiler(width=640, height=360)
    tiled = only(tiler.process(Batch([make_frame(i) for i in range(streams)])))
    assert tiled.image.shape == (360, 640, 3)
    rows, columns = grid_shape(streams)
    for source_id, (x1, y1, x2, y2) in enumerate(grid_cells((640, 360), rows, columns)):
        center = ((x1 + x2) / 2, (y1 + y2) / 2)
        expected = LEVELS[source_id] if source_id < streams else 0
        assert level_at(tiled, center) == expected, source_id


def test_objects_are_mapped_into_their_tiles() -> None:
    tiler = make_tiler(width=800, height=400)
    wide = make_frame(0, size_wh=(400, 200), transform=Letterbox((0.5, 0.5)))  # mux halved it
    wide.objects.add(np.array([[10, 20, 110, 120]]), np.array([0.9]), np.array([0]), ["person"])
    square = make_frame(1, size_wh=(200, 200))
    square.objects.add(np.array([[10, 10, 50, 50]]), np.array([0.8]), np.array([2]), ["car"])
    square.objects.keypoints = None
    square.meta.display_meta.add_line((0, 100), (200, 100))
    tiled = only(tiler.process(Batch([wide, square])))
    # Cells of 400 x 400: the wide stream at scale 1 with 100 px above, the square at scale 2.
    np.testing.assert_allclose(tiled.objects.xyxy, [[10, 120, 110, 220], [420, 20, 500, 100]])
    assert tiled.objects.labels == ["person", "car"]
    (line,) = tiled.meta.display_meta.lines
    assert line.xy1 == (400.0, 200.0) and line.xy2 == (800.0, 200.0)
    # The pixels are where the boxes say: the wide stream's picture spans y 100 to 300.
    assert level_at(tiled, (200, 99)) == 0 and level_at(tiled, (200, 101)) == LEVELS[0]
    assert level_at(tiled, (200, 299)) == LEVELS[0] and level_at(tiled, (200, 301)) == 0
    assert level_at(tiled, (600, 2)) == LEVELS[1]
    # The inputs keep their own coordinates.
    np.testing.assert_allclose(wide.objects.xyxy, [[10, 20, 110, 120]])


def test_mux_padding_is_left_out_of_the_tile() -> None:
    tiler = make_tiler(width=400, height=200)
    transform = Letterbox.fit((400, 200), (300, 300))  # scale 0.75, 75 px of padding above
    frame = make_frame(0, size_wh=(400, 200))
    frame.image = np.zeros((300, 300, 3), np.uint8)
    frame.image[75:225] = LEVELS[0]
    frame.transform = transform
    tiled = only(tiler.process(Batch([frame])))
    assert (tiled.image == LEVELS[0]).all()


def test_output_frame_describes_the_picture() -> None:
    tiler = make_tiler(width=320, height=180)
    events = [StreamEvent("added", 0, "cam0")]
    first = make_frame(0, 0, fps=25.0)
    first.meta.user_meta["count"] = 3
    second = make_frame(1, 0, fps=30.0)
    second.request_snapshot()
    batch = Batch([first, second], batch_num=7, events=events, created_s=12.5)
    out = tiler.process(batch)
    tiled = only(out)
    assert out.batch_num == 7 and out.events == events and out.created_s == 12.5
    assert tiled.source_id == TILED_SOURCE_ID and tiled.source_name == "tiled"
    assert tiled.size_wh == (320, 180) and tiled.transform == Letterbox()
    assert tiled.fps == 30.0 and tiled.frame_num == 0 and tiled.pts_s == 0.0
    assert tiled.capture_time_s == second.capture_time_s
    assert tiled.meta.user_meta == {"streams": {0: {"count": 3}, 1: {}}}
    assert tiled.meta.snapshot_requested
    following = only(tiler.process(Batch([make_frame(0, 1)])))
    assert following.frame_num == 1 and following.pts_s == pytest.approx(1 / 30)
    assert not following.meta.snapshot_requested


def test_each_output_has_its_own_canvas() -> None:
    tiler = make_tiler(width=320, height=180)
    first = only(tiler.process(Batch([make_frame(0), make_frame(1)])))
    kept = first.image.copy()
    second = only(tiler.process(Batch([make_frame(0, 1)])))
    second.image[...] = 255  # a later element drawing on its frame
    third = only(tiler.process(Batch([make_frame(1, 1)])))
    assert not np.shares_memory(first.image, second.image)
    assert not np.shares_memory(second.image, third.image)
    assert np.array_equal(first.image, kept)
    assert np.array_equal(third.image, kept)


def test_a_stream_missing_from_a_batch_keeps_its_last_picture_and_objects() -> None:
    tiler = make_tiler(width=640, height=180)
    left = make_frame(0)
    left.objects.add(np.array([[0, 0, 32, 18]]), np.array([0.9]), np.array([0]), ["person"])
    tiler.process(Batch([left, make_frame(1)]))
    tiled = only(tiler.process(Batch([make_frame(1, 1)])))
    assert level_at(tiled, (160, 90)) == LEVELS[0] and level_at(tiled, (480, 90)) == LEVELS[1]
    np.testing.assert_allclose(tiled.objects.xyxy, [[0, 0, 32, 18]])


def test_a_removed_stream_frees_its_tile() -> None:
    tiler = make_tiler(width=640, height=180)
    left = make_frame(0)
    left.objects.add(np.array([[0, 0, 160, 90]]), np.array([0.9]), np.array([0]), ["person"])
    first = only(tiler.process(Batch([left, make_frame(1)])))
    np.testing.assert_allclose(first.objects.xyxy, [[0, 0, 160, 90]])
    removed = tiler.process(Batch([], events=[StreamEvent("removed", 1, "cam1")]))
    assert removed.frames == [] and removed.events[0].kind == "removed"
    tiled = only(tiler.process(Batch([make_frame(0, 1)])))
    # One stream in a 640 x 180 picture: its 320 x 180 picture fills the height, centred.
    assert level_at(tiled, (320, 90)) == LEVELS[0] and level_at(tiled, (100, 90)) == 0


def test_an_ended_stream_keeps_its_tile_dimmed() -> None:
    tiler = make_tiler(width=640, height=180, show_names=True)
    right = make_frame(1)
    right.objects.add(np.array([[0, 0, 32, 18]]), np.array([0.9]), np.array([0]), ["person"])
    tiler.process(Batch([make_frame(0), right]))
    tiler.process(Batch([make_frame(0, 1)], events=[StreamEvent("ended", 1, "cam1")]))
    tiled = only(tiler.process(Batch([make_frame(0, 2)])))
    assert level_at(tiled, (160, 90)) == LEVELS[0]
    assert level_at(tiled, (630, 10)) == int(LEVELS[1] * 0.4)  # dimmed, not re-laid out
    assert (tiled.image[:, 320:] > LEVELS[1]).any()  # the "ended" label
    assert len(tiled.objects) == 0


def test_a_last_frame_that_comes_with_the_end_is_shown_undimmed() -> None:
    tiler = make_tiler(width=320, height=180)
    last = only(tiler.process(Batch([make_frame(0)], events=[StreamEvent("ended", 0, "cam0")])))
    assert level_at(last, (160, 90)) == LEVELS[0]
    after = only(tiler.process(Batch([make_frame(1)])))
    assert level_at(after, (80, 50)) == int(LEVELS[0] * 0.4)  # its half of a 1 x 2 grid


def test_a_silent_stream_is_dimmed_after_no_signal_s(monkeypatch: pytest.MonkeyPatch) -> None:
    # The tiler's clock moves only when the test says: with the real one, a loaded machine can
    # let more than no_signal_s pass between two batches and dim a stream that is not silent.
    clock = SimpleNamespace(now_s=1000.0)
    monkeypatch.setattr(tiler_module, "time", SimpleNamespace(monotonic=lambda: clock.now_s))
    tiler = make_tiler(width=640, height=180, no_signal_s=0.02)
    tiler.process(Batch([make_frame(0), make_frame(1)]))
    fresh = only(tiler.process(Batch([make_frame(0, 1)])))
    assert level_at(fresh, (480, 90)) == LEVELS[1]
    clock.now_s += 0.05
    tiler.process(Batch([make_frame(0, 2)]))
    silent = only(tiler.process(Batch([make_frame(0, 3)])))
    assert level_at(silent, (330, 170)) == int(LEVELS[1] * 0.4)
    back = only(tiler.process(Batch([make_frame(1, 1)])))
    assert level_at(back, (330, 170)) == LEVELS[1]


def test_streams_take_tiles_in_source_id_order() -> None:
    tiler = make_tiler(width=640, height=180)
    tiler.process(Batch([], events=[StreamEvent("added", 1, "cam1")]))
    tiled = only(tiler.process(Batch([make_frame(0)])))
    assert level_at(tiled, (160, 90)) == LEVELS[0] and level_at(tiled, (480, 90)) == 0


def test_a_fixed_grid_shows_the_first_streams_and_warns() -> None:
    tiler = make_tiler(width=640, height=180, rows=1, columns=2)
    tiled = only(tiler.process(Batch([make_frame(i) for i in range(3)])))
    assert level_at(tiled, (160, 90)) == LEVELS[0] and level_at(tiled, (480, 90)) == LEVELS[1]
    assert any("not shown" in message.text for message in tiler.bus.history)
