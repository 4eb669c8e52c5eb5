"""The snapshot sink: which frames it saves, how they are named and drawn, and its errors."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest

from panoptes import Pipeline
from panoptes.core.bus import Bus
from panoptes.core.element import BuildContext
from panoptes.core.errors import ConfigError
from panoptes.core.frame import Batch, Frame, StreamEvent
from panoptes.elements.osd import OsdProperties
from panoptes.elements.snapshot import SnapshotSink, SnapshotSinkProperties, snapshot_name
from panoptes.render import class_color

GREY = 100


def make_sink(tmp_path: Path, config: Any = None, **options: Any) -> SnapshotSink:
    options.setdefault("path", str(tmp_path / "shots"))
    sink = SnapshotSink(
        SnapshotSinkProperties(**options),
        name="snapshot0",
        context=BuildContext(bus=Bus(), base_dir=tmp_path, place="sinks[2]", config=config),
    )
    sink.build()
    return sink


def make_frame(source_id: int, frame_num: int, name: str | None = None) -> Frame:
    image = np.full((90, 160, 3), GREY, np.uint8)
    frame = Frame(source_id, name or f"cam{source_id}", frame_num, None, 0.0, (320, 180), image)
    frame.transform = frame.transform.fit((320, 180), (160, 90))
    frame.objects.add(np.array([[40, 40, 240, 140]]), np.array([0.9]), np.array([0]), ["person"])
    return frame


def saved_files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_every_n_frames_of_each_stream(tmp_path: Path) -> None:
    sink = make_sink(tmp_path, every_n_frames=3)
    for frame_num in range(9):
        sink.process(Batch([make_frame(0, frame_num), make_frame(1, frame_num)]))
    assert sink.saved == 6
    assert saved_files(tmp_path / "shots") == [
        f"cam{source_id}_{source_id}_{frame_num:06d}.jpg"
        for source_id in (0, 1)
        for frame_num in (0, 3, 6)
    ]


def test_counting_is_per_stream(tmp_path: Path) -> None:
    sink = make_sink(tmp_path, every_n_frames=2)
    sink.process(Batch([make_frame(0, 0)]))
    sink.process(Batch([make_frame(0, 1), make_frame(1, 0)]))  # stream 1's first frame
    sink.process(Batch([make_frame(0, 2), make_frame(1, 1)]))
    assert saved_files(tmp_path / "shots") == [
        "cam0_0_000000.jpg",
        "cam0_0_000002.jpg",
        "cam1_1_000000.jpg",
    ]


def test_a_probe_asks_for_one(tmp_path: Path) -> None:
    sink = make_sink(tmp_path, format="png")
    frames = [make_frame(0, n) for n in range(5)]
    frames[3].request_snapshot()
    for frame in frames:
        sink.process(Batch([frame]))
    assert saved_files(tmp_path / "shots") == ["cam0_0_000003.png"]
    image = cv2.imread(str(tmp_path / "shots" / "cam0_0_000003.png"))
    assert image.shape == (90, 160, 3)


def test_drawn_and_plain_images(tmp_path: Path) -> None:
    drawn_sink = make_sink(tmp_path, path="drawn", format="png", every_n_frames=1)
    plain_sink = make_sink(tmp_path, path="plain", format="png", every_n_frames=1, draw=False)
    frame = make_frame(0, 0)
    before = frame.image.copy()
    drawn_sink.process(Batch([frame]))
    plain_sink.process(Batch([frame]))
    assert np.array_equal(frame.image, before)
    drawn = cv2.imread(str(tmp_path / "drawn" / "cam0_0_000000.png"))
    plain = cv2.imread(str(tmp_path / "plain" / "cam0_0_000000.png"))
    assert np.array_equal(plain, before)
    # The box (40, 40, 240, 140) in original pixels is (20, 20, 120, 70) in the image.
    assert tuple(drawn[45, 20]) == tuple(reversed(class_color(0)))
    assert np.array_equal(drawn[45, 60], plain[45, 60])


def test_draws_with_the_pipelines_osd_settings(tmp_path: Path) -> None:
    config = SimpleNamespace(osd=OsdProperties(class_colors={0: (10, 20, 30)}, border_width=4))
    sink = make_sink(tmp_path, config=config, format="png", every_n_frames=1)
    sink.process(Batch([make_frame(0, 0)]))
    drawn = cv2.imread(str(tmp_path / "shots" / "cam0_0_000000.png"))
    assert tuple(drawn[45, 21]) == (30, 20, 10)


def test_relative_path_is_from_the_base_dir(tmp_path: Path) -> None:
    sink = make_sink(tmp_path, path="out/shots", every_n_frames=1)
    sink.process(Batch([make_frame(0, 0)]))
    assert saved_files(tmp_path / "out" / "shots") == ["cam0_0_000000.jpg"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cam1", "cam1_4_000012.jpg"),
        ("rtsp://10.0.0.1:554/live", "rtsp_10.0.0.1_554_live_4_000012.jpg"),
        ("entrée nord", "entr_e_nord_4_000012.jpg"),
        ("../..", "stream_4_000012.jpg"),
    ],
)
def test_names_are_safe_file_names(name: str, expected: str) -> None:
    assert snapshot_name(make_frame(4, 12, name), "jpg") == expected


def test_an_unwritable_path_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(ConfigError, match=r"sinks\[2\]\.path") as caught:
        make_sink(tmp_path, path="taken/shots")
    assert caught.value.place == "sinks[2].path"


def test_write_failures_are_reported_not_raised(tmp_path: Path) -> None:
    sink = make_sink(tmp_path, every_n_frames=1)
    shutil.rmtree(tmp_path / "shots")
    for frame_num in range(5):
        assert sink.process(Batch([make_frame(0, frame_num)])) is None
    assert sink.saved == 0 and sink.failures == 5
    errors = sink.bus.errors()
    assert len(errors) == 3 and "shots" in errors[0].text  # the first three, then every 100th


def test_ended_stream_state_is_freed(tmp_path: Path) -> None:
    sink = make_sink(tmp_path, every_n_frames=5)
    sink.process(Batch([make_frame(0, 0), make_frame(1, 0)]))
    sink.process(Batch([make_frame(1, 1)], events=[StreamEvent("ended", 0, "cam0")]))
    assert set(sink._frames_seen) == {1}


def test_snapshots_from_a_real_pipeline(assets: Path, tmp_path: Path) -> None:
    pipeline = Pipeline(
        {
            "sources": [
                {
                    "uri": str(assets / "videos" / "one-by-one-person-detection.mp4"),
                    "name": "hall",
                    "max_frames": 20,
                    "drop_frame_interval": 15,  # frames 0, 15, ... 285: people come and go
                },
                {"type": "test-source", "name": "pattern", "frames": 20},
            ],
            "infer": [{"model": "yolox-nano"}],
            "tiler": {"width": 640, "height": 360},
            "osd": {"border_width": 5, "class_colors": {0: [255, 0, 255]}},
            "sinks": [{"type": "snapshot", "path": "shots", "every_n_frames": 10}],
            "perf": {"interval_s": 0},
        },
        base_dir=tmp_path,
    )
    summary = pipeline.run()
    assert summary.ok and summary.frames == 40
    # A metadata sink alone: the tiler and osd have nothing to feed, and the pipeline says so.
    warnings = [m.text for m in pipeline.bus.history if m.type.name == "WARNING"]
    assert any("tiler is not run" in text for text in warnings)
    names = saved_files(tmp_path / "shots")
    assert names == [
        "hall_0_000000.jpg",
        "hall_0_000010.jpg",
        "pattern_1_000000.jpg",
        "pattern_1_000010.jpg",
    ]
    assert all(re.fullmatch(r"\w+_\d_\d{6}\.jpg", name) for name in names)
    # The stream's frame 10 (the clip's 150th) shows a person at about (383, 16, 517, 405),
    # boxed in the osd's magenta, 5 px wide, in original pixels as the clip is not scaled.
    image = cv2.imread(str(tmp_path / "shots" / "hall_0_000010.jpg")).astype(int)
    magenta = (image[..., 0] > 180) & (image[..., 1] < 80) & (image[..., 2] > 180)
    assert magenta[100:300, 370:400].mean(axis=0).max() > 0.9  # the left border
    assert not magenta[100:300, 420:480].any()  # the person, not drawn over
