"""Reading real clips, containers, image folders and patterns through ``open_reader``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from media_clips import ONE_BY_ONE, PARKING, RETAIL, remux

from panoptes.media import DecodedFrame, FrameReader, open_reader
from panoptes.media.reader import mask_password


def read_all(reader: FrameReader, stop: threading.Event | None = None) -> list[DecodedFrame]:
    reader.open()
    try:
        return list(reader.frames(stop))
    finally:
        reader.close()


def test_reads_every_frame_of_an_h264_clip(videos: Path) -> None:
    reader = open_reader(str(ONE_BY_ONE), name="hall")
    reader.open()
    assert (reader.size_wh, reader.fps, reader.frame_count) == ((768, 432), 10.0, 1394)
    assert not reader.is_live
    count = 0
    previous_pts_s = -1.0
    for frame in reader.frames():
        assert frame.index == count
        assert frame.image.shape == (432, 768, 3)
        assert frame.image.dtype == np.uint8
        assert frame.pts_s is not None and frame.pts_s > previous_pts_s
        previous_pts_s = frame.pts_s
        count += 1
    reader.close()
    assert count == 1394
    assert previous_pts_s == pytest.approx(139.3)
    assert reader.corrupt_frames == 0


def test_hevc_1080p_with_audio_stops_when_the_event_is_set(videos: Path) -> None:
    stop = threading.Event()
    reader = open_reader(str(RETAIL))
    reader.open()
    assert (reader.size_wh, reader.fps, reader.frame_count) == ((1920, 1080), 30.0, 603)
    frames = []
    for frame in reader.frames(stop):
        frames.append(frame)
        if len(frames) == 50:
            stop.set()
    reader.close()
    assert len(frames) == 50
    assert frames[-1].image.shape == (1080, 1920, 3)
    assert frames[-1].pts_s == pytest.approx(49 / 30)


def test_a_header_that_overcounts_a_little_is_not_called_truncated(videos: Path) -> None:
    frames = read_all(open_reader(str(PARKING), drop_frame_interval=10))
    assert len(frames) == 46  # 459 decoded frames of the 467 in the header, every 10th


@pytest.mark.parametrize(
    ("container_format", "suffix"), [("matroska", "mkv"), ("mov", "mov"), ("mp4", "mp4")]
)
def test_reads_other_containers(
    videos: Path, tmp_path: Path, container_format: str, suffix: str
) -> None:
    clip = remux(ONE_BY_ONE, tmp_path / f"clip.{suffix}", container_format, packets=30)
    frames = read_all(open_reader(str(clip)))
    assert len(frames) == 30
    assert [frame.pts_s for frame in frames[:3]] == pytest.approx([0.0, 0.1, 0.2])


def test_reads_a_raw_h264_stream_and_makes_up_its_timestamps(raw_h264: Path) -> None:
    reader = open_reader(str(raw_h264))
    frames = read_all(reader)
    assert len(frames) == 100
    assert reader.frame_count is None  # a raw stream has no header to count from
    assert reader.fps == 10.0
    assert frames[-1].image.shape == (432, 768, 3)
    assert [frame.pts_s for frame in frames] == pytest.approx([i / 10 for i in range(100)])


@pytest.mark.parametrize(
    "uri_of",
    [
        lambda path: str(path),
        lambda path: f"file://{path}",
        lambda path: f"file:{path}",
        lambda path: f"file://localhost{path}",
        lambda path: path.name,  # relative to base_dir
        lambda path: f"file://{path.name}",  # relative, as DeepStream configs write it
    ],
    ids=["path", "file:///abs", "file:/abs", "file://localhost/abs", "relative", "file://rel"],
)
def test_file_uri_forms(clip_100_frames: Path, uri_of: Callable[[Path], str]) -> None:
    reader = open_reader(uri_of(clip_100_frames), base_dir=clip_100_frames.parent)
    reader.open()
    assert reader.size_wh == (768, 432)
    reader.close()


def test_loop_continues_index_and_pts_past_the_end(clip_100_frames: Path) -> None:
    reader = open_reader(str(clip_100_frames), loop=True)
    reader.open()
    assert reader.frame_count is None
    frames = []
    for frame in reader.frames():
        frames.append(frame)
        if len(frames) == 250:
            break
    reader.close()
    assert [frame.index for frame in frames] == list(range(250))
    pts_s = np.array([frame.pts_s for frame in frames])
    np.testing.assert_allclose(np.diff(pts_s), 0.1, atol=1e-6)  # seamless at both wraps
    # The second pass shows the first pass's pictures again.
    np.testing.assert_array_equal(frames[100].image, frames[0].image)


def test_drop_frame_interval_keeps_decoded_frames_0_n_2n(clip_100_frames: Path) -> None:
    reader = open_reader(str(clip_100_frames), drop_frame_interval=5)
    frames = read_all(reader)
    assert (reader.fps, reader.frame_count) == (10.0, 100)  # of the stream, before dropping
    assert [frame.index for frame in frames] == list(range(20))
    assert [frame.pts_s for frame in frames] == pytest.approx([i * 0.5 for i in range(20)])


def test_drop_frame_interval_on_a_pattern() -> None:
    frames = read_all(open_reader("test://ball?frames=10&fps=30", drop_frame_interval=3))
    assert [frame.pts_s for frame in frames] == pytest.approx([0, 3 / 30, 6 / 30, 9 / 30])
    assert [frame.index for frame in frames] == [0, 1, 2, 3]


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "shots"
    folder.mkdir()
    for number in range(5):
        image = np.full((48, 64, 3), number * 40, dtype=np.uint8)
        cv2.imwrite(str(folder / f"shot_{number:02d}.png"), image)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_image_folder_in_name_order(image_folder: Path) -> None:
    reader = open_reader(str(image_folder), fps=10)
    frames = read_all(reader)
    assert (reader.size_wh, reader.frame_count, reader.fps) == ((64, 48), 5, 10.0)
    assert [int(frame.image[0, 0, 0]) for frame in frames] == [0, 40, 80, 120, 160]
    assert [frame.pts_s for frame in frames] == pytest.approx([0, 0.1, 0.2, 0.3, 0.4])


def test_image_glob_and_a_broken_image(image_folder: Path) -> None:
    (image_folder / "shot_02.png").write_bytes(b"not a png")
    reader = open_reader(str(image_folder / "shot_*.png"))
    frames = read_all(reader)
    assert len(frames) == 4
    assert reader.corrupt_frames == 1
    assert frames[1].pts_s == pytest.approx(1 / 30)  # the default 30 fps


def test_one_image_file(image_folder: Path) -> None:
    frames = read_all(open_reader(str(image_folder / "shot_03.png")))
    assert len(frames) == 1
    assert frames[0].image.shape == (48, 64, 3)


def test_pattern_frame_count_size_and_motion() -> None:
    reader = open_reader("test://ball?width=320&height=240&fps=25&frames=40")
    frames = read_all(reader)
    assert (reader.size_wh, reader.fps, reader.frame_count) == ((320, 240), 25.0, 40)
    assert len(frames) == 40
    assert frames[0].image.shape == (240, 320, 3)
    assert frames[39].pts_s == pytest.approx(39 / 25)
    difference = np.abs(frames[0].image.astype(int) - frames[20].image.astype(int))
    assert difference.mean() > 1.0  # the ball moved


@pytest.mark.parametrize("pattern", ["ball", "gradient", "noise"])
def test_endless_pattern_until_stopped(pattern: str) -> None:
    stop = threading.Event()
    reader = open_reader(f"test://{pattern}?width=64&height=32")
    reader.open()
    assert reader.frame_count is None
    frames = []
    for frame in reader.frames(stop):
        frames.append(frame)
        if len(frames) == 100:
            stop.set()
    assert len(frames) == 100
    assert frames[-1].image.shape == (32, 64, 3)


def test_readers_follow_the_protocol_and_work_as_context_managers(clip_100_frames: Path) -> None:
    for uri in [str(clip_100_frames), "test://ball?frames=2", str(clip_100_frames.parent)]:
        assert isinstance(open_reader(uri), FrameReader)
    with open_reader("test://ball?frames=2") as reader:
        assert len(list(reader.frames())) == 2


def test_frames_opens_the_reader_when_needed() -> None:
    assert len(list(open_reader("test://gradient?frames=3").frames())) == 3


def test_the_default_name_hides_a_password() -> None:
    reader = open_reader("rtsp://admin:hunter2@10.0.0.7:554/stream1")
    assert reader.name == "rtsp://admin:***@10.0.0.7:554/stream1"
    assert "hunter2" not in reader.uri
    assert mask_password("rtsp://10.0.0.7/x") == "rtsp://10.0.0.7/x"


def test_reopening_starts_over(clip_100_frames: Path) -> None:
    reader = open_reader(str(clip_100_frames))
    first = read_all(reader)
    second = read_all(reader)
    assert [frame.index for frame in second] == [frame.index for frame in first]
    assert second[-1].pts_s == first[-1].pts_s


def test_reads_avi_and_a_raw_hevc_stream(videos: Path, tmp_path: Path) -> None:
    avi = tmp_path / "clip.avi"
    with av.open(str(avi), "w") as container:  # MPEG-4 Part 2 in AVI, as old cameras record
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for value in range(0, 200, 10):
            image = np.full((240, 320, 3), value, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    assert len(read_all(open_reader(str(avi)))) == 20
    raw_hevc = remux(RETAIL, tmp_path / "clip.h265", "hevc", packets=12)
    frames = read_all(open_reader(str(raw_hevc)))
    assert len(frames) == 12 and frames[0].image.shape == (1080, 1920, 3)
