"""The ``file`` sink: per-stream and tiled video files that play, from the element up to the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from cli_tools import PANOPTES, ffprobe, panoptes
from panoptes.core.bus import Bus, MessageType
from panoptes.core.element import BuildContext
from panoptes.core.errors import ConfigError
from panoptes.core.frame import TILED_SOURCE_ID, Batch, Frame, StreamEvent
from panoptes.core.pipeline import Pipeline
from panoptes.elements.file_sink import FileSink, FileSinkProperties, file_name_part

VIDEOS = Path(__file__).resolve().parents[2].parent / "shared" / "assets" / "videos"
CLIP = VIDEOS / "one-by-one-person-detection.mp4"  # H.264 768x432, 10 fps


# -- helpers ----------------------------------------------------------------------------------


def decode(path: Path, limit: int | None = None) -> tuple[list[np.ndarray], Fraction | None]:
    """The frames of ``path`` (the first ``limit``) as BGR arrays, and the average rate."""
    images: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            images.append(frame.to_ndarray(format="bgr24"))
            if limit is not None and len(images) == limit:
                break
        return images, stream.average_rate


def assert_plays(path: Path, frames: int, size_wh: tuple[int, int], fps: int) -> None:
    """``path`` decodes with PyAV and with ffprobe: ``frames`` frames of ``size_wh`` at ``fps``."""
    images, rate = decode(path)
    width, height = size_wh
    assert len(images) == frames
    assert {image.shape for image in images} == {(height, width, 3)}
    assert rate == fps
    assert ffprobe(path) == {
        "codec_name": "h264",
        "width": width,
        "height": height,
        "r_frame_rate": f"{fps}/1",
        "nb_read_frames": str(frames),
    }


def make_sink(base_dir: Path, bus: Bus | None = None, **props: Any) -> FileSink:
    context = BuildContext(bus=bus or Bus(), base_dir=base_dir, place="sinks[0]")
    sink = FileSink(FileSinkProperties(**props), name="file0", context=context)
    sink.build()
    return sink


def make_frame(
    source_id: int,
    index: int,
    size_wh: tuple[int, int] = (320, 240),
    *,
    name: str = "cam",
    fps: float | None = 10.0,
) -> Frame:
    width, height = size_wh
    image = np.full((height, width, 3), (index * 8) % 256, np.uint8)
    image[:, : width // 4] = (255, 0, 0)
    return Frame(
        source_id=source_id,
        source_name=f"{name}{source_id}" if source_id >= 0 else "tiled",
        frame_num=index,
        pts_s=None if fps is None else index / fps,
        capture_time_s=time.time(),
        size_wh=size_wh,
        image=image,
        fps=fps,
    )


def batches(source_ids: list[int], count: int, **frame_options: Any) -> Iterator[Batch]:
    for index in range(count):
        frames = [make_frame(source_id, index, **frame_options) for source_id in source_ids]
        yield Batch(frames, batch_num=index)


def run_pipeline(config: dict[str, Any], base_dir: Path) -> Pipeline:
    pipeline = Pipeline(config, base_dir=base_dir)
    summary = pipeline.run()
    assert summary.ok, [str(message) for message in summary.errors]
    return pipeline


@pytest.fixture(scope="module")
def clip() -> Path:
    if not CLIP.is_file():
        pytest.fail(f"the shared clip is missing: expected it at {CLIP}")
    return CLIP


# -- through the real pipeline ----------------------------------------------------------------


def test_one_file_per_stream(tmp_path: Path, clip: Path) -> None:
    pipeline = run_pipeline(
        {
            "sources": [{"uri": str(clip), "max_frames": 40}],
            "infer": [{"model": "yolox-nano"}],
            "sinks": [{"type": "file", "path": "out/video.mp4"}],
        },
        tmp_path,
    )
    sink = pipeline.element("file0")
    assert isinstance(sink, FileSink)
    path = tmp_path / "out" / "video_0.mp4"
    assert sink.paths == [path] and sink.written == {path: 40}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["video_0.mp4"]
    assert_plays(path, 40, (768, 432), 10)
    finished = [m for m in pipeline.bus.history if m.type is MessageType.INFO]
    assert [m.data for m in finished] == [{"path": str(path), "frames": 40, "source_id": 0}]


def test_two_streams_with_placeholder_names(tmp_path: Path, clip: Path) -> None:
    pipeline = run_pipeline(
        {
            "sources": [
                {"uri": str(clip), "max_frames": 40, "name": "gate"},
                {"uri": str(clip), "max_frames": 25, "name": "car park/north"},
            ],
            "infer": [{"model": "yolox-nano"}],
            "sinks": [{"type": "file", "path": "out/{name}-{source_id}.mkv"}],
        },
        tmp_path,
    )
    out = tmp_path / "out"
    sink = pipeline.element("file0")
    assert isinstance(sink, FileSink)
    assert sink.written == {out / "gate-0.mkv": 40, out / "north-1.mkv": 25}
    assert_plays(out / "gate-0.mkv", 40, (768, 432), 10)
    assert_plays(out / "north-1.mkv", 25, (768, 432), 10)


def test_tiled_output_is_one_file(tmp_path: Path, clip: Path) -> None:
    pipeline = run_pipeline(
        {
            "sources": [
                {"uri": str(clip), "max_frames": 40},
                {"uri": str(clip), "max_frames": 20, "name": "second"},
            ],
            "infer": [{"model": "yolox-nano"}],
            "tiler": {"width": 1280, "height": 720},
            "osd": {},
            "sinks": [{"type": "file", "path": "tiled.mp4"}],
        },
        tmp_path,
    )
    sink = pipeline.element("file0")
    tiler: Any = pipeline.element("tiler")
    assert isinstance(sink, FileSink)
    path = tmp_path / "tiled.mp4"
    assert sink.paths == [path]
    assert 20 <= tiler.frames_out == sink.written[path]  # one per batch
    assert_plays(path, tiler.frames_out, (1280, 720), 10)


def test_osd_boxes_are_in_the_file(tmp_path: Path, clip: Path) -> None:
    boxes: dict[int, list[tuple[float, float, float, float]]] = {}

    def collect(batch: Batch) -> None:
        for frame in batch.frames:
            boxes[frame.frame_num] = [obj.bbox for obj in frame.objects]

    pipeline = Pipeline(
        {
            "sources": [{"uri": str(clip), "max_frames": 40}],
            "infer": [{"model": "yolox-nano", "threshold": 0.2}],
            "osd": {"border_width": 3},
            "sinks": [{"type": "file", "path": "drawn.mp4", "crf": 18}],
        },
        base_dir=tmp_path,
    )
    pipeline.add_probe("infer0", collect)
    assert pipeline.run().ok
    drawn, _ = decode(tmp_path / "drawn_0.mp4")
    plain, _ = decode(clip, limit=40)
    assert len(drawn) == len(plain) == 40
    frame_num = next(n for n in sorted(boxes) if boxes[n])
    x1, y1, x2, y2 = (round(v) for v in boxes[frame_num][0])
    difference = np.abs(drawn[frame_num].astype(np.int16) - plain[frame_num]).mean(axis=2)
    # The box's right and bottom borders (its top and left may touch the picture's edges).
    right = difference[max(y1, 0) : y2, max(x2 - 1, 0) : x2 + 1]
    bottom = difference[max(y2 - 1, 0) : y2 + 1, max(x1, 0) : x2]
    assert right.mean() > 30 and bottom.mean() > 30
    untouched = difference[y2 + 40 :, x2 + 40 :]  # far from the box and its label
    assert untouched.size and untouched.mean() < 4


# -- the element ------------------------------------------------------------------------------


def test_a_stream_that_ends_has_its_file_finished_at_once(tmp_path: Path) -> None:
    bus = Bus()
    sink = make_sink(tmp_path, bus, path="{name}.mp4")
    for batch in batches([0, 1], 12):
        sink.process(batch)
    sink.process(Batch([make_frame(1, 12)], 12, [StreamEvent("ended", 0, "cam0")]))
    assert_plays(tmp_path / "cam0.mp4", 12, (320, 240), 10)  # while cam1 is still written
    sink.process(Batch([], 13, [StreamEvent("removed", 1, "cam1")]))
    assert_plays(tmp_path / "cam1.mp4", 13, (320, 240), 10)
    assert sink.drain() == []
    sink.close()
    assert sink.written == {tmp_path / "cam0.mp4": 12, tmp_path / "cam1.mp4": 13}


def test_drain_finishes_every_file(tmp_path: Path) -> None:
    sink = make_sink(tmp_path, path="clips/video.mkv", fps=5)
    for batch in batches([3, 7], 6):
        sink.process(batch)
    sink.drain()
    sink.close()  # after drain, nothing left to do
    for source_id in (3, 7):
        assert_plays(tmp_path / "clips" / f"video_{source_id}.mkv", 6, (320, 240), 5)


def test_tiled_frames_go_to_the_path_itself(tmp_path: Path) -> None:
    sink = make_sink(tmp_path, path="view-{name}.mp4")
    for batch in batches([TILED_SOURCE_ID], 5, size_wh=(640, 360)):
        sink.process(batch)
    sink.close()
    assert sink.paths == [tmp_path / "view-tiled.mp4"]
    assert_plays(tmp_path / "view-tiled.mp4", 5, (640, 360), 10)


@pytest.mark.parametrize(
    ("props_fps", "frame_fps", "expected"),
    [(None, 10.0, "10/1"), (None, None, "30/1"), (25.0, 10.0, "25/1"), (None, 29.97, "30000/1001")],
)
def test_frame_rate(
    tmp_path: Path, props_fps: float | None, frame_fps: float | None, expected: str
) -> None:
    sink = make_sink(tmp_path, path="rate.mp4", fps=props_fps)
    for batch in batches([0], 4, fps=frame_fps):
        sink.process(batch)
    sink.close()
    assert ffprobe(tmp_path / "rate_0.mp4")["r_frame_rate"] == expected


@pytest.mark.parametrize(("unknown", "expected"), [(3, "25/1"), (40, "30/1")])
def test_first_frames_without_a_rate_wait_for_one(
    tmp_path: Path, unknown: int, expected: str
) -> None:
    """A tiler gives no rate until every stream has shown a frame: those first pictures are held
    (up to HOLD_FRAMES) and written at the rate that comes next, or at 30 fps."""
    sink = make_sink(tmp_path, path="held.mp4")
    frames = [make_frame(TILED_SOURCE_ID, i, fps=None) for i in range(unknown)]
    frames += [make_frame(TILED_SOURCE_ID, unknown + i, fps=25.0) for i in range(5)]
    for index, frame in enumerate(frames):
        sink.process(Batch([frame], index))
    sink.close()
    probe = ffprobe(tmp_path / "held.mp4")
    assert probe["r_frame_rate"] == expected
    assert int(probe["nb_read_frames"]) == unknown + 5


def test_held_frames_are_written_when_the_stream_ends_first(tmp_path: Path) -> None:
    sink = make_sink(tmp_path, path="short.mp4")
    for batch in batches([0], 4, fps=None):
        sink.process(batch)
    sink.process(Batch([], 4, [StreamEvent("ended", 0, "cam0")]))
    assert int(ffprobe(tmp_path / "short_0.mp4")["nb_read_frames"]) == 4
    sink.close()


def test_later_frames_of_another_size_are_resized(tmp_path: Path) -> None:
    sink = make_sink(tmp_path, path="sizes.mp4")
    sizes = [(321, 241), (640, 480), (160, 120), (321, 241)]
    for index, size_wh in enumerate(sizes):
        sink.process(Batch([make_frame(0, index, size_wh)], index))
    sink.close()
    images, _ = decode(tmp_path / "sizes_0.mp4")
    # The first frame's size, made even for 4:2:0 video.
    assert [image.shape for image in images] == [(242, 322, 3)] * 4


def test_same_names_get_distinct_files(tmp_path: Path) -> None:
    sink = make_sink(tmp_path, path="{name}.mp4")
    frames = [make_frame(0, 0, name="cam"), make_frame(1, 0, name="cam")]
    frames[1].source_name = frames[0].source_name
    sink.process(Batch(frames))
    sink.process(Batch([], 1, [StreamEvent("removed", 0, "cam0")]))
    again = make_frame(2, 0)
    again.source_name = "cam0"  # a stream added again under its old name
    sink.process(Batch([again], 2))
    sink.close()
    assert sink.paths == [tmp_path / "cam0.mp4", tmp_path / "cam0_1.mp4", tmp_path / "cam0_2.mp4"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gate", "gate"),
        ("/data/videos/one-by-one.mp4", "one-by-one"),
        ("file:///data/clip.mkv", "clip"),
        ("rtsp://admin:secret@10.0.0.5:554/Streaming/Channels/101", "101"),
        ("rtsp://10.0.0.5:554/", "10.0.0.5"),
        ("test://ball?width=640&height=360", "ball"),
        ("car park: north", "car_park_north"),
        ("Caméra 2", "Caméra_2"),
        ("..", ""),
    ],
)
def test_file_name_part(name: str, expected: str) -> None:
    assert file_name_part(name) == expected


def test_a_write_error_closes_that_file_and_the_others_go_on(tmp_path: Path) -> None:
    bus = Bus()
    sink = make_sink(tmp_path, bus, path="out/video.mp4")
    (tmp_path / "out" / "video_0.mp4").symlink_to("/dev/full")  # a full disk, for stream 0
    noise = np.random.default_rng(0)
    for index in range(40):
        frames = [make_frame(0, index, (640, 360)), make_frame(1, index, (640, 360))]
        frames[0].image = noise.integers(0, 256, (360, 640, 3), dtype=np.uint8)
        sink.process(Batch(frames, index))
    sink.drain()
    sink.close()
    assert sink.failures == 1
    [error] = bus.errors()
    assert error.origin == "file0" and "No space left on device" in error.text
    warnings = [m.text for m in bus.history if m.type is MessageType.WARNING]
    assert warnings == [
        f"cam0: {tmp_path / 'out' / 'video_0.mp4'} is closed and its frames are no longer written"
    ]
    assert 0 < sink.written[tmp_path / "out" / "video_0.mp4"] < 40
    assert_plays(tmp_path / "out" / "video_1.mp4", 40, (640, 360), 10)


# -- configuration errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sink", "place", "message"),
    [
        ({"path": "out/video.avi"}, "sinks[0].path", "end it with .mp4, .mov, .mkv"),
        ({"path": "blocker/video.mp4"}, "sinks[0].path", "cannot write files into"),
        ({"path": "blocker/{name}/video.mp4"}, "sinks[0].path", "cannot write files into"),
        ({"path": "out"}, "sinks[0].path", "not a video file name"),
        ({"path": "out/{camera}.mp4"}, "sinks[0].path", "unknown placeholder {camera}"),
        ({"path": "out/{source_id:03d}.mp4"}, "sinks[0].path", "unknown placeholder"),
        ({"path": "out/{name.mp4"}, "sinks[0].path", "write a brace as"),
        ({"path": "v.mp4", "preset": "warp"}, "sinks[0].preset", "unknown preset 'warp'"),
    ],
)
def test_build_refuses_bad_output(
    tmp_path: Path, sink: dict[str, Any], place: str, message: str
) -> None:
    (tmp_path / "blocker").write_text("a file where a folder should be")
    config = {
        "sources": [{"type": "test-source", "frames": 5}],
        "sinks": [{"type": "file", **sink}],
    }
    with pytest.raises(ConfigError, match=message) as raised:
        Pipeline(config, base_dir=tmp_path).build()
    assert raised.value.place == place and str(raised.value).startswith(f"{place}: ")


def test_build_makes_the_folder_but_no_file(tmp_path: Path) -> None:
    make_sink(tmp_path, path="new/deeper/video.mp4").close()
    assert (tmp_path / "new" / "deeper").is_dir()
    assert list((tmp_path / "new" / "deeper").iterdir()) == []


# -- the command line -------------------------------------------------------------------------


def test_cli_names_the_bad_path(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a folder should be")
    unwritable = tmp_path / "unwritable.yaml"
    unwritable.write_text(
        "sources: [{type: test-source, frames: 5}]\n"
        "sinks: [{type: file, path: blocker/video.mp4}]\n"
    )
    result = panoptes("validate", str(unwritable), cwd=tmp_path)
    assert result.returncode == 2 and "sinks[0].path: " in result.stderr, result.stderr
    avi = tmp_path / "avi.yaml"
    avi.write_text(
        "sources: [{type: test-source, frames: 5}]\nsinks: [{type: file, path: video.avi}]\n"
    )
    result = panoptes("run", str(avi), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "sinks[0].path: 'video.avi' is not a video file name" in result.stderr
    assert not (tmp_path / "video.avi").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_cli_stopped_by_a_signal_leaves_a_file_that_plays(
    tmp_path: Path, signum: signal.Signals
) -> None:
    config = tmp_path / "record.yaml"
    config.write_text(
        "sources:\n"
        "  - uri: test://ball?width=640&height=360&fps=25&frames=100000\n"
        "    name: ball\n"
        "sinks:\n"
        "  - {type: file, path: 'out/{name}.mp4'}\n"
        "  - {type: jsonl, path: out/meta.jsonl}\n"
    )
    process = subprocess.Popen(
        [*PANOPTES, "run", str(config)],
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    meta = tmp_path / "out" / "meta.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not meta.exists() or meta.stat().st_size < 5000):
        if process.poll() is not None:
            pytest.fail(f"panoptes exited early: {process.communicate()[1]}")
        time.sleep(0.1)
    time.sleep(1)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert f"{signum.name}: stopping" in stderr
    records = len(meta.read_text().splitlines())
    video = tmp_path / "out" / "ball.mp4"
    images, rate = decode(video)
    assert rate == 25 and len(images) == records > 0  # every frame the pipeline carried
    probed = ffprobe(video)
    assert probed["nb_read_frames"] == str(records)
    assert (probed["width"], probed["height"]) == (640, 360)
