"""Frames kept in their decoder's YUV planes: the conversions against FFmpeg's, where the
pipeline lets the CPU decoders give them, and the detections they lead to against BGR frames."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from panoptes import Batch, Pipeline
from panoptes.core.element import BuildContext
from panoptes.core.frame import Frame
from panoptes.core.geometry import Letterbox
from panoptes.core.negotiation import CPU, CPU_YUV
from panoptes.elements.convert import ToCpu, ToCpuProperties
from panoptes.media.yuv import YuvImage, yuv_image_of

CLIPS = ["Retail02_short.mp4", "one-by-one-person-detection.mp4"]


def decoded(path: Path, count: int) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame)
            if len(frames) == count:
                return frames
    return frames


@pytest.mark.parametrize("clip", CLIPS)
def test_to_bgr_is_ffmpeg_conversion(assets: Path, clip: str) -> None:
    for frame in decoded(assets / "videos" / clip, 3):
        image = yuv_image_of(frame)
        assert image is not None and image.size_wh == (frame.width, frame.height)
        assert np.array_equal(image.to_bgr(), frame.to_ndarray(format="bgr24"))


@pytest.mark.parametrize("clip", CLIPS)
@pytest.mark.parametrize("colorspace", [None, 1])  # as the stream says (BT.601 here); BT.709
def test_letterbox_matches_converting_first(
    assets: Path, clip: str, colorspace: int | None
) -> None:
    """Resizing the planes before the conversion lands within a few grey levels of converting
    first and resizing (as the mux and detectors do with BGR), pixel for pixel in place."""
    for size_wh in [(416, 416), (320, 640)]:
        for frame in decoded(assets / "videos" / clip, 4)[1:]:
            if colorspace is not None:
                frame.colorspace = colorspace
            image = yuv_image_of(frame)
            assert image is not None
            assert image.color_space == ("bt709" if colorspace == 1 else "bt601")
            letterbox = Letterbox.fit(image.size_wh, size_wh)
            expected = letterbox.warp(image.to_bgr(), size_wh, pad_value=114)
            out = np.zeros((size_wh[1], size_wh[0], 3), np.uint8)
            got = letterbox.warp(image, size_wh, pad_value=114, out=out)
            assert got is out
            difference = np.abs(got.astype(np.int16) - expected)
            assert difference.mean() < 1.0, difference.mean()
            assert np.percentile(difference, 99) <= 4
            # The padding is where the BGR path puts it.
            assert np.mean((got == 114) != (expected == 114)) < 0.01


def test_full_range_and_other_formats() -> None:
    frame = av.VideoFrame(64, 48, "yuvj420p")
    for plane, value in zip(frame.planes, (0, 128, 128), strict=True):
        plane.update(bytes([value]) * plane.buffer_size)
    image = yuv_image_of(frame)
    assert image is not None and image.color_space == "bt601-full"
    black = Letterbox.fit((64, 48), (32, 24)).warp(image, (32, 24))
    assert black.max() == 0  # full range: Y 0 is black (limited range would clamp it)
    assert yuv_image_of(av.VideoFrame(64, 48, "rgb24")) is None
    assert yuv_image_of(av.VideoFrame(64, 48, "nv12")) is None


def config(assets: Path, frames: int = 40, **extra: Any) -> dict[str, Any]:
    videos = assets / "videos"
    return {
        "sources": [
            {"uri": str(videos / "Retail02_short.mp4"), "max_frames": frames},
            {"uri": str(videos / "person-bicycle-car-detection.mp4"), "max_frames": frames},
        ],
        "mux": {"batch_size": 2},
        "infer": [{"name": "detector", "model": "yolox-nano"}],
        "sinks": [{"type": "fakesink"}],
        "perf": {"interval_s": 0},
        **extra,
    }


def run(cfg: dict[str, Any], element: str = "detector") -> tuple[Pipeline, dict[Any, Any]]:
    pipeline = Pipeline(cfg)
    seen: dict[Any, Any] = {}

    def probe(batch: Batch) -> None:
        for frame in batch:
            objects = frame.objects
            seen[frame.source_id, frame.frame_num] = (
                frame.memory,
                frame.image_bgr().shape,
                objects.xyxy.copy(),
                objects.class_id.copy(),
                objects.confidence.copy(),
            )

    pipeline.add_probe(element, probe)
    summary = pipeline.run()
    assert summary.ok, [str(m) for m in summary.errors]
    return pipeline, seen


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    width = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = width * height
    area = (box[2] - box[0]) * (box[3] - box[1])
    return inter / (area + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter)


def test_metadata_pipeline_keeps_planes_and_finds_the_same_objects(
    assets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, planes = run(config(assets))
    assert CPU_YUV in pipeline.mux.memory and not pipeline.conversions
    assert {memory for memory, *_ in planes.values()} == {CPU_YUV}
    # image_bgr() gives the whole picture, at the original size.
    assert planes[0, 0][1] == (1080, 1920, 3)

    monkeypatch.setattr(Pipeline, "_offer_yuv", lambda self, source: None)
    _, bgr = run(config(assets))
    assert {memory for memory, *_ in bgr.values()} == {CPU}
    assert planes.keys() == bgr.keys()
    confident = matched = 0
    for key, (_, _, xyxy, class_id, confidence) in planes.items():
        _, _, other_xyxy, other_class, other_confidence = bgr[key]
        for ours, theirs in [
            ((xyxy, class_id, confidence), (other_xyxy, other_class, other_confidence)),
            ((other_xyxy, other_class, other_confidence), (xyxy, class_id, confidence)),
        ]:
            for box, cls, score in zip(*ours, strict=True):
                if score < 0.5:
                    continue
                confident += 1
                same = theirs[1] == cls
                if not same.any():
                    continue
                overlaps = iou(box, theirs[0][same])
                best = int(overlaps.argmax())
                if overlaps[best] > 0.85 and abs(theirs[2][same][best] - score) < 0.1:
                    matched += 1
    assert confident > 300
    assert matched / confident > 0.97, (matched, confident)


def test_a_pixel_reading_element_gets_bgr(assets: Path, tmp_path: Path) -> None:
    """An osd and a video sink read pixels: the decoders convert, as before; a scaling mux
    converts at its resolution."""
    cfg = config(
        assets,
        frames=10,
        osd={},
        sinks=[{"type": "file", "path": str(tmp_path / "out.mp4")}, {"type": "fakesink"}],
    )
    pipeline, seen = run(cfg)
    assert CPU_YUV not in pipeline.mux.memory and not pipeline.conversions
    assert {memory for memory, *_ in seen.values()} == {CPU}

    scaled = config(assets, frames=10)
    scaled["mux"] = {"batch_size": 2, "width": 640, "height": 360}
    pipeline, seen = run(scaled)
    assert pipeline.mux.memory == frozenset({CPU})
    assert {(memory, shape) for memory, shape, *_ in seen.values()} == {(CPU, (360, 640, 3))}


def test_source_added_while_running_gives_planes(assets: Path) -> None:
    cfg = config(assets, frames=5, keep_alive=False)
    pipeline = Pipeline(cfg)
    memories: list[str] = []
    pipeline.add_probe("detector", lambda batch: memories.extend(f.memory for f in batch))
    pipeline.build()
    added = pipeline.add_source(
        {"uri": str(assets / "videos" / "one-by-one-person-detection.mp4"), "max_frames": 5}
    )
    assert pipeline.run().ok
    assert added == 2 and len(memories) == 15 and set(memories) == {CPU_YUV}


def test_to_cpu_converts_planes(assets: Path) -> None:
    frame = decoded(assets / "videos" / "one-by-one-person-detection.mp4", 1)[0]
    image = yuv_image_of(frame)
    assert isinstance(image, YuvImage)
    original = Frame(0, "a", 0, 0.0, 0.0, image.size_wh, image)  # type: ignore[arg-type]
    batch = Batch([original])
    context = BuildContext(bus=Pipeline({"sources": [{"uri": "test://ball"}]}).bus)
    converted = ToCpu(ToCpuProperties(), name="to-cpu", context=context).process(batch)
    assert converted.frames[0].memory == CPU and original.memory == CPU_YUV
    assert np.array_equal(converted.frames[0].image, frame.to_ndarray(format="bgr24"))
