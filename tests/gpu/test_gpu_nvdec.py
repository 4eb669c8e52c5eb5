"""NVDEC itself (PyNvVideoCodec on an NVIDIA GPU): the same pictures and times as FFmpeg on the
CPU, and pipelines whose frames stay on the GPU from the decoder to the mux and beyond.

Run on a GPU machine: ``pytest tests/gpu -m gpu``.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
from pipeline_outputs import assert_same_objects, read_jsonl, run_both, video_frames
from software_decoding import ONE_BY_ONE, PARKING, RETAIL, remux

from panoptes import Batch, Pipeline
from panoptes.core.geometry import Letterbox
from panoptes.media import _nvdec, gpu_image
from panoptes.media.reader import open_reader

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", autouse=True)
def nvdec() -> None:
    reason = _nvdec.PyNvVideoCodecBackend().unavailable_reason(0)
    if reason is not None:
        pytest.fail(f"NVDEC is not usable here: {reason}")


@pytest.fixture(scope="module")
def derived_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("derived")
    return {
        "mkv": remux(ONE_BY_ONE, folder / "one-by-one-30.mkv", "matroska", packets=30),
        "h264": remux(ONE_BY_ONE, folder / "one-by-one-30.h264", "h264", packets=30),
        "mpegts": remux(ONE_BY_ONE, folder / "one-by-one-30.ts", "mpegts", packets=30),
    }


@pytest.mark.parametrize(
    ("clip", "frames"),
    [(PARKING, 459), (RETAIL, 603), ("mkv", 30), ("h264", 30), ("mpegts", 30)],
    ids=["mp4-h264-bframes-editlist", "mp4-hevc-1080p", "mkv-h264", "raw-h264", "ts-h264"],
)
def test_nvdec_gives_ffmpegs_pictures_and_times(
    derived_clips: dict[str, Path], clip: Path | str, frames: int
) -> None:
    """Decoding is exactly specified for H.264 and HEVC: NVDEC's NV12 should be FFmpeg's, bit
    for bit; a grey level of slack is allowed, and nearly every value must be exact."""
    path = derived_clips[clip] if isinstance(clip, str) else clip
    reader = open_reader(str(path), decoder="nvdec")
    assert type(reader).__name__ == "NvdecReader" and reader.tensor_device == "cuda:0"
    cpu_reader = open_reader(str(path))
    compared = exact = 0
    worst = 0
    with reader, cpu_reader, av.open(str(path)) as container:
        references = container.decode(video=0)
        nvdec_frames, cpu_frames = reader.frames(), cpu_reader.frames()
        for ours, theirs, reference in itertools.zip_longest(nvdec_frames, cpu_frames, references):
            assert ours is not None and theirs is not None and reference is not None
            assert ours.pts_s == pytest.approx(theirs.pts_s) and ours.index == theirs.index
            image = ours.image
            assert isinstance(image, torch.Tensor) and image.device.type == "cuda"
            expected = reference.to_ndarray(format="nv12")
            assert tuple(image.shape) == expected.shape and image.dtype == torch.uint8
            difference = np.abs(image.cpu().numpy().astype(int) - expected.astype(int))
            worst = max(worst, int(difference.max()))
            exact += int((difference == 0).sum())
            compared += difference.size
    assert reader.warnings == [] and reader.corrupt_frames == 0
    assert ours.index + 1 == frames
    assert worst <= 1 and exact / compared > 0.999


def test_nvdec_frames_convert_to_what_the_cpu_path_shows() -> None:
    reader = open_reader(str(RETAIL), decoder="nvdec")
    cpu_reader = open_reader(str(RETAIL))
    with reader, cpu_reader:
        for ours, theirs in zip(reader.frames(), cpu_reader.frames(), strict=False):
            assert ours.color_space == "bt601"  # the clip says nothing: BT.601 as swscale
            rgb = gpu_image.nv12_to_rgb(ours.image, ours.color_space)
            (bgr,) = gpu_image.to_bgr_images([rgb])
            assert np.abs(bgr.astype(int) - theirs.image.astype(int)).mean() < 1.5
            if ours.index == 30:
                break


def test_pictures_copied_by_the_driver_are_those_dlpack_copies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each picture is copied out of NVDEC's buffers by the CUDA driver; DLPack's copy of the
    same picture (the path for padded rows) holds the same bytes, for every picture of a
    clip, read in a thread that had not used CUDA before."""
    session_class = _nvdec._PyNvVideoCodecSession
    driver_take = session_class._take
    compared: list[bool] = []

    def both(session: Any, frame: Any) -> torch.Tensor:
        height, width = frame.shape  # one run of bytes: the driver's path
        assert frame.strides == (width, 1) and frame.framesize() == height * width
        image = driver_take(session, frame)
        compared.append(torch.equal(image, session._take_by_dlpack(frame)))
        return image

    monkeypatch.setattr(session_class, "_take", both)
    errors: list[BaseException] = []

    def read() -> None:
        try:
            with open_reader(str(RETAIL), decoder="nvdec") as reader:
                for _ in reader.frames():
                    pass
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=read)
    thread.start()
    thread.join(120)
    assert errors == []
    assert len(compared) == 603 and all(compared)


def test_looping_restarts_the_decoder(derived_clips: dict[str, Path]) -> None:
    reader = open_reader(str(derived_clips["mkv"]), decoder="nvdec", loop=True)
    with reader:
        frames = list(itertools.islice(reader.frames(), 65))
    pts = [frame.pts_s for frame in frames]
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert torch.equal(frames[0].image, frames[30].image)
    assert torch.equal(frames[5].image, frames[35].image)


def test_the_gpu_mux_batches_stay_on_the_gpu(tmp_path: Path) -> None:
    """Two NVDEC streams, the mux letterboxing on the GPU into one [2, 3, 640, 640] tensor per
    batch, close to what the CPU mux makes of FFmpeg's frames; a jsonl sink reads no pixels, so
    nothing is downloaded."""
    seen: dict[tuple[int, int], np.ndarray] = {}

    def keep(batch: Batch) -> None:
        images = [frame.tensor for frame in batch.frames]
        assert all(image.device.type == "cuda" for image in images)
        stacked = gpu_image.stack_images(images)
        if len(images) == 2:
            assert stacked.data_ptr() == images[0].data_ptr()
        for frame in batch.frames:
            assert frame.transform == Letterbox.fit(frame.size_wh, (640, 640))
            if frame.frame_num in (0, 7):
                seen[(frame.source_id, frame.frame_num)] = frame.image_bgr()

    pipeline = Pipeline(
        {
            "sources": [
                {"uri": str(RETAIL), "decoder": "nvdec", "max_frames": 8},
                {"uri": str(PARKING), "decoder": "nvdec", "max_frames": 8},
            ],
            "mux": {"width": 640, "height": 640, "batch_size": 2},
            "sinks": [{"type": "jsonl", "path": str(tmp_path / "m.jsonl")}],
            "perf": {"interval_s": 0},
        }
    )
    pipeline.add_probe("mux", keep)
    summary = pipeline.run()
    assert summary.ok and summary.frames == 16 and pipeline.conversions == []
    assert len(seen) == 4
    for (source_id, frame_num), image in seen.items():
        path = RETAIL if source_id == 0 else PARKING
        with av.open(str(path)) as container:
            frame = next(itertools.islice(container.decode(video=0), frame_num, None))
        size_wh = (frame.width, frame.height)
        expected = Letterbox.fit(size_wh, (640, 640)).warp(
            frame.to_ndarray(format="bgr24"), (640, 640)
        )
        difference = np.abs(image.astype(int) - expected.astype(int))
        assert difference.mean() < 1.5 and np.percentile(difference, 99) <= 5


def test_a_gpu_decoded_pipeline_writes_what_the_cpu_pipeline_writes(tmp_path: Path) -> None:
    """NVDEC, the GPU mux, a download before the (onnxruntime) detector: the same objects and
    video within encoding noise as decoding on the CPU."""
    config: dict[str, Any] = {
        "sources": [{"uri": str(PARKING), "decoder": "{decoder}", "max_frames": 24}],
        "mux": {"width": 640, "height": 640},
        "infer": [{"model": "yolox-nano", "threshold": 0.3}],
        "tracker": {},
        "osd": {},
        "sinks": [
            {"type": "jsonl", "path": "{out}/meta.jsonl"},
            {"type": "file", "path": "{out}/out.mp4", "crf": 18},
        ],
    }
    folders = run_both(config, tmp_path)
    cpu, gpu = (read_jsonl(folders[d] / "meta.jsonl") for d in ("cpu", "nvdec"))
    assert len(gpu) == len(cpu) == 24
    assert assert_same_objects(cpu, gpu) > 8
    cpu_video, gpu_video = (video_frames(folders[d] / "out_0.mp4") for d in ("cpu", "nvdec"))
    assert len(gpu_video) == len(cpu_video) == 24
    for ours, theirs in zip(gpu_video, cpu_video, strict=True):
        assert np.abs(ours.astype(int) - theirs.astype(int)).mean() < 2.5
