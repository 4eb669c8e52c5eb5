"""VideoWriter: files that FFmpeg (PyAV and ffprobe) reads back with every frame at its rate."""

from __future__ import annotations

import contextlib
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from cli_tools import ffprobe as probe_stream
from panoptes.media.writer import VideoWriter, container_format, frame_rate


def synthetic_frames(count: int, size_wh: tuple[int, int]) -> list[np.ndarray]:
    """A horizontal and vertical gradient with a white square moving right: HWC uint8 BGR."""
    width, height = size_wh
    ramp_x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    ramp_y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    background = np.empty((height, width, 3), np.uint8)
    background[..., 0] = ramp_x
    background[..., 1] = ramp_y
    background[..., 2] = (ramp_x + ramp_y) / 2
    side = max(8, height // 6)
    frames = []
    for index in range(count):
        image = background.copy()
        x = (index * 11) % max(1, width - side)
        y = height // 3
        image[y : y + side, x : x + side] = 255
        frames.append(image)
    return frames


def decode(path: Path) -> tuple[list[np.ndarray], Fraction | None]:
    """Every frame of ``path`` as BGR arrays, and the stream's average rate, with PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        images = [frame.to_ndarray(format="bgr24") for frame in container.decode(stream)]
        return images, stream.average_rate


def write(path: Path, frames: list[np.ndarray], fps: float, **options: Any) -> VideoWriter:
    height, width = frames[0].shape[:2]
    with VideoWriter(path, (width, height), fps, **options) as writer:
        for image in frames:
            writer.write(image)
    return writer


def test_h264_mp4_has_every_frame_at_its_rate(tmp_path: Path) -> None:
    frames = synthetic_frames(30, (640, 360))
    path = tmp_path / "gradient.mp4"
    writer = write(path, frames, 15)
    assert writer.frames_written == 30 and writer.closed

    images, rate = decode(path)
    assert len(images) == 30
    assert images[0].shape == (360, 640, 3)
    assert rate == 15
    assert ffprobe(path) == {
        "codec_name": "h264",
        "codec_tag_string": "avc1",
        "width": 640,
        "height": 360,
        "r_frame_rate": "15/1",
        "color_space": "smpte170m",
        "nb_read_frames": "30",
    }


def test_decoded_frames_are_close_to_the_input(tmp_path: Path) -> None:
    frames = synthetic_frames(30, (640, 360))
    path = tmp_path / "gradient.mp4"
    write(path, frames, 15, crf=18)
    images, _ = decode(path)
    for index in (0, 15, 29):
        difference = np.abs(images[index].astype(np.int16) - frames[index].astype(np.int16))
        assert difference.mean() < 3, index
    # The square moved: the frames are the input's in order, not one picture repeated.
    assert np.abs(images[0].astype(np.int16) - frames[29].astype(np.int16)).mean() > 5


def test_mp4_index_is_at_the_front(tmp_path: Path) -> None:
    path = tmp_path / "stream.mp4"
    write(path, synthetic_frames(10, (320, 240)), 10)
    data = path.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")  # faststart: playable while downloading


@pytest.mark.parametrize(
    ("name", "size_wh", "options", "expected"),
    [
        ("odd.mp4", (641, 361), {}, {"codec_name": "h264", "width": 642, "height": 362}),
        ("clip.mkv", (640, 360), {}, {"codec_name": "h264", "width": 640, "height": 360}),
        ("clip.mov", (640, 360), {}, {"codec_name": "h264", "width": 640, "height": 360}),
        (
            "hevc.mp4",
            (640, 360),
            {"codec": "h265", "crf": 28},
            {"codec_name": "hevc", "codec_tag_string": "hvc1"},
        ),
        ("hevc.mkv", (640, 360), {"codec": "h265"}, {"codec_name": "hevc"}),
        ("abr.mp4", (640, 360), {"bitrate_kbps": 500}, {"codec_name": "h264"}),
        ("ultrafast.mp4", (640, 360), {"preset": "ultrafast", "threads": 1}, {}),
    ],
)
def test_containers_codecs_and_sizes(
    tmp_path: Path,
    name: str,
    size_wh: tuple[int, int],
    options: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    frames = synthetic_frames(20, size_wh)
    path = tmp_path / name
    write(path, frames, 15, **options)
    probed = ffprobe(path)
    assert {key: probed[key] for key in expected} == expected
    assert probed["nb_read_frames"] == "20" and probed["r_frame_rate"] == "15/1"
    images, rate = decode(path)
    assert len(images) == 20 and rate == 15
    width, height = size_wh
    # Odd sizes are padded, never scaled: the picture is the input's pixel for pixel.
    difference = np.abs(images[10][:height, :width].astype(np.int16) - frames[10])
    assert difference.mean() < 4


def test_bitrate_replaces_crf(tmp_path: Path) -> None:
    frames = synthetic_frames(30, (640, 360))
    noise = np.random.default_rng(0).integers(0, 40, (30, 360, 640, 3), dtype=np.uint8)
    frames = [image + grain for image, grain in zip(frames, noise, strict=True)]
    sizes = {}
    for kbps in (150, 1500):
        path = tmp_path / f"{kbps}.mp4"
        write(path, frames, 15, bitrate_kbps=kbps, crf=0)
        sizes[kbps] = path.stat().st_size
    assert sizes[1500] > 3 * sizes[150]
    assert sizes[150] < 150_000 / 8 * 2 * 2  # about 2 s at 150 kbit/s, with room for the start


def test_frames_of_another_size_are_resized(tmp_path: Path) -> None:
    path = tmp_path / "mixed.mkv"
    large, small = synthetic_frames(1, (1280, 720))[0], synthetic_frames(1, (320, 180))[0]
    with VideoWriter(path, (640, 360), 10) as writer:
        for image in (large, small, large):
            writer.write(image)
    images, _ = decode(path)
    assert [image.shape for image in images] == [(360, 640, 3)] * 3


def test_ntsc_rate_stays_exact(tmp_path: Path) -> None:
    assert frame_rate(29.97) == Fraction(30000, 1001)
    path = tmp_path / "ntsc.mp4"
    write(path, synthetic_frames(12, (320, 240)), 30000 / 1001)
    assert ffprobe(path)["r_frame_rate"] == "30000/1001"


def test_unclosed_on_error_still_plays(tmp_path: Path) -> None:
    path = tmp_path / "interrupted.mp4"
    frames = synthetic_frames(8, (320, 240))
    with pytest.raises(KeyboardInterrupt), VideoWriter(path, (320, 240), 10) as writer:
        for image in frames:
            writer.write(image)
        raise KeyboardInterrupt
    assert writer.closed
    assert ffprobe(path)["nb_read_frames"] == "8"


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("clip.avi", {}, "unknown video file extension; use one of .mp4, .mov, .mkv"),
        ("clip.mp4", {"preset": "warp"}, "unknown preset 'warp'"),
        ("clip.mp4", {"codec": "vp9"}, "unknown codec 'vp9'"),
    ],
)
def test_refuses_what_it_cannot_write(
    tmp_path: Path, name: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        VideoWriter(tmp_path / name, (320, 240), 10, **options)
    assert not (tmp_path / name).exists()


def test_write_checks_the_image_and_the_state(tmp_path: Path) -> None:
    writer = VideoWriter(tmp_path / "clip.mp4", (320, 240), 10)
    with pytest.raises(ValueError, match="HWC uint8 BGR"):
        writer.write(np.zeros((240, 320), np.uint8))
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError, match="is closed"):
        writer.write(np.zeros((240, 320, 3), np.uint8))


def test_disk_full_raises_os_error(tmp_path: Path) -> None:
    full = tmp_path / "full.mp4"
    full.symlink_to("/dev/full")  # writes fail with ENOSPC, as on a full disk
    writer = VideoWriter(full, (640, 360), 10)
    with pytest.raises(OSError, match="No space left"):
        for image in synthetic_frames(30, (640, 360)):
            writer.write(image)
        writer.close()
    with contextlib.suppress(OSError):  # flushing what is left fails the same way
        writer.close()
    assert writer.closed


def test_container_format_by_extension() -> None:
    assert container_format("a/b.MP4") == "mp4"
    assert container_format("b.mkv") == "matroska"
    assert container_format("b.avi") is None


def ffprobe(path: Path) -> dict[str, Any]:
    """The stream fields these tests check, with the tag and colour space of the encoder."""
    return probe_stream(
        path, "nb_read_frames,width,height,r_frame_rate,codec_name,codec_tag_string,color_space"
    )
