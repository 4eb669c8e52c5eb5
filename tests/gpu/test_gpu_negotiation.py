"""Memory negotiation: the converters a pipeline gets between GPU frames and CPU elements, where
they go, and a pipeline whose frames come from (a software stand-in for) NVDEC giving the CPU
pipeline's output."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
from pipeline_outputs import assert_same_objects, read_jsonl, run_both, video_frames
from software_decoding import ONE_BY_ONE, PARKING, SoftwareNv12Backend, nv12_tensor

from panoptes import Batch, MessageType, Pipeline
from panoptes.core.element import BuildContext
from panoptes.core.errors import LinkError
from panoptes.core.frame import Frame
from panoptes.core.geometry import Letterbox
from panoptes.core.negotiation import (
    ANY_MEMORY,
    CPU,
    CPU_ONLY,
    CUDA,
    CUDA_ONLY,
    Conversion,
    conversion_for,
    group_by_conversion,
)
from panoptes.elements.convert import ToCpu, ToCpuProperties, ToCuda, ToCudaProperties
from panoptes.elements.mux import Mux, MuxProperties
from panoptes.media import gpu_image


@pytest.mark.parametrize(
    ("flow", "accepted", "conversion"),
    [
        (CPU_ONLY, CPU_ONLY, None),
        (CPU_ONLY, ANY_MEMORY, None),
        (ANY_MEMORY, ANY_MEMORY, None),
        (CUDA_ONLY, ANY_MEMORY, None),
        (CUDA_ONLY, CUDA_ONLY, None),
        (ANY_MEMORY, CPU_ONLY, CPU),  # an NVDEC source that may fall back: download what is not
        (CUDA_ONLY, CPU_ONLY, CPU),
        (CPU_ONLY, CUDA_ONLY, CUDA),
        (ANY_MEMORY, CUDA_ONLY, CUDA),
    ],
)
def test_conversion_for_each_link(
    flow: frozenset[str], accepted: frozenset[str], conversion: str | None
) -> None:
    assert conversion_for(flow, accepted) == conversion


def test_an_element_taking_nothing_cannot_be_linked() -> None:
    with pytest.raises(LinkError):
        conversion_for(CPU_ONLY, frozenset())


def test_consumers_needing_one_conversion_share_it() -> None:
    consumers = [("jsonl", ANY_MEMORY), ("snapshot", CPU_ONLY), ("file", CPU_ONLY)]
    assert group_by_conversion(ANY_MEMORY, consumers) == {
        None: ["jsonl"],
        CPU: ["snapshot", "file"],
    }


def nvdec_source(path: Path = PARKING, **extra: Any) -> dict[str, Any]:
    return {"uri": str(path), "decoder": "nvdec", **extra}


Build = Callable[[dict[str, Any]], Pipeline]


@pytest.fixture
def built() -> Iterator[Build]:
    """Builds pipelines (elements open their files) and closes their elements afterwards."""
    pipelines: list[Pipeline] = []

    def build(config: dict[str, Any]) -> Pipeline:
        pipeline = Pipeline({"perf": {"interval_s": 0}, **config})
        pipeline.build()
        pipelines.append(pipeline)
        return pipeline

    yield build
    for pipeline in pipelines:
        for stats in pipeline.element_stats():
            pipeline.element(stats.name).close()


def stage_names(pipeline: Pipeline) -> list[str]:
    return [stats.name for stats in pipeline.element_stats()]


def test_metadata_only_pipelines_keep_frames_on_the_gpu(
    software_nvdec: SoftwareNv12Backend, tmp_path: Path, built: Build
) -> None:
    pipeline = built(
        {
            "sources": [nvdec_source()],
            "tracker": {},
            "analytics": {},
            "sinks": [{"type": "jsonl", "path": str(tmp_path / "m.jsonl")}, {"type": "fakesink"}],
        }
    )
    assert pipeline.conversions == []
    assert stage_names(pipeline) == ["tracker", "analytics", "jsonl0", "fakesink1"]


def test_frames_leave_the_gpu_before_the_video_branch(
    software_nvdec: SoftwareNv12Backend, tmp_path: Path, built: Build
) -> None:
    pipeline = built(
        {
            "sources": [nvdec_source()],
            "tracker": {},
            "osd": {},
            "sinks": [
                {"type": "jsonl", "path": str(tmp_path / "m.jsonl")},
                {"type": "file", "path": str(tmp_path / "out.mp4")},
            ],
        }
    )
    assert pipeline.conversions == [Conversion("to-cpu-osd", CPU, ("osd",))]
    assert stage_names(pipeline) == ["tracker", "jsonl0", "to-cpu-osd", "osd", "file1"]


def test_frames_leave_the_gpu_before_a_cpu_detector_and_stay_off_it(
    software_nvdec: SoftwareNv12Backend, tmp_path: Path, built: Build
) -> None:
    pipeline = built(
        {
            "sources": [nvdec_source()],
            "infer": [{"model": "yolox-nano"}],
            "tracker": {},
            "sinks": [
                {"type": "jsonl", "path": str(tmp_path / "m.jsonl")},
                {"type": "file", "path": str(tmp_path / "out.mp4")},
            ],
        }
    )
    # onnxruntime takes numpy arrays: everything after it gets them too, nothing more to insert.
    assert pipeline.conversions == [Conversion("to-cpu-infer0", CPU, ("infer0",))]
    assert stage_names(pipeline) == ["to-cpu-infer0", "infer0", "tracker", "jsonl0", "file1"]


def test_branches_needing_the_cpu_share_one_download(
    software_nvdec: SoftwareNv12Backend, tmp_path: Path, built: Build
) -> None:
    pipeline = built(
        {
            "sources": [nvdec_source()],
            "sinks": [
                {"type": "snapshot", "path": str(tmp_path / "snapshots")},
                {"type": "jsonl", "path": str(tmp_path / "m.jsonl")},
                {"type": "file", "path": str(tmp_path / "out.mp4")},
            ],
        }
    )
    assert pipeline.conversions == [Conversion("to-cpu-snapshot0", CPU, ("snapshot0", "file2"))]
    assert stage_names(pipeline) == ["to-cpu-snapshot0", "snapshot0", "jsonl1", "file2"]


def test_cpu_sources_get_no_conversion(tmp_path: Path, built: Build) -> None:
    pipeline = built(
        {
            "sources": [{"uri": str(PARKING)}],
            "osd": {},
            "sinks": [{"type": "file", "path": str(tmp_path / "out.mp4")}],
        }
    )
    assert pipeline.conversions == []
    assert pipeline.mux.memory == CPU_ONLY


def test_a_gpu_pipeline_writes_what_the_cpu_pipeline_writes(
    software_nvdec: SoftwareNv12Backend, tmp_path: Path
) -> None:
    """Frames converted and scaled by the mux on tensors, downloaded before the file sink and
    never for the jsonl sink: the same metadata, and video within encoding noise."""
    config = {
        "sources": [
            {"uri": str(PARKING), "name": "parking", "decoder": "{decoder}", "max_frames": 12}
        ],
        "mux": {"width": 640, "height": 360},
        "sinks": [
            {"type": "jsonl", "path": "{out}/meta.jsonl"},
            {"type": "file", "path": "{out}/out.mp4", "crf": 18},
        ],
    }
    folders = run_both(config, tmp_path)
    cpu, gpu = (read_jsonl(folders[d] / "meta.jsonl") for d in ("cpu", "nvdec"))
    assert len(cpu) == 12 and gpu == cpu
    cpu_video, gpu_video = (video_frames(folders[d] / "out_0.mp4") for d in ("cpu", "nvdec"))
    assert len(gpu_video) == len(cpu_video) == 12
    for ours, theirs in zip(gpu_video, cpu_video, strict=True):
        assert ours.shape == (360, 640, 3)
        assert np.abs(ours.astype(int) - theirs.astype(int)).mean() < 2.0


def test_a_cpu_detector_after_the_gpu_mux_finds_the_same_objects(
    software_nvdec: SoftwareNv12Backend, tmp_path: Path
) -> None:
    """The detector (onnxruntime: numpy in) gets the mux's tensors downloaded; its boxes match
    the CPU pipeline's: every confident object of one has one in the other with IoU > 0.85 and
    a confidence within 0.1 (the pixels differ by a grey level here and there)."""
    config = {
        "sources": [{"uri": str(PARKING), "decoder": "{decoder}", "max_frames": 8}],
        "mux": {"width": 640, "height": 640},
        "infer": [{"model": "yolox-nano", "threshold": 0.3, "instances": 1}],
        "sinks": [{"type": "jsonl", "path": "{out}/meta.jsonl"}],
    }
    folders = run_both(config, tmp_path)
    cpu, gpu = (read_jsonl(folders[d] / "meta.jsonl") for d in ("cpu", "nvdec"))
    assert [r["frame_num"] for r in gpu] == [r["frame_num"] for r in cpu] == list(range(8))
    matched = assert_same_objects(cpu, gpu)
    assert matched > 8


def test_the_mux_gives_one_rgb_tensor_per_batch_and_the_bus_says_where_frames_leave(
    software_nvdec: SoftwareNv12Backend, tmp_path: Path
) -> None:
    pipeline = Pipeline(
        {
            "sources": [
                nvdec_source(PARKING, max_frames=6),
                nvdec_source(ONE_BY_ONE, max_frames=6),
                {"uri": "test://ball?width=320&height=240&frames=6"},  # numpy, in the same batch
            ],
            "mux": {"width": 640, "height": 480, "batch_size": 3, "pad_value": 114},
            "osd": {},
            "sinks": [{"type": "file", "path": str(tmp_path / "out.mp4")}],
            "perf": {"interval_s": 0},
        }
    )
    seen: list[Batch] = []
    pipeline.add_probe("mux", seen.append)
    summary = pipeline.run()
    assert summary.ok and summary.frames == 18
    said = [m for m in pipeline.bus.history if m.type is MessageType.INFO and "memory" in m.data]
    assert [(m.origin, m.text, m.data) for m in said] == [
        (
            "to-cpu-osd",
            "frames leave the GPU (downloaded to cpu memory) before osd",
            {"memory": "cpu", "before": ["osd"]},
        )
    ]
    full = [batch for batch in seen if len(batch) == 3]
    assert full, "the mux formed no full batch"
    for batch in full:
        tensors = [f for f in batch.frames if f.memory == CUDA]
        assert len(tensors) == 2 and all(f.memory == CPU for f in batch if f not in tensors)
        assert all(f.tensor.shape == (3, 480, 640) and f.color_space is None for f in tensors)
        stacked = gpu_image.stack_images([f.tensor for f in tensors])
        assert stacked.data_ptr() == tensors[0].tensor.data_ptr()  # views of one tensor
        for frame in tensors:  # letterboxed: 768x432 in 640x480, 60 rows of padding above
            assert frame.transform == Letterbox.fit((768, 432), (640, 480))
            assert (frame.tensor[:, :60] == 114).all() and (frame.tensor[:, 60:61] != 114).any()
    for stream in range(3):
        assert (tmp_path / f"out_{stream}.mp4").is_file()


def nv12_frame(path: Path = PARKING) -> Frame:
    with av.open(str(path)) as container:
        picture = next(container.decode(video=0))
    image = nv12_tensor(picture)
    size_wh = (picture.width, picture.height)
    return Frame(0, "s", 0, 0.0, time.time(), size_wh, image, color_space="bt601")  # type: ignore[arg-type]


def test_a_mux_negotiated_for_the_cpu_downloads_device_frames() -> None:
    """An NVDEC source added to a running pipeline built without one."""
    mux = Mux(MuxProperties(width=640, height=640), threading.Condition())
    assert mux.memory == CPU_ONLY
    frame = nv12_frame()
    mux.finish([frame])
    assert isinstance(frame.image, np.ndarray) and frame.image.shape == (640, 640, 3)
    assert frame.transform == Letterbox.fit((768, 432), (640, 640))
    assert frame.color_space is None


def test_converters_work_on_copies_of_the_frames() -> None:
    context = BuildContext(bus=Pipeline({"sources": [{"uri": "test://ball"}]}).bus)
    frame = nv12_frame()
    batch = Batch([frame])
    downloaded = ToCpu(ToCpuProperties(), name="to-cpu", context=context).process(batch)
    assert frame.memory == CUDA and downloaded.frames[0].memory == CPU
    assert downloaded.frames[0].meta is frame.meta
    bgr = downloaded.frames[0].image
    assert bgr.shape == (432, 768, 3) and np.array_equal(bgr, frame.image_bgr())
    to_cuda = ToCuda(ToCudaProperties(device="cpu"), name="to-cuda", context=context)
    uploaded = to_cuda.process(downloaded)
    assert downloaded.frames[0].memory == CPU
    assert torch.equal(uploaded.frames[0].tensor, gpu_image.from_bgr_images([bgr], "cpu")[0])
    assert ToCpu(ToCpuProperties(), name="c", context=context).process(downloaded) is downloaded
