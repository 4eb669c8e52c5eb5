"""H264Encoder: BGR images and decoded frames in, Annex B access units out, decodable by FFmpeg,
with SPS and PPS at every key frame."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from media_clips import RETAIL

from panoptes.media.rtsp import H264Encoder
from panoptes.media.rtsp._h264 import NAL_IDR, NAL_PPS, NAL_SPS, is_annexb, nal_type, split_annexb


def moving_images(count: int, height: int, width: int) -> list[np.ndarray]:
    """A gradient with a bright square moving over it: uint8 BGR (height, width, 3)."""
    images = []
    gradient = np.linspace(0, 200, width, dtype=np.uint8)[None, :, None]
    for index in range(count):
        image = np.broadcast_to(gradient, (height, width, 3)).copy()
        x = (index * 4) % max(1, width - 16)
        image[8:24, x : x + 16] = (40, 220, 250)
        images.append(image)
    return images


def decode(units: list[bytes]) -> list[av.VideoFrame]:
    decoder = av.CodecContext.create("h264", "r")
    frames = []
    for unit in units:
        frames += decoder.decode(av.Packet(unit))
    return frames + decoder.decode(None)


def test_encodes_one_access_unit_per_frame_with_key_frames_each_gop() -> None:
    encoder = H264Encoder(160, 96, 30, gop=10)
    outputs = [encoder.encode(image) for image in moving_images(25, 96, 160)]
    assert all(len(output) == 1 for output in outputs)  # zerolatency: nothing held back
    units = [unit for output in outputs for unit, _ in output]
    keyframes = [index for index, output in enumerate(outputs) if output[0][1]]
    assert keyframes == [0, 10, 20]
    for index, unit in enumerate(units):
        assert is_annexb(unit)
        kinds = [nal_type(nal) for nal in split_annexb(unit)]
        if index in keyframes:
            assert NAL_SPS in kinds and NAL_PPS in kinds and NAL_IDR in kinds
        else:
            assert NAL_IDR not in kinds
    assert encoder.flush() == []
    frames = decode(units)
    assert len(frames) == 25
    assert (frames[0].width, frames[0].height) == (160, 96)
    # Close to what went in (lossy, but not far): the mean colour of the last frame.
    decoded = frames[-1].to_ndarray(format="bgr24").astype(float).mean(axis=(0, 1))
    encoded = moving_images(25, 96, 160)[-1].astype(float).mean(axis=(0, 1))
    assert np.abs(decoded - encoded).max() < 8


def test_odd_sizes_are_padded_and_other_sizes_resized() -> None:
    encoder = H264Encoder(161, 97, 25, bitrate_kbps=500)
    assert encoder.encoded_size_wh == (162, 98)
    units = [unit for image in moving_images(3, 200, 300) for unit, _ in encoder.encode(image)]
    frames = decode(units)
    assert [(frame.width, frame.height) for frame in frames] == [(162, 98)] * 3
    with pytest.raises(ValueError, match="flushed"):
        encoder.flush()
        encoder.encode(moving_images(1, 97, 161)[0])


def test_encodes_decoded_frames_as_they_are(videos: Path) -> None:
    with av.open(str(RETAIL)) as container:
        stream = container.streams.video[0]
        source = []
        for frame in container.decode(stream):
            source.append(frame)
            if len(source) == 3:
                break
    encoder = H264Encoder(1920, 1080, 30, gop=30)
    units = [unit for frame in source for unit, _ in encoder.encode_frame(frame)]
    assert len(units) == 3
    frames = decode(units)
    assert [(frame.width, frame.height) for frame in frames] == [(1920, 1080)] * 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 0}, "size"),
        ({"preset": "warp"}, "preset"),
        ({"crf": 60}, "crf"),
        ({"bitrate_kbps": 0}, "bitrate"),
        ({"gop": 0}, "gop"),
        ({"fps": 0}, "rate"),
    ],
)
def test_rejects_bad_settings(kwargs: dict[str, object], message: str) -> None:
    settings: dict[str, object] = {"width": 64, "height": 48, "fps": 30, **kwargs}
    with pytest.raises(ValueError, match=message):
        H264Encoder(**settings)  # type: ignore[arg-type]


def test_rejects_images_that_are_not_bgr() -> None:
    encoder = H264Encoder(64, 48, 30)
    with pytest.raises(ValueError, match="BGR"):
        encoder.encode(np.zeros((48, 64), np.uint8))
