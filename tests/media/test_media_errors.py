"""Bad inputs end in a ``SourceError`` that names the source and says what is wrong."""

from __future__ import annotations

import wave
from collections.abc import Callable
from pathlib import Path

import pytest
from media_clips import ONE_BY_ONE, PARKING, damage, truncate

from panoptes.core.errors import SourceError
from panoptes.media import open_reader


def open_error(uri: str, **options: object) -> SourceError:
    reader = open_reader(uri, name="cam", **options)  # type: ignore[arg-type]
    with pytest.raises(SourceError) as caught:
        reader.open()
    return caught.value


def test_a_source_error_names_the_source_and_is_an_os_error(tmp_path: Path) -> None:
    error = open_error(str(tmp_path / "missing.mp4"))
    assert isinstance(error, OSError)
    assert error.source == "cam"
    assert str(error).startswith("cam: ")


def make_text_file(folder: Path) -> str:
    path = folder / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    return str(path)


def make_empty_file(folder: Path) -> str:
    path = folder / "empty.mp4"
    path.write_bytes(b"")
    return str(path)


def make_audio_only_file(folder: Path) -> str:
    path = folder / "tone.wav"
    with wave.open(str(path), "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(8000)
        sound.writeframes(b"\x00\x00" * 4000)
    return str(path)


def make_empty_folder(folder: Path) -> str:
    (folder / "empty").mkdir()
    (folder / "empty" / "readme.txt").write_text("no images here")
    return str(folder / "empty")


@pytest.mark.parametrize(
    ("make_uri", "expected"),
    [
        (lambda folder: str(folder / "missing.mp4"), "no such file"),
        (lambda folder: f"file://{folder}/missing.mkv", "no such file"),
        (lambda folder: str(folder / "missing.jpg"), "no such file"),
        (make_empty_folder, "the folder has no images"),
        (lambda folder: str(folder / "*.jpg"), "no image matches"),
        (make_text_file, "not a video file FFmpeg can read"),
        (make_empty_file, "the file is empty"),
        (make_audio_only_file, "no video stream (it has: audio pcm_s16le)"),
    ],
    ids=[
        "missing",
        "missing-uri",
        "missing-image",
        "empty-folder",
        "glob-nothing",
        "text",
        "empty",
        "audio-only",
    ],
)
def test_open_errors(tmp_path: Path, make_uri: Callable[[Path], str], expected: str) -> None:
    error = open_error(make_uri(tmp_path))
    assert expected in str(error)


@pytest.mark.parametrize(
    ("uri", "options", "expected"),
    [
        ("foo://camera/1", {}, "unknown URI scheme 'foo://'"),
        ("test://triangle", {}, "unknown test pattern 'triangle'; known: ball, gradient, noise"),
        ("test://ball?speed=3", {}, "unknown test pattern parameter(s) speed"),
        ("test://ball?fps=0", {}, "fps='0' must be a positive number"),
        ("test://ball?width=wide", {}, "width='wide' must be a positive integer"),
        ("rtsp://cam/1?transport=pigeon", {}, "unknown RTSP transport 'pigeon'"),
        ("test://ball", {"drop_frame_interval": 0}, "drop_frame_interval must be 1 or more"),
        ("test://ball", {"open_timeout_s": 0}, "open_timeout_s must be positive"),
    ],
)
def test_malformed_uris_and_options_fail_when_the_reader_is_made(
    uri: str, options: dict[str, object], expected: str
) -> None:
    with pytest.raises(SourceError, match=r"^cam: ") as caught:
        open_reader(uri, name="cam", **options)  # type: ignore[arg-type]
    assert expected in str(caught.value)


def test_truncated_mp4_with_its_index_at_the_end_fails_to_open(
    videos: Path, tmp_path: Path
) -> None:
    clip = truncate(PARKING, tmp_path / "cut.mp4")
    error = open_error(str(clip))
    assert "looks truncated or corrupt" in str(error)
    assert "'moov'" in str(error)


def test_truncated_mp4_with_its_index_first_fails_at_its_end(videos: Path, tmp_path: Path) -> None:
    clip = truncate(ONE_BY_ONE, tmp_path / "cut.mp4")
    reader = open_reader(str(clip), name="cam", drop_frame_interval=10)
    reader.open()
    frames = []
    with pytest.raises(
        SourceError, match=r"ended after \d+ of 1394 frames: .* truncated"
    ) as caught:
        frames.extend(reader.frames())
    reader.close()
    decoded = int(str(caught.value).split("ended after ")[1].split(" ")[0])
    assert 600 < decoded < 800  # about half
    assert len(frames) == (decoded + 9) // 10  # the frames before the end were delivered


def test_damaged_packets_are_skipped_and_counted(videos: Path, tmp_path: Path) -> None:
    clip = damage(ONE_BY_ONE, tmp_path / "damaged.mp4", chunks=5, chunk_bytes=4096, seed=0)
    reader = open_reader(str(clip), drop_frame_interval=10)
    reader.open()
    frames = list(reader.frames())
    reader.close()
    assert len(frames) >= 130  # of 140: most frames survive
    assert reader.corrupt_frames >= 1


def test_heavy_damage_is_counted_not_taken_for_truncation(videos: Path, tmp_path: Path) -> None:
    clip = damage(ONE_BY_ONE, tmp_path / "shredded.mp4", chunks=60, chunk_bytes=8192, seed=1)
    reader = open_reader(str(clip), drop_frame_interval=10)
    reader.open()
    frames = list(reader.frames())
    reader.close()
    assert len(frames) > 70  # of 140
    assert reader.corrupt_frames >= 10
